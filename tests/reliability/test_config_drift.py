"""Saved configs cannot drift silently (issue 28, item 7, its config part).

Weights mean something only with the model spec they were trained with. Editing a run's
``config.json`` (``num_iterations`` 3 → 1) used to evaluate other code on the same weights without a
word. Checkpoints and save_pretrained folders now record the model spec and its hash; loading refuses a
config.json whose model differs, naming the file and the field. An older config.json lacking a field
is completed with today's default, and a note says which.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import pytest

import metaslot
from metaslot.cli import eval as eval_cli
from metaslot.errors import CheckpointError
from metaslot.train.config import config_to_json, read_config, read_config_file
from tests.support.helpers import tiny_config, train


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_runs import train_tiny

    return train_tiny("autoencoder", tmp_path_factory.mktemp("runs"), "a")


def copy_tree(source: Path, target: Path) -> Path:
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())
    return target


def edit_iterations(config_json: Path) -> tuple[int, int]:
    document = json.loads(config_json.read_text())
    aggregator = document["config"]["model"]["aggregator"]
    before = aggregator["num_iterations"]
    aggregator["num_iterations"] = before + 2
    config_json.write_text(json.dumps(document, indent=2))
    return before, before + 2


def test_checkpoints_and_shared_folders_record_the_model(run: Path, tmp_path: Path) -> None:
    sidecar = json.loads((run / "checkpoints" / "latest.json").read_text())["checkpoint"]
    record = json.loads((run / "checkpoints" / f"{sidecar}.json").read_text())["model_config"]
    assert len(record["sha256"]) == 64 and record["spec"]["aggregator"]["num_iterations"] >= 1
    shared = metaslot.save_pretrained(run, tmp_path / "model")
    block = json.loads((shared / "config.json").read_text())["pretrained"]
    assert block["model_config"]["sha256"] == record["sha256"]


def test_an_edited_run_config_is_refused_by_eval_and_load(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = copy_tree(run, tmp_path / "a")
    before, after = edit_iterations(copy / "config.json")
    message = rf"config\.json: the model differs .*num_iterations {before} -> {after}"
    with pytest.raises(SystemExit):
        eval_cli.main([str(copy), "--evaluation.pictures", "0"])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"eval: error: {copy / 'config.json'}")
    assert re.search(message, err)
    with pytest.raises(CheckpointError, match=message):
        metaslot.load(copy)
    assert not list(copy.glob("eval-*"))


def test_an_edited_shared_config_is_refused(run: Path, tmp_path: Path) -> None:
    shared = metaslot.save_pretrained(run, tmp_path / "model")
    metaslot.load(shared)  # unedited: loads
    before, after = edit_iterations(shared / "config.json")
    with pytest.raises(CheckpointError, match=rf"num_iterations {before} -> {after}"):
        metaslot.load(shared)


def test_an_edited_config_is_refused_on_resume(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, steps=6, stop_at=3)
    train(config)
    path = config.run_dir / "config.json"
    document = json.loads(path.read_text())
    width = document["config"]["model"]["width"]
    document["config"]["model"]["width"] = width + 1
    path.write_text(json.dumps(document, indent=2))
    resumed = tiny_config(tmp_path, steps=6)
    resumed = attrs.evolve(resumed, model=attrs.evolve(resumed.model, width=width + 1), resume=True)
    with pytest.raises(CheckpointError, match=rf"model\.width {width} -> {width + 1}"):
        train(resumed)


def test_files_without_a_record_still_load(run: Path, tmp_path: Path) -> None:
    """Checkpoints written before the record existed: no hash, no check."""
    copy = copy_tree(run, tmp_path / "a")
    for sidecar in (copy / "checkpoints").glob("step-*.json"):
        document = json.loads(sidecar.read_text())
        del document["model_config"]
        sidecar.write_text(json.dumps(document))
    edit_iterations(copy / "config.json")
    metaslot.load(copy)


def test_an_older_config_names_the_fields_it_was_completed_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(config_to_json(tiny_config(tmp_path)))
    del document["config"]["loop"]["stop_at"]
    del document["config"]["evaluation"]["pictures"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    config, defaulted = read_config(path.read_text())
    assert sorted(defaulted) == ["evaluation.pictures", "loop.stop_at"]
    assert config.loop.stop_at is None
    read_config_file(path)
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "loop.stop_at" in err and "evaluation.pictures" in err
    assert err.startswith("note: ") and str(path) in err


def test_a_complete_config_gives_no_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(config_to_json(tiny_config(tmp_path)))
    assert read_config(path.read_text())[1] == []
    read_config_file(path)
    assert capsys.readouterr().err == ""
