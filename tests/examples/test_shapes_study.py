"""The shapes study script: tiny runs train, evaluate, resume/skip and write the report files."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shapes_study.py"


@pytest.fixture(scope="module")
def study_module():
    spec = importlib.util.spec_from_file_location("shapes_study", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["shapes_study"] = module
    spec.loader.exec_module(module)
    return module


def test_count_statistics_from_the_joint_histogram(study_module) -> None:
    diagonal = numpy.zeros((8, 8), dtype=int)
    for objects in range(1, 6):
        diagonal[objects, objects + 1] = 3  # always one slot more: the background
    assert study_module.count_correlation(diagonal.tolist()) == pytest.approx(1.0)
    assert study_module.background_count_error(diagonal.tolist()) == pytest.approx(0.0)
    constant = numpy.zeros((8, 8), dtype=int)
    constant[1:6, 7] = 2  # every image keeps all 7 slots
    assert numpy.isnan(study_module.count_correlation(constant.tolist()))
    # objects 1..5 with 7 slots: |7 - o - 1| = 5, 4, 3, 2, 1 → mean 3
    assert study_module.background_count_error(constant.tolist()) == pytest.approx(3.0)


@pytest.mark.slow
def test_tiny_study_writes_its_report_and_skips_finished_runs(study_module, tmp_path: Path) -> None:
    arguments = [
        "--seeds", "0",
        "--steps", "2",
        "--test-images", "8",
        "--picture-images", "2",
        "--runs-dir", str(tmp_path / "runs"),
        "--output", str(tmp_path / "out"),
        "--no-progress",
    ]  # fmt: skip
    study_module.main(arguments)
    report = json.loads((tmp_path / "out" / "shapes_study.json").read_text())
    assert set(report["runs"]) == {"slot-attention", "metaslot"}
    for runs in report["runs"].values():
        assert len(runs) == 1 and 0.0 <= runs[0]["mbo"] <= 1.0
    table = (tmp_path / "out" / "shapes_study.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| slot-attention (1 seeds)")
    for picture in ("shapes_study_grid.png", "shapes_study_counts.png"):
        assert (tmp_path / "out" / picture).stat().st_size > 1000
    checkpoints = tmp_path / "runs" / "metaslot-seed0" / "checkpoints"
    written = {path.name: path.stat().st_mtime_ns for path in checkpoints.iterdir()}
    study_module.main(arguments)  # everything finished: nothing is retrained or rewritten
    assert {path.name: path.stat().st_mtime_ns for path in checkpoints.iterdir()} == written
    assert json.loads((tmp_path / "out" / "shapes_study.json").read_text())["runs"] == report["runs"]
