"""Pure functions on tensors: the math of MetaSlot (shape-annotated, no modules, no global RNG)."""

from __future__ import annotations

from metaslot.ops.attention import (
    feature_space_is_cheaper,
    feature_space_slot_attention,
    masked_slot_attention,
)
from metaslot.ops.checks import NonFiniteError, ShapeError
from metaslot.ops.codebook import (
    RingBuffer,
    buffer_code_usage,
    dead_code_timeout_steps,
    empty_ring_buffer,
    filled_rows,
    kmeans,
    kmeans_ema_step,
    replace_dead_codes,
    sample_filled_rows,
    update_usage_counters,
    write_ring_buffer,
)
from metaslot.ops.dedup import prune_duplicates
from metaslot.ops.noise import counter_uniform, noise_scale, prune_probability
from metaslot.ops.packing import kept_slot_index, unpack_slots
from metaslot.ops.patch_orders import inverse_order, spot_orders
from metaslot.ops.quantize import Quantized, quantize, squared_distances
from metaslot.ops.self_training import match_student_slots, self_training_cross_entropy
from metaslot.ops.slot_attention import (
    Aggregation,
    AttentionPath,
    KeyValueSource,
    SlotAttentionLayers,
    aggregate,
    key_value_source,
)
from metaslot.ops.top_k import gather_chosen_slots, scatter_chosen_slots, top_k_slots

__all__ = [
    "Aggregation",
    "AttentionPath",
    "KeyValueSource",
    "NonFiniteError",
    "Quantized",
    "RingBuffer",
    "ShapeError",
    "SlotAttentionLayers",
    "aggregate",
    "buffer_code_usage",
    "counter_uniform",
    "dead_code_timeout_steps",
    "feature_space_is_cheaper",
    "feature_space_slot_attention",
    "empty_ring_buffer",
    "filled_rows",
    "gather_chosen_slots",
    "inverse_order",
    "kmeans",
    "kmeans_ema_step",
    "kept_slot_index",
    "key_value_source",
    "masked_slot_attention",
    "match_student_slots",
    "noise_scale",
    "prune_duplicates",
    "unpack_slots",
    "prune_probability",
    "quantize",
    "replace_dead_codes",
    "sample_filled_rows",
    "self_training_cross_entropy",
    "scatter_chosen_slots",
    "spot_orders",
    "squared_distances",
    "top_k_slots",
    "update_usage_counters",
    "write_ring_buffer",
]

from metaslot.ops.metrics import (  # noqa: E402
    active_slot_count,
    adjusted_rand_index,
    averaging_units,
    codebook_perplexity,
    codes_in_use,
    masks_to_labels,
    matched_iou,
    mean_best_overlap,
    segment_count,
    slot_count_error,
    usage_perplexity,
)

__all__ += [
    "active_slot_count",
    "adjusted_rand_index",
    "averaging_units",
    "codebook_perplexity",
    "codes_in_use",
    "masks_to_labels",
    "matched_iou",
    "mean_best_overlap",
    "segment_count",
    "slot_count_error",
    "usage_perplexity",
]
