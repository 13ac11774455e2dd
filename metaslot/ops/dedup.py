"""Duplicate pruning: slots quantised to the same prototype are one object (paper §2.5)."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from metaslot.ops.checks import check_shapes

__all__ = ["prune_duplicates"]


def prune_duplicates(codes: Int[Tensor, "b k"]) -> Bool[Tensor, "b k"]:
    """Keep the first slot of each code in every image; later slots with the same code are duplicates.

    Matches the reference's scan in slot order (lowest index wins). Negative codes mean "no prototype"
    (the project's -1 convention) and are never kept. Vectorised: pairwise equality under a strict
    lower-triangular mask, so no host sync and static shapes.
    """
    check_shapes("prune_duplicates", codes=(codes, "b k", "integer"))
    num_slots = codes.shape[1]
    same_code = codes[:, :, None] == codes[:, None, :]  # [b, i, j]: slot i holds slot j's code
    earlier = torch.ones(num_slots, num_slots, dtype=torch.bool, device=codes.device).tril(diagonal=-1)
    has_earlier_twin = (same_code & earlier).any(dim=-1)
    return ~has_earlier_twin & (codes >= 0)
