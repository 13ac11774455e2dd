"""The shapes study script: its run plan, its recipe check, and a tiny study that trains, resumes, skips
finished runs and writes its report (also from a partial set of runs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import attrs
import numpy
import pytest

from metaslot.errors import ConfigError
from metaslot.eval.session import SplitEvaluation
from metaslot.train.config import config_to_json
from metaslot.train.loop import train
from metaslot.train.presets import preset


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


def test_runs_shared_by_main_and_sweep_are_planned_once(study_module) -> None:
    own = study_module.preset_slots()
    study = study_module.Study(seeds=(0, 1), slot_counts=(2, own), sweep_seeds=(0,))
    names = [key.name for key in study_module.all_runs(study)]
    # main: 2 seeds × 2 aggregators; sweep: 2 k × 1 seed × 2 aggregators, of which k = own, seed 0 is main's
    assert len(names) == len(set(names)) == 6
    assert f"metaslot-k{own}-seed1" in names and "slot-attention-k2-seed0" in names
    sweep_share = dataclasses.replace(study, part="sweep", aggregators=("metaslot",))
    assert [key.name for key in study_module.runs_to_train(sweep_share)] == [
        "metaslot-k2-seed0",
        f"metaslot-k{own}-seed0",
    ]
    main_share = dataclasses.replace(study, part="main", aggregators=("slot-attention",))
    assert [key.name for key in study_module.runs_to_train(main_share)] == [
        f"slot-attention-k{own}-seed0",
        f"slot-attention-k{own}-seed1",
    ]


def test_runs_keep_the_preset_recipe_but_slots_seed_and_buffer(study_module) -> None:
    study = study_module.Study()
    for aggregator in ("metaslot", "slot-attention"):
        base = preset("autoencoder", "shapes", aggregator)
        own = base.model.aggregator.num_slots
        same = study_module.run_config(study, study_module.RunKey(aggregator, own, 3))
        assert (same.model, same.data, same.optim, same.schedule) == (
            base.model,
            base.data,
            base.optim,
            base.schedule,
        )
        assert same.loop == attrs.evolve(base.loop, seed=3)
        fewer = study_module.run_config(study, study_module.RunKey(aggregator, 4, 0)).model.aggregator
        restored = {"num_slots": own}
        if aggregator == "metaslot":  # the ring buffer follows k as the presets size it: 4 · batch · k
            assert fewer.buffer_capacity == 4 * base.loop.batch_size * 4
            restored["buffer_capacity"] = base.model.aggregator.buffer_capacity
        assert fewer.num_slots == 4
        assert attrs.evolve(fewer, **restored) == base.model.aggregator  # nothing else changed


def test_a_run_folder_of_another_recipe_is_refused(study_module, tmp_path: Path) -> None:
    study = study_module.Study(runs_dir=tmp_path)
    config = study_module.run_config(study, study_module.RunKey("metaslot", 4, 0))
    config.run_dir.mkdir(parents=True)
    driven_otherwise = attrs.evolve(
        config, resume=True, progress=False, loop=attrs.evolve(config.loop, stop_at=7)
    )
    (config.run_dir / "config.json").write_text(config_to_json(driven_otherwise))
    study_module.require_same_recipe(config)  # how a run was driven is not its recipe
    aggregator = attrs.evolve(
        config.model.aggregator, codebook_size=config.model.aggregator.codebook_size + 1
    )
    older = attrs.evolve(config, model=attrs.evolve(config.model, aggregator=aggregator))
    (config.run_dir / "config.json").write_text(config_to_json(older))
    with pytest.raises(ConfigError, match="codebook_size"):
        study_module.require_same_recipe(config)


def checkpoint_times(runs: Path) -> dict[str, int]:
    return {
        f"{run.name}/{path.name}": path.stat().st_mtime_ns
        for run in runs.iterdir()
        for path in (run / "checkpoints").iterdir()
    }


@pytest.mark.slow
def test_tiny_study_trains_once_resumes_and_reports(study_module, tmp_path: Path, capsys) -> None:
    own = study_module.preset_slots()
    runs, out, partial = tmp_path / "runs", tmp_path / "out", tmp_path / "partial"
    arguments = [
        "--seeds", "0",
        "--sweep-seeds", "0",
        "--slot-counts", "2", str(own),
        "--steps", "2",
        "--test-images", "8",
        "--picture-images", "2",
        "--runs-dir", str(runs),
        "--no-progress",
    ]  # fmt: skip
    study = study_module.Study(seeds=(0,), sweep_seeds=(0,), slot_counts=(2, own), steps=2, runs_dir=runs)
    interrupted = study_module.run_config(study, study_module.RunKey("metaslot", 2, 0))
    train(
        attrs.evolve(interrupted, loop=attrs.evolve(interrupted.loop, stop_at=1)),
        evaluation=SplitEvaluation(),
    )

    study_module.main([*arguments, "--part", "main", "--output", str(out)])
    assert not (runs / "slot-attention-k2-seed0").exists()
    study_module.main([*arguments, "--part", "main", "--no-report", "--output", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()  # trained nothing new, and wrote no report
    study_module.main([*arguments, "--report-only", "--output", str(partial)])
    report = json.loads((partial / "shapes_study.json").read_text())
    assert report["missing"] == [
        "slot-attention-k2-seed0 (not started)",
        "metaslot-k2-seed0 (at step 1 of 2)",
    ]
    assert set(report["runs"]) == {f"slot-attention-k{own}-seed0", f"metaslot-k{own}-seed0"}
    assert "Missing runs (2)" in (partial / "shapes_study.md").read_text()
    assert not (runs / "slot-attention-k2-seed0").exists()  # report-only trains nothing

    capsys.readouterr()
    study_module.main([*arguments, "--output", str(out)])
    printed = capsys.readouterr().out
    assert "training metaslot-k2-seed0 (resuming at step 1)" in printed
    assert "training slot-attention-k2-seed0 (from scratch)" in printed
    assert f"k{own}" not in "".join(line for line in printed.splitlines() if line.startswith("training"))
    report = json.loads((out / "shapes_study.json").read_text())
    assert set(report) == {"study", "runs", "main", "sweep", "sparsity", "missing"}
    assert report["missing"] == [] and report["sparsity"] == []  # no sparsity sweep unless asked
    assert len(report["runs"]) == 4
    for record in report["runs"].values():
        assert record["step"] == 2 and 0.0 <= record["fg_ari"] <= 1.0
        assert set(study_module.METRICS) <= set(record)
    for aggregator in ("slot-attention", "metaslot"):
        assert report["main"][aggregator]["seeds"] == [0] and report["main"][aggregator]["slots"] == own
        assert [row["slots"] for row in report["sweep"][aggregator]] == [2, own]
    assert report["runs"]["slot-attention-k2-seed0"]["active_slots"] == 2.0  # Slot Attention keeps every slot
    assert report["study"]["mean_objects"] == report["runs"]["metaslot-k2-seed0"]["true_objects"]
    table = (out / "shapes_study.md").read_text()
    assert "| slot-attention | 1 |" in table and f"| {own} | metaslot | 1 |" in table
    for picture in ("shapes_study_grid.png", "shapes_study_counts.png", "shapes_study_sweep.png"):
        assert (out / picture).stat().st_size > 1000

    written = checkpoint_times(runs)
    study_module.main([*arguments, "--output", str(out)])  # everything finished: nothing is retrained
    assert "training" not in capsys.readouterr().out
    assert checkpoint_times(runs) == written
    assert json.loads((out / "shapes_study.json").read_text())["runs"] == report["runs"]
