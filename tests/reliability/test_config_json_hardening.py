"""config.json builds only metaslot's own specs and enums (or explicitly allowed ones), nothing else.

Issue 14, hardening: ``{"__enum__": "os:environ", "name": ...}`` read an environment variable into a
config field (and a validator's message printed it), and ``__type__`` built any imported attrs class.
"""

from __future__ import annotations

import json

import attrs
import pytest

from metaslot.data.shapes import ShapesSpec
from metaslot.errors import CheckpointError
from metaslot.train.config import TrainConfig, config_from_json, config_to_json, from_jsonable
from tests.support.specs import tiny_metaslot

SECRET_NAME = "METASLOT_TEST_SECRET"
SECRET = "s3cr3t-value-from-the-environment"
BUILT: list[str] = []


@attrs.frozen
class Gadget:
    """An attrs class outside metaslot whose construction has a side effect."""

    command: str = "rm -rf"

    def __attrs_post_init__(self) -> None:
        BUILT.append(self.command)


def small_config() -> TrainConfig:
    # Light specs (the presets import every pipeline); the JSON round trip is the same for all.
    spec = tiny_metaslot()
    return TrainConfig(name="run", model=spec, data=ShapesSpec())


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_NAME, SECRET)
    BUILT.clear()


@pytest.mark.parametrize(
    "value",
    [
        {"__enum__": "os:environ", "name": SECRET_NAME},
        {"__enum__": "metaslot.train.config:importlib.sys.modules", "name": "os"},
        {"__enum__": "metaslot.data.lmdb_io:os.environ", "name": SECRET_NAME},
        {"__type__": f"{__name__}:Gadget", "command": "touch pwned"},
        {"__type__": "metaslot.train.config:rebuild"},
        {"__type__": "metaslot.train.config:attrs.Attribute"},
        {"__enum__": "metaslot.train.config:TrainConfig", "name": "name"},
    ],
    ids=[
        "os-environ",
        "sys-modules-walk",
        "environ-through-metaslot",
        "foreign-attrs",
        "function",
        "re-export",
        "not-an-enum",
    ],
)
def test_foreign_or_non_class_names_are_refused(value: dict) -> None:
    with pytest.raises(CheckpointError, match="config.json names"):
        from_jsonable(value)
    assert BUILT == []


def test_an_environment_variable_cannot_reach_a_config_field_or_its_message() -> None:
    document = json.loads(config_to_json(small_config()))
    document["config"]["loop"]["steps"] = {"__enum__": "os:environ", "name": SECRET_NAME}
    with pytest.raises(CheckpointError) as error:
        config_from_json(json.dumps(document))
    assert SECRET not in str(error.value) and "outside metaslot" in str(error.value)


def test_own_specs_still_round_trip() -> None:
    config = small_config()
    assert config_from_json(config_to_json(config)) == config
