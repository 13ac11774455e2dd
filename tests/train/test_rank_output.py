"""Under torchrun only rank 0 prints the command's status lines; the other ranks stay quiet.

No processes are spawned: the rank comes from the environment torchrun would set, and the training
itself is replaced by a stub that returns at once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import metaslot.train.loop as loop
from metaslot.cli import train as train_cli
from metaslot.cli._errors import user_errors
from metaslot.errors import TrainingInterrupted


def _as_rank(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", "2")


def _trained_at_once(config, *, evaluation, invocation=None) -> loop.TrainResult:
    return loop.TrainResult(
        run_dir=config.run_dir,
        step=3,
        checkpoint=config.run_dir / "checkpoints" / "step-3.json",
        last_validation=None,
    )


@pytest.mark.parametrize(("rank", "printed"), [(0, True), (1, False)])
def test_only_rank_zero_prints_the_run_folder(
    rank: int, printed: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    _as_rank(monkeypatch, rank)
    monkeypatch.setattr(loop, "train", _trained_at_once)
    train_cli.main(["--runs-dir", str(tmp_path)])
    assert ("run folder:" in capsys.readouterr().out) == printed


@pytest.mark.parametrize(("rank", "printed"), [(0, True), (1, False)])
def test_only_rank_zero_reports_an_interruption(
    rank: int, printed: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _as_rank(monkeypatch, rank)
    with pytest.raises(SystemExit) as stopped, user_errors("train"):
        raise TrainingInterrupted("stopped by signal at step 3; continue with --resume", signal_number=15)
    assert stopped.value.code == 143  # every rank still exits with 128 + SIGTERM
    assert ("stopped by signal" in capsys.readouterr().err) == printed
