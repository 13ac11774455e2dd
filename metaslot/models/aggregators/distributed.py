"""Kept for existing imports: the collectives of the codebook upkeep live in `metaslot.runtime.distributed`."""

from __future__ import annotations

from metaslot.runtime.distributed import all_gather_tensor, broadcast_state, is_distributed, world_size

__all__ = ["all_gather_tensor", "broadcast_state", "is_distributed", "world_size"]
