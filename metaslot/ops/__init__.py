"""Pure functions on tensors: the math of MetaSlot (shape-annotated, no modules, no global RNG)."""

from __future__ import annotations

from metaslot.ops.attention import masked_slot_attention
from metaslot.ops.dedup import prune_duplicates
from metaslot.ops.noise import noise_scale, prune_probability
from metaslot.ops.quantize import Quantized, quantize, squared_distances
from metaslot.ops.slot_attention import Aggregation, SlotAttentionStep, aggregate

__all__ = [
    "Aggregation",
    "Quantized",
    "SlotAttentionStep",
    "aggregate",
    "masked_slot_attention",
    "noise_scale",
    "prune_duplicates",
    "prune_probability",
    "quantize",
    "squared_distances",
]
