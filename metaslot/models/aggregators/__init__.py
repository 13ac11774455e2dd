"""Slot Attention and MetaSlot: specs, modules and the codebook state MetaSlot maintains.

``from metaslot import MetaSlot`` resolves here. Both modules take ``features b n c`` (and optional
``initial_slots b k d``) and return an ``AggregatorOutput``; both have ``update_codebook(output)`` for the
training loop to call after each optimiser step (a no-op for plain Slot Attention).
"""

from __future__ import annotations

from metaslot.models.aggregators.codebook_state import CodebookState
from metaslot.models.aggregators.initializers import PerSlotGaussian, SharedGaussian
from metaslot.models.aggregators.metaslot import MetaSlot
from metaslot.models.aggregators.slot_attention import SlotAttention, SlotAttentionWeights
from metaslot.models.aggregators.specs import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.aggregators.variants import slot_attention_like

__all__ = [
    "CodebookState",
    "MetaSlot",
    "MetaSlotSpec",
    "PerSlotGaussian",
    "SharedGaussian",
    "SlotAttention",
    "SlotAttentionSpec",
    "SlotAttentionWeights",
    "slot_attention_like",
]
