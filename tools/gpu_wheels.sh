#!/usr/bin/env bash
# Wheels for the packages a bare PyTorch GPU image lacks, fetched here for the GPU check (issue 16).
#
#     bash tools/gpu_wheels.sh            # -> .whl/ (git-ignored): Python 3.12, x86-64 Linux
#     PYTHON_VERSION=3.11 bash tools/gpu_wheels.sh /tmp/wheels
#
# The lent GPU machines reach no package index. Their image holds torch, timm, jaxtyping, attrs,
# einops, safetensors, huggingface_hub, numpy, scipy, pytest and hypothesis, but not beartype (the
# shape checks), lmdb (imported by metaslot.data) or diffusers (SlotDiffusion); without them every
# part of tools/gpu_check.py fails at its first import. The versions are the ones our tests run
# with; diffusers 0.42 needs huggingface_hub >= 1.32 and safetensors >= 0.8, which that image has.
# On the GPU machine, before the check (name .whl in the run's carry):
#
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#         --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
set -euo pipefail

destination=${1:-.whl}
python_version=${PYTHON_VERSION:-3.12}
wheels=(
    beartype==0.23.1
    lmdb==3.0.0
    diffusers==0.42.1
    importlib_metadata==10.2.0
    lazy-importer==0.1.0
)
platforms=()
for platform in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$platform")
done

mkdir -p "$destination"
python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$python_version" "${platforms[@]}" --dest "$destination" "${wheels[@]}"
ls -l "$destination"
du -sh "$destination"
