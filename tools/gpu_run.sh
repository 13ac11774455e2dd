#!/usr/bin/env bash
# The GPU check as one command on a lent GPU machine (issue 16): install the wheels carried in .whl/
# (from tools/gpu_wheels.sh, for the packages the bare image lacks), then run tools/gpu_check.py
# into $OUT with its log beside the JSON. Extra arguments go to gpu_check.py.
#
#     bash tools/gpu_run.sh                                   # device tool: carry [".whl"], timeout_s 560
#     bash tools/gpu_run.sh --parts 3 --presets slate_voc     # finish what a budget cut short
set -euo pipefail
cd "$(dirname "$0")/.."

wheels=${GPU_WHEELS:-.whl}  # another folder for a test run; .whl/ is what the device tool carries
if compgen -G "$wheels/*.whl" > /dev/null; then
    python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out=${OUT:-gpu-check}
mkdir -p "$out"
python3 tools/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
