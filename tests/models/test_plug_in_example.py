"""The plug-in example runs, trains both models and reports a valid number of kept slots per image."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plug_in.py"


def test_plug_in_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    namespace = runpy.run_path(str(EXAMPLE), run_name="plug_in_example")
    kept = namespace["main"](["--steps", "2", "--slots", "4"])
    printed = capsys.readouterr().out
    assert "their Slot Attention: loss" in printed and "MetaSlot:" in printed
    assert f"kept slots per image: {kept}" in printed
    assert len(kept) == 8 and all(1 <= count <= 4 for count in kept)
