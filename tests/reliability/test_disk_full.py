"""Disk full and read-only run folders (issue 14, item 11): one clear line, no temporary files left,
and `cli.eval` prints its results even when it cannot write them.

The disk filling up is simulated at ``open``: files whose name matches store half of what is written
and then fail with ENOSPC (``faults.break_writes``). As root, ``chmod`` does not stop writes, so the
read-only case runs only for other users.
"""

from __future__ import annotations

import os
import stat

import attrs
import pytest

from metaslot.cli._errors import user_errors
from metaslot.cli.eval import main as eval_main
from metaslot.train.checkpoint import latest_checkpoint, load_model_checkpoint
from tests.support.faults import break_writes, disk_full, temporaries
from tests.support.helpers import evolve_loop, tiny_config, train
from tests.support.train_fakes import FakePipelineSpec


def test_disk_full_while_checkpointing_is_one_line_and_leaves_the_last_checkpoint(
    tmp_path, monkeypatch, capsys
) -> None:
    config = tiny_config(tmp_path, checkpoint_every=2)
    struck = break_writes(monkeypatch, "step-0000004.train", disk_full())
    with pytest.raises(SystemExit) as stopped, user_errors("train"):
        train(config)
    assert stopped.value.code == 1 and struck
    error = capsys.readouterr().err.strip()
    assert error.startswith("train: error: cannot write ") and "step-0000004.train.safetensors" in error
    assert "the disk is full" in error and len(error.splitlines()) == 1
    checkpoints = config.run_dir / "checkpoints"
    assert not temporaries(tmp_path)
    assert not list(checkpoints.glob("step-0000004*"))  # all of the checkpoint or none of it
    assert latest_checkpoint(checkpoints) == checkpoints / "step-0000002.json"
    load_model_checkpoint(checkpoints / "step-0000002.json", FakePipelineSpec().build())
    assert not (config.run_dir / "train.lock").exists()

    monkeypatch.undo()  # space freed: the run goes on
    assert train(attrs.evolve(config, resume=True)).step == 6


def test_disk_full_when_the_run_starts_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    config = tiny_config(tmp_path)
    break_writes(monkeypatch, "config.json", disk_full())
    with pytest.raises(SystemExit), user_errors("train"):
        train(config)
    assert f"cannot write {config.run_dir / 'config.json'}: the disk is full" in capsys.readouterr().err
    assert not temporaries(tmp_path) and not (config.run_dir / "config.json").exists()


def test_eval_prints_its_results_when_it_cannot_write_them(tmp_path, monkeypatch, capsys) -> None:
    config = tiny_config(tmp_path, checkpoint_every=2)
    train(attrs.evolve(evolve_loop(config, steps=2), evaluate_at_end=False))
    output = tmp_path / "evaluation"
    capsys.readouterr()
    break_writes(monkeypatch, "evaluation.json", disk_full())
    with pytest.raises(SystemExit) as stopped:
        eval_main([str(config.run_dir), "--output", str(output)])
    assert stopped.value.code == 1
    printed = capsys.readouterr()
    assert "FG-ARI" in printed.out and "mBO" in printed.out  # the numbers are on the screen
    assert printed.err.strip() == (
        f"eval: error: cannot write {output / 'evaluation.json'}: the disk is full (No space left on "
        "device); nothing half-written was left; free some space or make the folder writable, then run "
        "the command again"
    )
    assert not temporaries(tmp_path) and not (output / "evaluation.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_is_one_line(tmp_path, capsys) -> None:
    config = tiny_config(tmp_path, checkpoint_every=2)
    train(evolve_loop(config, stop_at=2))
    for folder in (config.run_dir / "checkpoints", config.run_dir):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(SystemExit), user_errors("train"):
            train(attrs.evolve(config, resume=True))
    finally:
        for folder in (config.run_dir, config.run_dir / "checkpoints"):
            folder.chmod(stat.S_IRWXU)
    error = capsys.readouterr().err.strip()
    assert error.startswith("train: error: cannot write") and "no permission to write there" in error
    assert not temporaries(tmp_path)
