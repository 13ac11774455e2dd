"""The shapes study with AdaSlot as a third model: its two stages within the budget, the shared stage 1
of the sweep, and reusing another study's metrics with --previous."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import attrs
import numpy
import pytest

from metaslot.errors import ConfigError
from metaslot.train.presets import preset

THREE = ("slot-attention", "metaslot", "adaslot")


def test_adaslot_runs_split_the_budget_and_share_stage_one(study_module) -> None:
    study = study_module.Study(compared=THREE)
    own = study_module.preset_slots()
    budget = preset("autoencoder", "shapes").loop.steps
    first = study_module.stage_one_config(study, 3)
    assert first.name == f"adaslot-stage1-k{own}-seed3" and first.loop.seed == 3
    assert first.model.aggregator.initializer == "shared" and first.model.aggregator.num_slots == own
    base = preset("autoencoder", "shapes", "adaslot")
    for slots in (4, own):
        second = study_module.run_config(study, study_module.RunKey("adaslot", slots, 3))
        assert second.init_from == first.run_dir  # every k of the sweep starts from the same stage 1
        assert first.loop.steps + second.loop.steps == budget
        assert second.model.aggregator == attrs.evolve(base.model.aggregator, num_slots=slots)
        assert (second.data, second.optim, second.schedule) == (base.data, base.optim, base.schedule)
    quarter = study_module.Study(compared=THREE, adaslot_stage_one=0.25)
    assert study_module.stage_one_config(quarter, 0).loop.steps == round(budget / 4)


def test_the_default_study_still_compares_two_models(study_module) -> None:
    names = {key.aggregator for key in study_module.all_runs(study_module.Study())}
    assert names == {"slot-attention", "metaslot"}
    three = {key.aggregator for key in study_module.all_runs(study_module.Study(compared=THREE))}
    assert three == set(THREE)


def test_previous_runs_stand_in_for_missing_ones(study_module, tmp_path: Path) -> None:
    study = study_module.Study(compared=THREE, seeds=(0,), sweep_seeds=(), steps=10, test_images=8)
    record = {
        "aggregator": "metaslot", "slots": 7, "seed": 0, "step": 10, "fg_ari": 0.5, "active_slots": 3.0,
        "count_correlation": None, "slot_histogram": [[0, 0], [0, 4]],
    }  # fmt: skip
    document = {"study": {"test_images": 8, "steps": 10}, "runs": {"metaslot-k7-seed0": record}}
    path = tmp_path / "previous.json"
    path.write_text(json.dumps(document))
    keys = study_module.main_runs(study)
    found = study_module.previous_runs(dataclasses.replace(study, previous=path), keys)
    (key,) = found
    assert key.name == "metaslot-k7-seed0" and found[key].reused and found[key].samples is None
    assert found[key].metrics["fg_ari"] == 0.5 and found[key].histogram.shape == (2, 2)
    other = dataclasses.replace(study, previous=path, test_images=16)
    with pytest.raises(ConfigError, match="test images"):
        study_module.previous_runs(other, keys)


def test_the_sparsity_sweep_changes_only_adaslots_weight(study_module) -> None:
    own = study_module.preset_slots()
    study = study_module.Study(compared=THREE, sweep_seeds=(0, 1), sparsity_weights=(0.01, 0.1))
    keys = study_module.sparsity_runs(study)
    assert [key.name for key in keys] == [
        f"adaslot-lambda0.01-k{own}-seed0",
        f"adaslot-lambda0.1-k{own}-seed0",
        f"adaslot-lambda0.01-k{own}-seed1",
        f"adaslot-lambda0.1-k{own}-seed1",
    ]
    preset_run = study_module.run_config(study, study_module.RunKey("adaslot", own, 1))
    changed = study_module.run_config(study, keys[3])
    assert changed.model.aggregator.sparsity_weight == 0.1 != preset_run.model.aggregator.sparsity_weight
    assert changed.init_from == preset_run.init_from  # the same stage 1 as the main comparison's run
    assert attrs.evolve(changed, name=preset_run.name, model=preset_run.model) == preset_run
    share = dataclasses.replace(study, part="sparsity", aggregators=("adaslot",))
    assert study_module.runs_to_train(share) == keys
    assert set(keys) <= set(study_module.all_runs(study))
    without_adaslot = study_module.Study(sparsity_weights=(0.1,))
    assert study_module.sparsity_runs(without_adaslot) == []


def evaluated_run(study_module, key, fg_ari: float, kept: float):
    metrics = {name: 0.5 for name in study_module.METRICS} | {"fg_ari": fg_ari, "active_slots": kept}
    return study_module.Evaluated(key, metrics, numpy.zeros((2, 2)), None, step=10)


def test_the_sparsity_summary_puts_the_preset_weight_first(study_module, tmp_path: Path) -> None:
    own = study_module.preset_slots()
    study = study_module.Study(compared=THREE, sweep_seeds=(0, 1), sparsity_weights=(0.5,))
    RunKey = study_module.RunKey
    evaluated = {
        key: evaluated_run(study_module, key, fg_ari, kept)
        for key, fg_ari, kept in (
            (RunKey("adaslot", own, 0), 0.9, 7.0),
            (RunKey("adaslot", own, 1), 0.7, 7.0),
            (RunKey("adaslot", own, 0, 0.5), 0.6, 3.0),  # seed 1 of λ = 0.5 not finished
        )
    }
    released, heavy = study_module.sparsity_summary(study, evaluated)
    assert released["preset"] and not heavy["preset"]
    assert (
        released["sparsity_weight"]
        == preset("autoencoder", "shapes", "adaslot").model.aggregator.sparsity_weight
    )
    assert released["seeds"] == [0, 1] and heavy["seeds"] == [0]
    assert released["fg_ari"]["mean"] == pytest.approx(0.8) and released["fg_ari"]["std"] == pytest.approx(
        0.1414, abs=1e-4
    )
    assert heavy["active_slots"] == {"mean": 3.0, "std": 0.0}
    rows = study_module.sparsity_table([released, heavy])
    assert rows[2].startswith(f"| {released['sparsity_weight']:g} (preset) | 2 | 0.800 ± 0.141 |")
    assert rows[3].startswith("| 0.5 | 1 | 0.600 ± 0.000 |")
    metaslot = {
        "seeds": [0],
        "fg_ari": {"mean": 0.95},
        "active_slots": {"mean": 3.5},
        "background_count_error": {"mean": 0.4},
    }
    picture = study_module.save_sparsity_plot([released, heavy], metaslot, 2.3, tmp_path / "sparsity.png")
    assert picture.stat().st_size > 1000


@pytest.mark.slow
def test_the_spare_slot_check_of_a_tiny_adaslot_run(study_module, tmp_path: Path) -> None:
    study = study_module.Study(compared=THREE, seeds=(0,), sweep_seeds=(), steps=2, runs_dir=tmp_path)
    key = study_module.RunKey("adaslot", 3, 0)
    study_module.train_run(study, key)
    config = study_module.run_config(study, key)
    check = study_module.spare_slots(config, count=4)
    assert set(check) == set(study_module.SPARE_LABELS)
    assert 0 <= check["spare_slots"] <= 2  # every pixel has a winner: at most k − 1 slots are spare
    assert 0 <= check["spare_alpha_share"] <= 1 - 1 / 3  # the winner holds at least 1/k of each pixel
    assert 0 <= check["winning_keep_probability"] <= 1 and check["loss_all_kept"] > 0
    if check["spare_slots"] == 0:
        assert check["loss_spare_dropped"] == check["loss_all_kept"]
    evaluated = study_module.evaluate_run(dataclasses.replace(study, test_images=8, picture_images=2), key)
    assert evaluated.spare is not None and evaluated.spare.keys() == check.keys()
    (row,) = study_module.spare_slot_table({key: evaluated})[5:]
    assert row.startswith("| adaslot-k3-seed0 |") and row.count("|") == 2 + len(study_module.SPARE_LABELS)
