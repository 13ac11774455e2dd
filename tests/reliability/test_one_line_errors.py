"""Tracebacks left on the user's path become one-line errors (issue 28, item 10).

``--optim.betas 1.5 0.9`` (which also left a folder holding only ``config.json``), checkpoint sidecars
with fields of the wrong type or without ``sha256``, `cli.share` into a place that cannot be written
and a ``config.json`` nested 100 000 deep each ended in a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metaslot.cli import train as train_cli
from metaslot.errors import CheckpointError, ConfigError, MetaslotError
from metaslot.train import checkpoint as checkpoints
from metaslot.train.config import OptimSpec, config_from_json
from tests.support.helpers import evolve_loop, tiny_config, train


@pytest.mark.parametrize("betas", [(1.5, 0.9), (0.9, -0.1), (0.9, 1.0), (float("nan"), 0.9)])
def test_adam_betas_outside_0_1_are_refused(betas: tuple[float, float]) -> None:
    with pytest.raises(ConfigError, match="betas"):
        OptimSpec(betas=betas)


def test_bad_betas_on_the_command_line_are_one_line_and_leave_no_folder(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        train_cli.main(["--runs-dir", str(tmp_path / "runs"), "--optim.betas", "1.5", "0.9"])
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "betas" in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda document: document["model"].pop("sha256"),
        lambda document: document["model"].update(bytes="many"),
        lambda document: document["model"].update(file=["a", "list"]),
        lambda document: document.update(model="a string"),
        lambda document: document["state"].update(step="four"),
    ],
)
def test_a_malformed_sidecar_is_a_checkpoint_error(tmp_path: Path, damage) -> None:
    config = tiny_config(tmp_path, checkpoint_every=2)
    train(evolve_loop(config, stop_at=2))
    sidecar = config.run_dir / "checkpoints" / "step-0000002.json"
    document = json.loads(sidecar.read_text())
    damage(document)
    sidecar.write_text(json.dumps(document))
    with pytest.raises(CheckpointError, match="step-0000002"):
        checkpoints.verify_checkpoint(sidecar)


def test_a_config_json_nested_100000_deep_is_one_error() -> None:
    deep = '{"config": ' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(MetaslotError, match="nested"):
        config_from_json(deep)


def test_sharing_into_a_place_that_cannot_be_written_is_one_line(tmp_path: Path, capsys) -> None:
    from metaslot.cli import share as share_cli
    from tests.support.tiny_runs import train_tiny

    run = train_tiny("autoencoder", tmp_path / "runs", "a")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        share_cli.main([str(run), str(blocker / "shared")])
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "share: error:" in error and "a-file" in error
