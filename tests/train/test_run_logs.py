"""What a training run logs where: TensorBoard and W&B get every scalar and the validation segmentation
grid at every validation; progress off a terminal is one plain line per log step."""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import numpy
import pytest

from metaslot.cli.train import parse_train_arguments
from metaslot.train.loggers import WANDB_ID_FILE
from tests.support.helpers import tiny_config, train
from tests.train.test_loggers import fake_wandb


def test_tensorboard_run_has_every_scalar_and_the_grid_of_every_validation(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = attrs.evolve(tiny_config(tmp_path, steps=4, val_every=2, checkpoint_every=4), tensorboard=True)
    train(config)
    events = EventAccumulator(str(config.run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [row.step for row in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert [row.step for row in events.Scalars("val/fg_ari")] == [2, 4]
    assert [row.step for row in events.Scalars("eval/fg_ari")] == [4]
    images = events.Images("val/segmentation")
    assert [image.step for image in images] == [2, 4] and all(image.width > image.height for image in images)


def test_without_a_picture_logger_validation_asks_for_no_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metaslot.eval.session import SplitEvaluation

    asked: list[int] = []
    validate = SplitEvaluation.validate

    def recording(self, pipeline, dataset, settings):
        asked.append(settings.spec.pictures)
        return validate(self, pipeline, dataset, settings)

    monkeypatch.setattr(SplitEvaluation, "validate", recording)
    train(tiny_config(tmp_path, steps=2, val_every=1, checkpoint_every=2))
    assert asked == [0, 0]  # metrics.jsonl shows no pictures: none is drawn


def test_progress_off_a_terminal_is_one_plain_line_per_log_step(tmp_path: Path, capsys) -> None:
    config = attrs.evolve(tiny_config(tmp_path, steps=6, log_every=2, val_every=3), progress=True)
    assert not sys.stderr.isatty()
    train(config)
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith("run step")]
    assert [line.split()[2] for line in lines] == ["2/6", "4/6", "6/6"]
    assert all(" loss=" in line and " lr=" in line for line in lines)
    assert "step 3 val (val): loss" in captured.out


def test_wandb_flags_reach_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = parse_train_arguments(["--wandb", "--wandb-project", "study", "--wandb-name", "first"])
    assert (config.wandb, config.wandb_project, config.wandb_name) == (True, "study", "first")
    defaults, _ = parse_train_arguments([])
    assert (defaults.wandb, defaults.wandb_project, defaults.wandb_name) == (False, "metaslot", None)

    wandb = fake_wandb()
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    config = attrs.evolve(tiny_config(tmp_path, steps=2, val_every=2, checkpoint_every=2), wandb=True)
    train(config)
    (run,) = wandb.runs
    assert run.settings["project"] == "metaslot" and run.settings["name"] == config.name
    assert run.settings["config"]["loop"]["steps"] == 2 and run.finished
    logged = {name: step for values, step in run.logged for name in values}
    assert logged["train/loss"] == 2 and logged["val/fg_ari"] == 2 and logged["eval/fg_ari"] == 2
    (picture,) = [values["val/segmentation"].data for values, _ in run.logged if "val/segmentation" in values]
    assert picture.dtype == numpy.uint8 and picture.shape[2] == 3


@pytest.mark.slow
def test_wandb_offline_run_lands_in_the_run_folder(tmp_path: Path, wandb_offline: None) -> None:
    config = attrs.evolve(tiny_config(tmp_path, steps=2, val_every=2, checkpoint_every=2), wandb=True)
    train(config)
    run_id = (config.run_dir / WANDB_ID_FILE).read_text().strip()
    (record,) = (config.run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    assert record.stat().st_size > 0
    assert list(record.parent.glob("files/media/images/val/segmentation_*.png"))
