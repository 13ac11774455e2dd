"""MOVi-D end to end: every preset resolves, and image pipelines train and evaluate on its frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
import torch

from metaslot.cli import eval as eval_cli
from metaslot.cli import train as train_cli
from metaslot.cli.train import parse_train_arguments
from metaslot.data.sampling import ItemKey
from metaslot.data.video import MoviDSpec
from metaslot.train.config import config_from_json, config_to_json, rebuild
from metaslot.train.logging import read_metrics
from metaslot.train.presets import MODELS, preset
from tests.support.cli_args import TINY_AUTOENCODER, loop_args, without_codebook
from tests.support.movi_fixture import write_movi_d

pytest.importorskip("av")

CLIPS, FRAMES, SIZE = 2, 4, 16


@pytest.mark.parametrize(
    ("model", "aggregator"),
    [(model, "metaslot") for model in MODELS]
    + [(model, "slot-attention") for model in MODELS if model != "vqvae"],
)
def test_every_movi_d_preset_resolves_and_builds_its_config(
    model: str, aggregator: str, tmp_path: Path
) -> None:
    config = preset(model, "movi_d", aggregator)
    assert rebuild(config) == config  # every validator runs again, as after CLI parsing
    assert config_from_json(config_to_json(config)) == config
    assert isinstance(config.data, MoviDSpec) and config.name.startswith(f"{model}")
    assert config.data.resolution == getattr(config.model, "image_size", config.data.resolution)
    selectors = ["--model", model, "--data", "movi-d", "--aggregator", aggregator]
    parsed, _ = parse_train_arguments([*selectors, "--data.root", str(tmp_path), "--data.train-frames", "3"])
    assert parsed.data.root == tmp_path and parsed.data.train_frames == 3
    assert parsed.model == config.model


def _movi_arguments(root: Path, runs: Path, name: str) -> list[str]:
    return [
        "--model",
        "autoencoder",
        "--data",
        "movi_d",
        "--data.root",
        str(root),
        "--data.resolution",
        str(SIZE),
        "--data.train-frames",
        "2",
        "--model.image-size",
        str(SIZE),
        *TINY_AUTOENCODER,
        *loop_args(runs),
        "--loop.val-split",  # two clips: none to hold out of the training split
        "val",
        "--name",
        name,
    ]


def _visible_objects(labels: numpy.ndarray) -> float:
    """Mean over frames of the objects a frame shows."""
    frames = labels.reshape(-1, labels.shape[-2] * labels.shape[-1])
    return float(numpy.mean([len(set(frame.tolist()) - {0}) for frame in frames]))


@pytest.mark.parametrize("aggregator", ["metaslot", "slot-attention"])
def test_autoencoder_trains_and_evaluates_on_movi_d_frames(
    aggregator: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    labels = write_movi_d(tmp_path / "data", clips=CLIPS, frames=FRAMES, size=SIZE)
    arguments = _movi_arguments(tmp_path / "data", tmp_path / "runs", "movi")
    if aggregator == "slot-attention":
        arguments = [*without_codebook(arguments), "--aggregator", "slot-attention"]
    train_cli.main(arguments)
    run_dir = tmp_path / "runs" / "movi"

    assert [row["step"] for row in read_metrics(run_dir) if row["split"] == "train"] == [1, 2, 3]
    evaluation = json.loads((run_dir / "eval" / "evaluation.json").read_text())
    # one evaluation batch of 2 clips, every frame an image: metrics are means over frames
    assert evaluation["images"] == CLIPS * FRAMES
    metrics = evaluation["metrics"]
    assert metrics["true_objects"] == pytest.approx(_visible_objects(labels["val"]))
    for name in ("ari", "fg_ari", "mbo", "miou", "active_slots", "slot_count_abs_error"):
        assert numpy.isfinite(metrics[name]), name
    assert ("codes_in_use" in metrics) == (aggregator == "metaslot")
    assert (run_dir / "eval" / "segmentation.png").stat().st_size > 0
    assert (run_dir / "eval" / "slot_count.png").stat().st_size > 0
    assert "FG-ARI" in capsys.readouterr().out

    if aggregator == "metaslot":
        eval_cli.main([str(run_dir), "--evaluation.max-batches", "1", "--output", str(tmp_path / "again")])
        again = json.loads((tmp_path / "again" / "evaluation.json").read_text())
        assert again["images"] == CLIPS * FRAMES and again["metrics"] == evaluation["metrics"]


def test_training_clips_are_strided_and_validation_keeps_every_frame(tmp_path: Path) -> None:
    write_movi_d(tmp_path, clips=1, frames=6, size=8)
    spec = MoviDSpec(root=tmp_path, resolution=8, train_frames=2)
    assert spec.build("val", train=False)[0].video.shape == (6, 3, 8, 8)
    train_set = spec.build("train", train=True)
    clips = [train_set[ItemKey(0, epoch)] for epoch in range(3)]
    assert all(clip.video.shape == (2, 3, 8, 8) and clip.segment.shape == (2, 8, 8) for clip in clips)
    assert torch.equal(train_set[ItemKey(0, 1)].video, clips[1].video)  # a function of (seed, epoch, index)


def test_bad_movi_d_value_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(["--data", "movi_d", "--data.train-frames", "0", "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error == "train: error: train_frames must be positive, got 0"
