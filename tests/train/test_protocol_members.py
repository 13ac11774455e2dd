"""Pipelines and aggregators meet their protocols the way Python 3.12 checks them.

From 3.12, ``isinstance(x, Pipeline)`` finds members with `inspect.getattr_static`, which does not see
an ``nn.Module``'s submodules (they live in ``_modules``). With ``METASLOT_TYPECHECK=1`` every argument
typed ``Pipeline`` goes through that check, so a member held only as a submodule fails there while the
same code passes on 3.11. These tests look every member up statically on every Python.
"""

from __future__ import annotations

import inspect

import pytest

from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.interfaces import Aggregator, Pipeline
from metaslot.train.presets import preset
from tests.support.train_fakes import FakePipelineSpec


def protocol_members(protocol: type) -> list[str]:
    """The members a runtime protocol check looks for: the public names it defines, and ``__call__``."""
    names = [name for name in vars(protocol) if not name.startswith("_") or name == "__call__"]
    return sorted(set(names) | set(getattr(protocol, "__annotations__", {})))


def statically_missing(instance: object, protocol: type) -> list[str]:
    missing = []
    for name in protocol_members(protocol):
        try:
            inspect.getattr_static(instance, name)
        except AttributeError:
            missing.append(name)
    return missing


def test_the_protocol_members_are_the_documented_ones() -> None:
    assert protocol_members(Pipeline) == [
        "__call__",
        "after_optimizer_step",
        "aggregator",
        "codebook_statistics",
    ]
    assert protocol_members(Aggregator) == ["codebook_size", "update_codebook"]


@pytest.mark.parametrize("model", ["autoencoder", "vqvae"])
def test_built_pipelines_have_every_member_on_the_class(model: str) -> None:
    spec = preset(model, "shapes").model
    pipeline = spec.build()
    assert statically_missing(pipeline, Pipeline) == []
    assert isinstance(pipeline, Pipeline)


@pytest.mark.parametrize(
    "spec",
    [
        MetaSlotSpec(slot_dim=8, feature_dim=8, num_slots=3, codebook_size=4),
        SlotAttentionSpec(slot_dim=8, feature_dim=8, num_slots=3),
    ],
)
def test_aggregators_have_every_member_on_the_class(spec) -> None:
    aggregator = spec.build()
    assert statically_missing(aggregator, Aggregator) == []


def test_the_training_fake_is_a_pipeline_on_every_python() -> None:
    pipeline = FakePipelineSpec().build()
    assert statically_missing(pipeline, Pipeline) == []
    assert statically_missing(pipeline.aggregator, Aggregator) == []
