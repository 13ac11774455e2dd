"""`cli.eval --data NAME` evaluates at the run's training resolution unless --data.resolution says otherwise."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from metaslot.cli import eval as eval_cli
from metaslot.data.published import VOCSpec
from metaslot.data.shapes import ShapesSpec
from tests.support.helpers import tiny_config, train
from tests.support.train_fakes import FakeDataSpec


def test_named_data_takes_the_training_resolution() -> None:
    assert eval_cli.named_data("shapes", FakeDataSpec(resolution=32)) == ShapesSpec(resolution=32)
    voc = eval_cli.named_data("voc", ShapesSpec(resolution=128))
    assert isinstance(voc, VOCSpec) and voc.resolution == 128 and voc.root == Path("data")
    assert eval_cli.named_data("shapes", object()) == ShapesSpec(resolution=64)  # nothing to follow


def test_named_data_leaves_validation_to_the_flags() -> None:
    # 8 px is too small for the default shapes; the user may still fix it with --data.resolution.
    assert eval_cli.named_data("shapes", FakeDataSpec(resolution=8)).resolution == 8


def test_resolution_note() -> None:
    assert "at 32 px, the run's training resolution" in eval_cli.resolution_note("voc", 32, 32)
    assert "at 48 px from --data.resolution (the run trained at 32 px)" in eval_cli.resolution_note(
        "voc", 48, 32
    )


def test_eval_on_named_data_uses_the_training_resolution(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tiny_config(tmp_path, steps=1, checkpoint_every=1, val_every=1)
    config = attrs.evolve(config, data=FakeDataSpec(resolution=32), evaluate_at_end=False)
    train(config)
    on_shapes = [
        str(config.run_dir),
        "--data",
        "shapes",
        "--data.val-size",
        "2",
        "--evaluation.max-batches",
        "1",
        "--evaluation.pictures",
        "0",
        "--evaluation.gallery-codes",
        "0",
    ]
    eval_cli.main([*on_shapes, "--output", str(tmp_path / "trained")])
    assert "data: shapes at 32 px, the run's training resolution" in capsys.readouterr().out
    eval_cli.main([*on_shapes, "--data.resolution", "48", "--output", str(tmp_path / "asked")])
    assert "data: shapes at 48 px from --data.resolution" in capsys.readouterr().out
