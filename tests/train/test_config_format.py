"""config.json names spec classes by stable registered names and carries a format version; files
written before (format 1, classes named by ``module:QualName``) still load."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from metaslot.errors import CheckpointError
from metaslot.eval_settings import EvalSpec
from metaslot.train import spec_names
from metaslot.train.config import CONFIG_FORMAT, TrainConfig, config_from_json, config_to_json
from metaslot.train.presets import PRESETS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def spec_types(value: object) -> set[type]:
    """Every attrs class in a config tree."""
    if not attrs.has(type(value)):
        if isinstance(value, (tuple, list)):
            return set().union(*(spec_types(item) for item in value)) if value else set()
        return set()
    found = {type(value)}
    for field in attrs.fields(type(value)):
        found |= spec_types(getattr(value, field.name))
    return found


def saved_type_names(document: object) -> list[str]:
    if isinstance(document, dict):
        own = [document["__type__"]] if "__type__" in document else []
        return own + [name for item in document.values() for name in saved_type_names(item)]
    if isinstance(document, list):
        return [name for item in document for name in saved_type_names(item)]
    return []


def test_configs_written_before_the_registered_names_still_load() -> None:
    """A run folder's config.json from a 2-step run of the default job, and a SLATE preset, both
    written by the code before format 2 (EvalSpec then lived in metaslot.train.config)."""
    run = config_from_json((FIXTURES / "config_format1_autoencoder_shapes.json").read_text())
    assert isinstance(run, TrainConfig) and run.name == "autoencoder-shapes" and run.loop.steps == 2
    assert type(run.model).__name__ == "AutoencoderSpec" and run.model.aggregator.num_slots == 7
    assert run.evaluation == EvalSpec(max_batches=1, pictures=0)
    slate = config_from_json((FIXTURES / "config_format1_slate_voc.json").read_text())
    assert type(slate.model).__name__ == "SlateSpec" and type(slate.data).__name__ == "VOCSpec"
    for config in (run, slate):  # and they are saved again under the stable names
        assert config_from_json(config_to_json(config)) == config


def test_every_preset_saves_under_registered_names_and_round_trips() -> None:
    for key, make in PRESETS.items():
        config = make()
        document = json.loads(config_to_json(config))
        assert document["format"] == CONFIG_FORMAT
        names = saved_type_names(document["config"])
        assert names and all(name in spec_names.SPEC_NAMES for name in names), (key, names)
        assert config_from_json(config_to_json(config)) == config, key


def test_every_registered_name_is_where_its_class_lives() -> None:
    for name, location in spec_names.SPEC_NAMES.items():
        module_name, _, qualname = location.partition(":")
        module = __import__(module_name, fromlist=[qualname])
        cls = getattr(module, qualname)
        assert attrs.has(cls) and cls.__qualname__ == qualname == name, location


def test_a_newer_format_is_refused_naming_the_version() -> None:
    document = json.loads(config_to_json(PRESETS[("autoencoder", "shapes")]()))
    document["format"] = CONFIG_FORMAT + 1
    with pytest.raises(CheckpointError, match=f"format {CONFIG_FORMAT + 1}.*newer metaslot"):
        config_from_json(json.dumps(document))


def test_preset_classes_are_all_registered() -> None:
    used = set().union(*(spec_types(make()) for make in PRESETS.values()))
    located = {f"{cls.__module__}:{cls.__qualname__}" for cls in used}
    assert located <= set(spec_names.SPEC_NAMES.values()), sorted(
        located - set(spec_names.SPEC_NAMES.values())
    )
