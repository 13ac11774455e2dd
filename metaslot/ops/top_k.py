"""Top-k decoding (FT-DINOSAUR, Didolkar et al. 2024, arXiv 2408.09162 §4): every token is decoded from
only the ``top_k`` slots that claim it most in the aggregator's last attention, so the decoder's cost grows
with ``top_k`` instead of the number of slots. The selection carries no gradient (a hard choice); slots
not chosen at a token get alpha 0 there.

Axis ``s`` is the chosen slots (s = top_k ≤ k).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from metaslot.ops.checks import check_shapes

__all__ = ["gather_chosen_slots", "scatter_chosen_slots", "top_k_slots"]


def top_k_slots(
    scores: Float[Tensor, "b k n"], top_k: int, keep: Bool[Tensor, "b k"] | None = None
) -> Int[Tensor, "b s n"]:
    """Indices of the ``top_k`` highest-scoring slots at every token (in no particular order).

    ``scores`` are the aggregator's softmax-over-slots attention (FT-DINOSAUR: the last iteration's,
    before the renormalisation over tokens). Pruned slots (``keep`` False) rank below every kept one, so
    they are chosen only where fewer than ``top_k`` slots are kept. Ties break as ``torch.topk`` does.
    """
    check_shapes("top_k_slots", scores=(scores, "b k n", "float"), keep=(keep, "b k", "bool"))
    num_slots = scores.shape[1]
    if not 1 <= top_k <= num_slots:
        raise ValueError(f"top_k ({top_k}) must lie in [1, {num_slots}] (the number of slots)")
    scores = scores.detach()
    if keep is not None:
        scores = scores.masked_fill(~keep[:, :, None], float("-inf"))
    return torch.topk(scores, top_k, dim=1, sorted=False).indices


def gather_chosen_slots(
    values: Float[Tensor, "b k n d"], indices: Int[Tensor, "b s n"]
) -> Float[Tensor, "b s n d"]:
    """``values[b, indices[b, s, n], n, :]``: each token's row of each chosen slot."""
    expanded = indices[..., None].expand(-1, -1, -1, values.shape[-1])
    return torch.gather(values, dim=1, index=expanded)


def scatter_chosen_slots(
    values: Float[Tensor, "b s n"], indices: Int[Tensor, "b s n"], num_slots: int
) -> Float[Tensor, "b k n"]:
    """The inverse of the choice for per-token maps: ``values`` back at their slots, 0 at slots not chosen."""
    batch, _, tokens = values.shape
    full = values.new_zeros(batch, num_slots, tokens)
    return full.scatter(1, indices, values)
