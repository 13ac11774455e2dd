"""The shapes study with AdaSlot as a third model: its two stages within the budget, the shared stage 1
of the sweep, and reusing another study's metrics with --previous."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import attrs
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
