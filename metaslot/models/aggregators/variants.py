"""One aggregator shape, another kind: Slot Attention or AdaSlot with a MetaSlot spec's widths and settings."""

from __future__ import annotations

import attrs

from metaslot.models.aggregators.specs import AdaSlotSpec, MetaSlotSpec, SlotAttentionSpec


def _shared_fields(spec: object, target: type, leave: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        field.name: getattr(spec, field.name)
        for field in attrs.fields(target)
        if field.init and field.name in attrs.fields_dict(type(spec)) and field.name not in leave
    }


def slot_attention_like(spec: MetaSlotSpec) -> SlotAttentionSpec:
    """The Slot Attention spec sharing every field it has with ``spec`` (slots, widths, iterations, ...)."""
    return SlotAttentionSpec(**_shared_fields(spec, SlotAttentionSpec))


def adaslot_like(spec: MetaSlotSpec | SlotAttentionSpec, **changes: object) -> AdaSlotSpec:
    """The AdaSlot spec with ``spec``'s slots, widths and iterations, AdaSlot's own defaults otherwise
    (the shared initialiser among them), and ``changes`` on top (``sparsity_weight=...``)."""
    return AdaSlotSpec(**(_shared_fields(spec, AdaSlotSpec, leave=("initializer",)) | changes))
