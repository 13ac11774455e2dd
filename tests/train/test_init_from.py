"""``--init-from``: AdaSlot's two stages from the command line (a fixed-K Slot Attention run, then an
AdaSlot run of another slot count started from its weights), the key report, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metaslot.cli.train import main, parse_train_arguments
from metaslot.errors import CheckpointError
from metaslot.train.checkpoint import latest_checkpoint, read_sidecar, read_tensors
from metaslot.train.init_from import initialise_from, match_weights
from metaslot.train.stages import build_pipeline

SMALL = [
    "--data.train-size", "64",
    "--data.val-size", "8",
    "--loop.batch-size", "4",
    "--loop.val-batches", "1",
    "--loop.log-every", "1",
    "--no-evaluate-at-end",
    "--no-progress",
    "--device", "cpu",
]  # fmt: skip


def fixed_k_run(runs_dir: Path) -> Path:
    """Stage 1: Slot Attention with the shared initialiser, 4 slots, 4 steps."""
    main(
        [
            "--aggregator", "slot-attention",
            "--model.aggregator.initializer", "shared",
            "--model.aggregator.num-slots", "4",
            "--loop.steps", "4",
            "--loop.val-every", "4",
            "--runs-dir", str(runs_dir),
            "--name", "fixed",
            *SMALL,
        ]
    )  # fmt: skip
    return runs_dir / "fixed"


def adaslot_arguments(runs_dir: Path, source: Path, steps: int) -> list[str]:
    return [
        "--aggregator", "adaslot",
        "--init-from", str(source),
        "--model.aggregator.num-slots", "6",
        "--loop.steps", str(steps),
        "--loop.val-every", str(steps),
        "--runs-dir", str(runs_dir),
        "--name", "adaptive",
        *SMALL,
    ]  # fmt: skip


def test_two_stages_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = fixed_k_run(tmp_path)
    capsys.readouterr()
    main(adaslot_arguments(tmp_path, source, steps=16))
    log = capsys.readouterr().err
    report = json.loads((tmp_path / "adaptive" / "init_from.json").read_text())
    # Every weight but the score network (and its step counter) comes from the fixed-K run, although
    # the slot count differs (4 → 6): the shared initialiser does not depend on it.
    assert sorted(report["fresh"]) == [
        "frontend.aggregator.score.0.bias",
        "frontend.aggregator.score.0.weight",
        "frontend.aggregator.score.1.bias",
        "frontend.aggregator.score.1.weight",
        "frontend.aggregator.score.3.bias",
        "frontend.aggregator.score.3.weight",
        "frontend.aggregator.step_counter",
    ]
    assert "frontend.aggregator.initializer.mean" in report["loaded"]
    assert report["mismatched"] == [] and report["unused"] == []
    assert f"--init-from {report['source']}: {len(report['loaded'])} weights loaded, 7 fresh" in log
    for key in report["loaded"] + report["fresh"]:
        assert key in log
    rows = [json.loads(line) for line in (tmp_path / "adaptive" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [row for row in rows if row["split"] == "train"]
    assert all("loss/sparsity" in row and "loss/reconstruction" in row for row in train_rows)
    first, last = train_rows[:3], train_rows[-3:]
    assert sum(row["loss"] for row in last) < sum(row["loss"] for row in first)


def test_loaded_weights_are_the_source_weights(tmp_path: Path) -> None:
    source = fixed_k_run(tmp_path)
    config, _ = parse_train_arguments(adaslot_arguments(tmp_path, source, steps=4))
    pipeline = build_pipeline(config)
    fresh_score = pipeline.aggregator.score[1].weight.detach().clone()
    report = initialise_from(pipeline, config.init_from)
    sidecar = latest_checkpoint(source / "checkpoints")
    weights = read_tensors(sidecar.with_suffix(".safetensors"))
    assert read_sidecar(sidecar)["state"]["step"] == 4
    state = pipeline.state_dict()
    for key in report.loaded:
        assert torch.equal(state[key], weights[key]), key
    assert torch.equal(pipeline.aggregator.score[1].weight, fresh_score)


def test_shapes_that_differ_stay_fresh_and_nothing_fitting_is_refused() -> None:
    own = {"a": torch.zeros(2), "b": torch.zeros(3), "c": torch.zeros(1)}
    source = {"a": torch.ones(2), "b": torch.ones(4), "d": torch.ones(1)}
    selected, report = match_weights(own, source, Path("run"))
    assert list(selected) == ["a"]
    assert report.loaded == ("a",) and report.fresh == ("b", "c") and report.mismatched == ("b",)
    assert report.unused == ("d",)
    assert "fresh  b (other shape there)" in "\n".join(report.lines())
    with pytest.raises(CheckpointError, match="none of its 1 weights fits"):
        match_weights({"a": torch.zeros(2)}, {"x": torch.zeros(2)}, Path("run"))


def test_a_missing_source_is_one_line(tmp_path: Path) -> None:
    config, _ = parse_train_arguments(adaslot_arguments(tmp_path, tmp_path / "nowhere", steps=4))
    with pytest.raises(CheckpointError, match="does not exist; pass a run folder or a checkpoint file"):
        initialise_from(build_pipeline(config), config.init_from)
