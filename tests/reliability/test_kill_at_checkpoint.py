"""``kill -9`` in the middle of a checkpoint (issue 14, items 1-3 together).

A real trainer in a subprocess kills itself with SIGKILL while the step-4 checkpoint's optimiser file
is being written (the temporary file is half there, the model file of step 4 is staged, ``latest.json``
still names step 2), leaving its lock file behind; a torn metrics row is added as if it had also died
mid-row. ``--resume`` must then take over the stale lock, clear the temporary files, resume from step 2
and end bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch

from metaslot.train.checkpoint import latest_checkpoint
from metaslot.train.logging import read_metrics
from tests.support.faults import temporaries
from tests.support.helpers import final_weights, tiny_config, train, without_timing

ROOT = Path(__file__).resolve().parents[2]

_DIES_MID_CHECKPOINT = """
import builtins, os, signal, sys
from pathlib import Path
from tests.support.helpers import tiny_config, train

real_open = builtins.open

class DiesHalfway:
    def __init__(self, handle):
        self.handle = handle
    def __enter__(self):
        return self
    def __exit__(self, *exc_info):
        self.handle.close()
    def __getattr__(self, name):
        return getattr(self.handle, name)
    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

def dying_open(file, mode="r", *args, **kwargs):
    handle = real_open(file, mode, *args, **kwargs)
    if "w" in mode and "step-0000004.train" in str(file):
        return DiesHalfway(handle)
    return handle

builtins.open = dying_open
train(tiny_config(Path({runs!r}), checkpoint_every=2))
"""


@pytest.mark.slow
def test_kill_9_mid_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    script = _DIES_MID_CHECKPOINT.format(runs=str(tmp_path / "killed"))
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "METASLOT_TYPECHECK": "0", "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr

    config = tiny_config(tmp_path / "killed", checkpoint_every=2)
    checkpoints = config.run_dir / "checkpoints"
    assert latest_checkpoint(checkpoints) == checkpoints / "step-0000002.json"
    assert temporaries(config.run_dir), "the kill should have left a temporary file"
    assert json.loads((config.run_dir / "train.lock").read_text())["pid"] > 0  # left behind
    with open(config.run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 5, "split": "tr')

    straight = tiny_config(tmp_path / "straight", checkpoint_every=2)
    train(straight)
    assert train(attrs.evolve(config, resume=True)).step == 6
    expected, resumed = final_weights(straight.run_dir), final_weights(config.run_dir)
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)
    assert without_timing(read_metrics(config.run_dir)) == without_timing(read_metrics(straight.run_dir))
    assert not temporaries(config.run_dir)
    assert not (config.run_dir / "train.lock").exists()
