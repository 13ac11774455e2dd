"""One aggregator shape, the other kind: plain Slot Attention with a MetaSlot spec's widths and settings."""

from __future__ import annotations

import attrs

from metaslot.models.aggregators.specs import MetaSlotSpec, SlotAttentionSpec


def slot_attention_like(spec: MetaSlotSpec) -> SlotAttentionSpec:
    """The Slot Attention spec sharing every field it has with ``spec`` (slots, widths, iterations, ...)."""
    shared = {
        field.name: getattr(spec, field.name)
        for field in attrs.fields(SlotAttentionSpec)
        if field.init and field.name in attrs.fields_dict(MetaSlotSpec)
    }
    return SlotAttentionSpec(**shared)
