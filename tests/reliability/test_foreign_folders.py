"""A folder that is not ours is never overwritten (issue 28, item 2).

A fresh run overwrote a ``config.json`` no training wrote (a ``save_pretrained`` folder inside the
runs dir; ``--name ..`` replaced the project's own ``config.json``; ``--name ""`` trained into the runs
dir itself), and `cli.share` into a folder holding another model replaced its weights and a
hand-edited model card. Both are refused now (``--replace`` replaces a shared model on purpose).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import attrs
import pytest

import metaslot
from metaslot.cli import share as share_cli
from metaslot.cli._errors import user_errors
from metaslot.errors import ConfigError
from metaslot.pretrained.errors import OutputFolderError
from tests.support.helpers import tiny_config, train
from tests.support.tiny_runs import train_tiny

SHORT = dict(steps=2, val_every=2, checkpoint_every=2)


@pytest.mark.parametrize("name", ["", ".", "..", "../elsewhere", "a/../../b", "/tmp/x", "a//b", "a/./b"])
def test_a_name_that_is_not_one_folder_inside_the_runs_dir_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="--name"):
        tiny_config(tmp_path / "runs", name=name, **SHORT)


def test_the_projects_own_config_json_is_never_replaced(tmp_path: Path, capsys) -> None:
    project = tmp_path / "project"
    (project / "runs").mkdir(parents=True)
    (project / "config.json").write_text('{"my": "project"}')
    config = tiny_config(project / "runs", **SHORT)
    with pytest.raises(ConfigError):
        train(attrs.evolve(config, name=".."))
    assert (project / "config.json").read_text() == '{"my": "project"}'


def test_a_fresh_run_never_replaces_a_config_json_that_no_training_wrote(
    tmp_path: Path, capsys, two_runs: tuple[Path, Path]
) -> None:
    shared = metaslot.save_pretrained(two_runs[0], tmp_path / "runs" / "run")
    before = {path.name: path.read_bytes() for path in shared.iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit), user_errors("train"):
        train(tiny_config(tmp_path / "runs", **SHORT))
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "not written by a training" in error and str(shared) in error
    assert {path.name: path.read_bytes() for path in shared.iterdir()} == before


def test_a_run_that_never_took_a_step_may_be_started_again(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "runs", **SHORT)
    train(config)
    for entry in ("checkpoints", "eval", "metrics.jsonl"):
        path = config.run_dir / entry
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    assert train(config).step == 2  # its own config.json, from a start that never got to step 1


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny autoencoder runs that differ in their seed (two different models)."""
    runs = tmp_path_factory.mktemp("runs")
    return train_tiny("autoencoder", runs, "a"), train_tiny("autoencoder", runs, "b", "--loop.seed", "1")


def shared_model(tmp_path: Path, run: Path) -> Path:
    return metaslot.save_pretrained(run, tmp_path / "shared")


def test_sharing_into_a_folder_of_another_model_is_refused_without_replace(
    tmp_path: Path, capsys, two_runs: tuple[Path, Path]
) -> None:
    first, second = two_runs
    folder = shared_model(tmp_path, first)
    card = folder / "README.md"
    card.write_text(card.read_text() + "\nMy notes on this model.\n")
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        share_cli.main([str(second), str(folder)])
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--replace" in error
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    share_cli.main([str(second), str(folder), "--replace"])  # on purpose
    assert "My notes" not in card.read_text()


def test_a_hand_edited_card_is_kept_when_the_same_model_is_shared_again(
    tmp_path: Path, two_runs: tuple[Path, Path]
) -> None:
    run = two_runs[0]
    folder = shared_model(tmp_path, run)
    card = folder / "README.md"
    card.write_text(card.read_text() + "\nMy notes.\n")
    with pytest.raises(OutputFolderError, match="README.md was edited"):
        metaslot.save_pretrained(run, folder)
    assert "My notes." in card.read_text()


def test_sharing_the_same_model_again_is_allowed(tmp_path: Path, two_runs: tuple[Path, Path]) -> None:
    run = two_runs[0]
    folder = shared_model(tmp_path, run)
    assert metaslot.save_pretrained(run, folder) == folder
