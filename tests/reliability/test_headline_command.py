"""The headline command says everything it needs at once, fast (issue 28, item 11).

``python -m cli.train --model slate --data voc`` on a machine without network, data or stage-1 model
spent 52 s in hub retries, named only the DINO weights (not the missing ``voc/*.lmdb`` nor ``--vqvae``)
and left ``runs/slate-voc/config.json`` behind. Now every local requirement is checked first, the hub
is tried once, and one message lists everything with the command or flag that provides it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metaslot.cli import train as train_cli


def one_error(capsys, arguments: list[str]) -> str:
    with pytest.raises(SystemExit) as stopped:
        train_cli.main(arguments)
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_slate_on_voc_with_nothing_there_names_everything_missing(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a new user's empty project folder; HF_HUB_OFFLINE is set by the tests
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty hub cache
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    error = one_error(capsys, ["--model", "slate", "--data", "voc"])
    assert "voc/train.lmdb" in error and "voc/val.lmdb" in error and "cli.download voc" in error
    assert "--vqvae" in error and "python -m cli.train --model vqvae --data voc" in error
    assert "vit_small_patch14_dinov2" in error and "--model.encoder.weights" in error
    assert not (tmp_path / "runs").exists()  # no run folder for a run that cannot start


def test_the_hub_is_tried_once_when_not_offline(tmp_path: Path, capsys, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    arguments = ["--model", "dinosaur", "--data", "shapes", "--runs-dir", str(tmp_path / "runs")]
    error = one_error(capsys, arguments)
    assert "127.0.0.1 cannot be reached" in error and "--model.encoder.weights" in error
    assert "Retry" not in error and not (tmp_path / "runs").exists()


def test_weight_files_and_a_runs_dir_given_by_path_are_checked_before_anything_starts(
    tmp_path: Path, capsys
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    arguments = [
        "--model", "dinosaur", "--data", "shapes",
        "--model.encoder.weights", str(tmp_path / "nowhere.safetensors"),
        "--runs-dir", str(blocker / "runs"),
    ]  # fmt: skip
    error = one_error(capsys, arguments)
    assert "2 things missing" in error
    assert "nowhere.safetensors" in error and "--runs-dir" in error
