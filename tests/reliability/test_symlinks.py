"""A run never writes through a symbolic link (issue 28, item 1).

A planted ``train.lock`` link made training truncate its target and fill it with the lock's JSON; a
planted ``metrics.jsonl`` link got rows appended to its target. Every file a run (or `cli.share`)
writes is now opened so that a link there, or a linked folder inside the run folder, is refused in one
line naming it, and the link's target is left as it was.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from metaslot.cli._errors import user_errors
from metaslot.errors import WriteError
from metaslot.runtime import files
from metaslot.train import run_lock
from tests.support.helpers import evolve_loop, tiny_config, train

SECRET = "the user's own file\n"


def victim(tmp_path: Path) -> Path:
    target = tmp_path / "elsewhere" / "precious.txt"
    target.parent.mkdir(exist_ok=True)
    target.write_text(SECRET)
    return target


def refused_in_one_line(config, capsys, link: Path) -> None:
    with pytest.raises(SystemExit), user_errors("train"):
        train(config)
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert str(link) in error and "symbolic link" in error


@pytest.mark.parametrize("name", ["train.lock", "metrics.jsonl", "config.json"])
def test_a_planted_link_in_a_new_run_folder_is_refused(tmp_path: Path, capsys, name: str) -> None:
    config = tiny_config(tmp_path / "runs", steps=2, val_every=2, checkpoint_every=2)
    target = victim(tmp_path)
    config.run_dir.mkdir(parents=True)
    (config.run_dir / name).symlink_to(target)
    refused_in_one_line(config, capsys, config.run_dir / name)
    assert target.read_text() == SECRET
    assert (config.run_dir / name).is_symlink()  # the link is left for the user to look at


@pytest.mark.parametrize("name", ["train.lock", "metrics.jsonl", "checkpoints/latest.json"])
def test_a_planted_link_in_a_stopped_run_is_refused_on_resume(tmp_path: Path, capsys, name: str) -> None:
    config = tiny_config(tmp_path / "runs", checkpoint_every=2)
    train(evolve_loop(config, stop_at=2))
    target = victim(tmp_path)
    link = config.run_dir / name
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    capsys.readouterr()
    refused_in_one_line(attrs.evolve(config, resume=True), capsys, link)
    assert target.read_text() == SECRET


@pytest.mark.parametrize("name", ["checkpoints", "eval", "tensorboard", "wandb"])
def test_a_linked_folder_the_run_writes_is_refused(tmp_path: Path, capsys, name: str) -> None:
    config = tiny_config(tmp_path / "runs", steps=2, val_every=2, checkpoint_every=2)
    outside = tmp_path / "outside"
    outside.mkdir()
    config.run_dir.mkdir(parents=True)
    (config.run_dir / name).symlink_to(outside, target_is_directory=True)
    refused_in_one_line(config, capsys, config.run_dir / name)
    assert list(outside.iterdir()) == []


def test_the_lock_never_opens_a_link(tmp_path: Path) -> None:
    target = victim(tmp_path)
    (tmp_path / run_lock.LOCK_FILE).symlink_to(target)
    with pytest.raises(WriteError, match="symbolic link"):
        run_lock.acquire(tmp_path)
    assert target.read_text() == SECRET


def test_an_atomic_write_replaces_neither_a_link_nor_its_target(tmp_path: Path) -> None:
    target = victim(tmp_path)
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    with pytest.raises(WriteError, match="symbolic link"):
        files.atomic_write_bytes(link, b"{}")
    assert target.read_text() == SECRET and link.is_symlink()


def test_a_planted_temporary_link_is_not_written_through(tmp_path: Path) -> None:
    target = victim(tmp_path)
    path = tmp_path / "config.json"
    files.temporary_path(path).symlink_to(target)  # the name is predictable: .config.json.tmp-<pid>
    files.atomic_write_bytes(path, b"{}")
    assert target.read_text() == SECRET and path.read_bytes() == b"{}"


def test_an_append_never_follows_a_link(tmp_path: Path) -> None:
    target = victim(tmp_path)
    link = tmp_path / "metrics.jsonl"
    link.symlink_to(target)
    with pytest.raises(WriteError, match="symbolic link"):
        files.append_text(link, "{}\n")
    assert target.read_text() == SECRET
