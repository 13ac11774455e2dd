"""Slot Attention, MetaSlot and AdaSlot: specs, modules and the codebook state MetaSlot maintains.

``from metaslot import MetaSlot`` resolves here. Both modules take ``features b n c`` (and optional
``initial_slots b k d``) and return an ``AggregatorOutput``; both have ``update_codebook(output)`` for the
training loop to call after each optimiser step (a no-op for plain Slot Attention).
"""

from __future__ import annotations

from metaslot.models.aggregators.adaslot import AdaSlot
from metaslot.models.aggregators.codebook_state import CodebookState
from metaslot.models.aggregators.initializers import PerSlotGaussian, SharedGaussian
from metaslot.models.aggregators.metaslot import MetaSlot
from metaslot.models.aggregators.slot_attention import SlotAttention, SlotAttentionWeights
from metaslot.models.aggregators.specs import (
    AdaSlotSpec,
    MetaSlotSpec,
    SlotAttentionSpec,
    pixel_sparsity_weight,
)
from metaslot.models.aggregators.variants import adaslot_like, slot_attention_like

__all__ = [
    "AdaSlot",
    "AdaSlotSpec",
    "CodebookState",
    "MetaSlot",
    "MetaSlotSpec",
    "PerSlotGaussian",
    "SharedGaussian",
    "SlotAttention",
    "SlotAttentionSpec",
    "SlotAttentionWeights",
    "adaslot_like",
    "pixel_sparsity_weight",
    "slot_attention_like",
]
