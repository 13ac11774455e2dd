"""Concurrent readers and writers (issue 28, item 8).

Two `cli.eval` of one run at once left a folder whose ``evaluation.json`` belonged to the other
invocation; `cli.eval` / `metaslot.load` during training failed when the checkpoint they picked was
pruned meanwhile. A second evaluation into the same folder is now refused in one line while the first
writes, and a reader whose last checkpoint was pruned under it picks the new last one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import metaslot
from metaslot.cli import eval as eval_cli
from metaslot.runtime import files
from metaslot.train import checkpoint as checkpoints
from tests.support.helpers import evolve_loop, tiny_config, train


def stopped_run(tmp_path: Path):
    config = tiny_config(tmp_path, checkpoint_every=2, keep_checkpoints=3)
    train(evolve_loop(config, stop_at=4))
    return config


def prune_under_the_reader(monkeypatch, directory: Path) -> None:
    """The first checkpoint file a reader checks is pruned just then, as a training moves on."""
    real_verify = checkpoints._verify
    calls = []

    def training_moves_on(folder: Path, record: dict, sidecar: Path) -> Path:
        if not calls and sidecar.name == "step-0000004.json":
            (directory / "latest.json").write_text(json.dumps({"checkpoint": "step-0000002"}))
            for suffix in (".json", ".safetensors", ".train.safetensors"):
                (directory / f"step-0000004{suffix}").unlink()
        calls.append(sidecar.name)
        return real_verify(folder, record, sidecar)

    monkeypatch.setattr(checkpoints, "_verify", training_moves_on)


def test_load_during_training_takes_the_new_last_checkpoint(tmp_path: Path, monkeypatch) -> None:
    config = stopped_run(tmp_path)
    prune_under_the_reader(monkeypatch, config.run_dir / "checkpoints")
    pipeline = metaslot.load(config.run_dir)
    expected = checkpoints.read_tensors(config.run_dir / "checkpoints" / "step-0000002.safetensors")
    assert all(value.equal(expected[name]) for name, value in pipeline.state_dict().items())


def test_eval_during_training_takes_the_new_last_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    config = stopped_run(tmp_path)
    prune_under_the_reader(monkeypatch, config.run_dir / "checkpoints")
    eval_cli.main([str(config.run_dir), "--evaluation.max-batches", "1", "--evaluation.pictures", "0"])
    written = json.loads((config.run_dir / "eval-step-0000002-val" / "evaluation.json").read_text())
    assert written["step"] == 2


def test_a_second_evaluation_into_the_same_folder_is_refused_while_the_first_writes(
    tmp_path: Path, capsys
) -> None:
    config = stopped_run(tmp_path)
    output = tmp_path / "shared-output"
    with files.folder_lock(output, "evaluation"):  # the first cli.eval, still writing
        with pytest.raises(SystemExit):
            eval_cli.main([str(config.run_dir), "--output", str(output), "--evaluation.max-batches", "1"])
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "another evaluation" in error and "--output" in error
    assert not (output / "evaluation.json").exists()
