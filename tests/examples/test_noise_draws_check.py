"""The noise-draw check trains the shapes study's runs with stage 1 drawing the full feature noise."""

from __future__ import annotations

from pathlib import Path

import pytest

from metaslot.bench import noise_draws
from tests.examples.conftest import load_example


@pytest.mark.slow
def test_training_goes_through_the_full_draws_and_only_there(
    study_module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    full = noise_draws._full_draw

    def counted(*arguments, **keywords):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return full(*arguments, **keywords)

    monkeypatch.setattr(noise_draws, "_full_draw", counted)
    check = load_example("noise_draws_check")
    tiny = ["--seeds", "0", "--steps", "2", "--aggregators", "metaslot", "--part", "main", "--no-report"]
    study_module.main([*tiny, "--runs-dir", str(tmp_path / "study"), "--no-progress"])
    assert calls == []  # the study itself draws the reduced noise
    monkeypatch.chdir(tmp_path)
    check.main([*tiny, "--no-progress"])
    assert calls  # every noisy stage-1 read-out of the check drew the full noise
    assert (tmp_path / check.RUNS_DIR / "metaslot-k7-seed0" / "config.json").is_file()
