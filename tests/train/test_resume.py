"""Exact resume, interruption by SIGTERM, truncated/corrupt checkpoints, non-finite losses."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import torch

from metaslot.errors import CheckpointError, ConfigError, NonFiniteLossError
from metaslot.train.checkpoint import latest_checkpoint, load_model_checkpoint, read_tensors
from metaslot.train.logging import read_metrics
from tests.support.helpers import evolve_loop, final_weights, tiny_config, train, without_timing
from tests.support.train_fakes import FakeDataSpec, FakePipelineSpec

ROOT = Path(__file__).resolve().parents[2]  # on the children's path: they import tests.support


def test_stopped_and_resumed_run_matches_uninterrupted_run_bitwise(tmp_path: Path) -> None:
    straight = tiny_config(tmp_path / "a")
    train(straight)

    interrupted = tiny_config(tmp_path / "b")
    first = train(evolve_loop(interrupted, stop_at=3))
    assert first.step == 3
    assert not (interrupted.run_dir / "eval").exists()  # unfinished runs are not evaluated
    second = train(attrs.evolve(interrupted, resume=True))
    assert second.step == 6

    expected, resumed = final_weights(straight.run_dir), final_weights(interrupted.run_dir)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    assert without_timing(read_metrics(straight.run_dir)) == without_timing(read_metrics(interrupted.run_dir))


def test_existing_run_without_resume_is_refused(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, steps=2, checkpoint_every=2, val_every=2)
    train(attrs.evolve(config, evaluate_at_end=False))
    with pytest.raises(ConfigError, match="--resume"):
        train(config)


def test_truncated_checkpoint_is_reported(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, steps=2, checkpoint_every=2, val_every=2)
    train(attrs.evolve(config, evaluate_at_end=False))
    weights = config.run_dir / "checkpoints" / "step-0000002.safetensors"
    payload = weights.read_bytes()
    weights.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        train(attrs.evolve(config, resume=True))
    flipped = bytearray(payload)
    flipped[-1] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="SHA-256"):
        train(attrs.evolve(config, resume=True))


def test_unparseable_safetensors_is_reported(tmp_path: Path) -> None:
    garbage = tmp_path / "x.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_tensors(garbage)


def test_checkpoint_of_another_model_is_reported(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, steps=2, checkpoint_every=2, val_every=2)
    train(attrs.evolve(config, evaluate_at_end=False))
    other = FakePipelineSpec(width=5).build()
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_model_checkpoint(latest_checkpoint(config.run_dir / "checkpoints"), other)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    config = attrs.evolve(
        tiny_config(tmp_path, steps=6, checkpoint_every=2, val_every=100), model=FakePipelineSpec(nan_after=3)
    )
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 4.*step-0000002"):
        train(config)
    latest = latest_checkpoint(config.run_dir / "checkpoints")
    assert latest is not None and latest.name == "step-0000002.json"
    weights = read_tensors(config.run_dir / "checkpoints" / "step-0000002.safetensors")
    assert all(torch.isfinite(value.float()).all() for value in weights.values())


_INTERRUPTIBLE = """
import sys
from pathlib import Path
import attrs
from tests.support.helpers import tiny_config, train
from metaslot.cli._errors import user_errors
from tests.support.train_fakes import FakeDataSpec
config = attrs.evolve(tiny_config(Path({runs!r}), steps=500, checkpoint_every=1000, val_every=1000),
                      data=FakeDataSpec(delay=0.01))
with user_errors("train"):
    train(config)
"""


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path: Path) -> None:
    script = _INTERRUPTIBLE.format(runs=str(tmp_path))
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", script], env=environment, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert "--resume" in stderr
    latest = latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest is not None
    stopped_at = json.loads(latest.read_text())["state"]["step"]
    assert 2 <= stopped_at < 500

    # The same run (the same data spec: --resume refuses another one), one step further.
    config = attrs.evolve(tiny_config(tmp_path, steps=500), data=FakeDataSpec(delay=0.01), resume=True)
    result = train(evolve_loop(config, stop_at=stopped_at + 1, checkpoint_every=1000, val_every=1000))
    assert result.step == stopped_at + 1


@pytest.mark.slow
def test_real_metaslot_autoencoder_resumes_bitwise(tmp_path: Path) -> None:
    from metaslot.cli.train import parse_train_arguments
    from tests.support.cli_args import loop_args, model_args

    def config_for(runs: Path):
        config, _ = parse_train_arguments(
            [*model_args("autoencoder"), *loop_args(runs, steps=4), "--loop.val-every", "2"]
        )
        return attrs.evolve(config, evaluate_at_end=False)

    straight = config_for(tmp_path / "a")
    train(straight)
    interrupted = config_for(tmp_path / "b")
    train(evolve_loop(interrupted, stop_at=2))
    train(attrs.evolve(interrupted, resume=True))
    expected, resumed = final_weights(straight.run_dir), final_weights(interrupted.run_dir)
    assert any("codebook" in key for key in expected)
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key
    assert without_timing(read_metrics(straight.run_dir)) == without_timing(read_metrics(interrupted.run_dir))
