"""Loggers: metrics.jsonl (unchanged format), TensorBoard, W&B (a stand-in module, and the real one offline)."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch

from metaslot.errors import ConfigError
from metaslot.eval.evaluate import PictureSamples
from metaslot.eval.pictures import segmentation_grid_image
from metaslot.train.loggers import (
    WANDB_ID_FILE,
    JsonlLogger,
    LoggerGroup,
    TensorBoardLogger,
    WandbLogger,
    WandbSettings,
    open_loggers,
)


def picture(height: int = 6, width: int = 10) -> numpy.ndarray:
    """A uint8 RGB picture whose every pixel differs from its neighbours."""
    values = numpy.arange(height * width * 3, dtype=numpy.int64).reshape(height, width, 3)
    return (values * 37 % 256).astype(numpy.uint8)


# ---------------------------------------------------------------------------------------------
# metrics.jsonl


def test_jsonl_rows_keep_the_metrics_file_format(tmp_path: Path) -> None:
    logger = JsonlLogger(tmp_path)
    logger.log_scalars(10, "train", {"loss": 0.25, "lr": 1e-3})
    logger.log_scalars(10, "val", {"ari": float("nan"), "mbo": float("inf")})
    logger.log_image(10, "val/segmentation", picture())  # metrics.jsonl holds no pictures
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines == [
        '{"step": 10, "split": "train", "loss": 0.25, "lr": 0.001}',
        '{"step": 10, "split": "val", "ari": "nan", "mbo": "inf"}',
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["metrics.jsonl"]


def test_truncate_after_drops_rows_past_the_resumed_checkpoint(tmp_path: Path) -> None:
    group = open_loggers(tmp_path, enabled=True, run_name="r")
    for step in (1, 2, 3, 4):
        group.log_scalars(step, "train", {"loss": float(step)})
    group.truncate_after(2)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_other_ranks_log_nothing(tmp_path: Path) -> None:
    group = open_loggers(tmp_path, enabled=False, run_name="r", tensorboard=True)
    group.log_scalars(1, "train", {"loss": 1.0})
    group.truncate_after(0)
    group.close()
    assert list(tmp_path.iterdir()) == [] and not group.wants_images


# ---------------------------------------------------------------------------------------------
# TensorBoard


def test_tensorboard_gets_scalars_and_the_picture(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    group = open_loggers(tmp_path, enabled=True, run_name="r", tensorboard=True)
    assert group.wants_images
    group.log_scalars(5, "train", {"loss": 0.5})
    group.log_scalars(5, "val", {"ari": 0.75})
    group.log_image(5, "val/segmentation", picture())
    group.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert [(row.step, row.value) for row in events.Scalars("train/loss")] == [(5, 0.5)]
    assert [(row.step, row.value) for row in events.Scalars("val/ari")] == [(5, 0.75)]
    (image,) = events.Images("val/segmentation")
    decoded = numpy.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB"))
    assert image.step == 5 and numpy.array_equal(decoded, picture())


def test_missing_tensorboard_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ConfigError, match=r"pip install 'metaslot\[tensorboard\]'"):
        TensorBoardLogger(tmp_path / "tensorboard")


# ---------------------------------------------------------------------------------------------
# Weights & Biases


class FakeRun:
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.logged: list[tuple[dict[str, Any], int]] = []
        self.finished = False

    def log(self, values: dict[str, Any], step: int) -> None:
        self.logged.append((values, step))

    def finish(self) -> None:
        self.finished = True


def fake_wandb() -> types.ModuleType:
    """A stand-in for the ``wandb`` package recording what the logger asks of it."""
    module = types.ModuleType("wandb")
    module.runs = []  # type: ignore[attr-defined]

    class Error(Exception):
        pass

    class Image:
        def __init__(self, data: numpy.ndarray) -> None:
            self.data = data

    def init(**settings: Any) -> FakeRun:
        if settings["project"] == "needs-login":
            raise Error("No API key configured. Use `wandb login` to log in.")
        module.runs.append(FakeRun(**settings))  # type: ignore[attr-defined]
        return module.runs[-1]  # type: ignore[attr-defined]

    module.init = init  # type: ignore[attr-defined]
    module.Image = Image  # type: ignore[attr-defined]
    module.errors = types.SimpleNamespace(Error=Error)  # type: ignore[attr-defined]
    return module


def test_wandb_logger_logs_scalars_and_images_and_keeps_one_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wandb = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    group = open_loggers(
        tmp_path,
        enabled=True,
        run_name="default-job",
        wandb=WandbSettings(project="proj"),
        config={"loop": {"steps": 3}},
    )
    assert group.wants_images
    group.log_scalars(3, "val", {"ari": 0.5})
    group.log_image(3, "val/segmentation", picture())
    group.close()
    (run,) = wandb.runs
    run_id = (tmp_path / WANDB_ID_FILE).read_text().strip()
    assert run.settings == {
        "project": "proj",
        "name": "default-job",
        "id": run_id,
        "resume": "allow",
        "dir": str(tmp_path),
        "config": {"loop": {"steps": 3}},
    }
    assert run.logged[0] == ({"val/ari": 0.5}, 3)
    ((values, step),) = run.logged[1:]
    assert step == 3 and numpy.array_equal(values["val/segmentation"].data, picture())
    assert run.finished
    # A resumed run continues the same W&B run, under the name asked for.
    WandbLogger(tmp_path, WandbSettings(project="proj", name="renamed"), run_name="default-job").close()
    assert wandb.runs[1].settings["id"] == run_id and wandb.runs[1].settings["name"] == "renamed"


def test_wandb_without_login_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb())
    with pytest.raises(ConfigError, match=r"wandb login.*WANDB_MODE=offline") as error:
        WandbLogger(tmp_path, WandbSettings(project="needs-login"), run_name="r")
    assert "\n" not in str(error.value)


def test_missing_wandb_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"pip install 'metaslot\[wandb\]'"):
        open_loggers(tmp_path, enabled=True, run_name="r", wandb=WandbSettings())


@pytest.mark.slow
def test_real_wandb_offline_writes_the_run_under_the_run_folder(tmp_path: Path, wandb_offline: None) -> None:
    from PIL import Image

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    logger = WandbLogger(run_dir, WandbSettings(project="metaslot-test"), run_name="r", config={"a": 1})
    logger.log_scalars(1, "train", {"loss": 0.5})
    logger.log_image(2, "val/segmentation", picture())
    logger.close()
    run_id = (run_dir / WANDB_ID_FILE).read_text().strip()
    (record,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    (png,) = record.parent.glob("files/media/images/val/segmentation_*.png")
    assert numpy.array_equal(numpy.asarray(Image.open(png).convert("RGB")), picture())


# ---------------------------------------------------------------------------------------------
# The validation picture


def test_segmentation_grid_image_is_the_grid_as_rgb_pixels() -> None:
    generator = torch.Generator().manual_seed(0)
    samples = PictureSamples(capacity=2)
    samples.images.append(torch.rand(2, 3, 8, 8, generator=generator))
    samples.segments.append(torch.randint(0, 3, (2, 8, 8), generator=generator))
    samples.masks.append(torch.rand(2, 3, 8, 8, generator=generator).softmax(1))
    samples.keep.append(torch.tensor([[True, True, False], [True, False, True]]))
    image = segmentation_grid_image(samples)
    assert image.dtype == numpy.uint8 and image.ndim == 3 and image.shape[2] == 3
    # Two rows of image | ground truth | prediction | 3 slot panels: wider than tall, and not blank.
    assert image.shape[1] > image.shape[0] and image.std() > 0
    LoggerGroup(()).log_image(1, "val/segmentation", image)  # what the loop passes it to
