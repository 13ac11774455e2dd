"""The tiny MetaSlot spec shared by tests that need any valid MetaSlot, not particular shapes."""

from __future__ import annotations

from metaslot.models.aggregators import MetaSlotSpec


def tiny_metaslot(**overrides: object) -> MetaSlotSpec:
    """3 slots of width 4 over features of width 5, 6 codes, a buffer of 8; ``overrides`` replace fields."""
    fields = dict(num_slots=3, slot_dim=4, feature_dim=5, codebook_size=6, buffer_capacity=8)
    return MetaSlotSpec(**{**fields, **overrides})
