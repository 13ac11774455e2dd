"""Two gloo processes under torchrun, with gradient accumulation: identical weights and MetaSlot codebook
state on both ranks, and an upkeep that saw every image of every step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metaslot.train.checkpoint import read_tensors

ROOT = Path(__file__).resolve().parents[2]  # on the children's path: they import tests.support

_WORKER = """
import os, sys
import safetensors.torch
import metaslot.train.preparation as preparation
from tests.support.cli_args import loop_args, model_args
from metaslot.cli import train as train_cli

built = []
original = preparation.build_pipeline
def capture(config):
    pipeline = original(config)
    built.append(pipeline)
    return pipeline
preparation.build_pipeline = capture
# batch 8 over 2 ranks and 2 accumulation micro-steps: 2 images per rank and micro-step
arguments = [
    *model_args("autoencoder"), *loop_args({runs!r}, steps=3), "--loop.batch-size", "8", "--loop.accumulate", "2"
]
train_cli.main(arguments)
state = {{key: value.contiguous() for key, value in built[0].state_dict().items()}}
safetensors.torch.save_file(state, os.path.join({runs!r}, "rank" + os.environ["RANK"] + ".safetensors"))
"""


@pytest.mark.distributed
@pytest.mark.slow
def test_two_process_gloo_run_keeps_ranks_identical(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(_WORKER.format(runs=str(tmp_path)))
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(script),
    ]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-4000:]
    first, second = read_tensors(tmp_path / "rank0.safetensors"), read_tensors(tmp_path / "rank1.safetensors")
    assert first.keys() == second.keys()
    codebook_keys = [key for key in first if "codebook" in key]
    assert codebook_keys, sorted(first)
    for key in first:
        assert torch.equal(first[key], second[key]), key
    # the upkeep saw every image of every step once: all micro-batches of both ranks, 3 steps of 8
    assert int(first["frontend.aggregator.codebook_state.images_seen"]) == 3 * 8
    assert int(first["frontend.aggregator.codebook_state.step_counter"]) == 3
    # rank 0 alone wrote the run folder; its checkpoint equals what both ranks hold
    saved = read_tensors(tmp_path / "autoencoder-shapes" / "checkpoints" / "step-0000003.safetensors")
    assert all(torch.equal(saved[key], first[key]) for key in first)
