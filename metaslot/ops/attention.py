"""Slot attention's inverted attention: tokens distribute themselves over slots (softmax over slots).

Paper §2.2, reference `inverted_scaled_dot_product_attention`. Pruned slots (``keep`` False) are removed
from the competition before the softmax, so they receive exactly zero attention and zero updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

__all__ = ["FeatureNoise", "masked_slot_attention"]


@dataclass(frozen=True)
class FeatureNoise:
    """Noise ``scale·unit`` on the features under bias-free linear key/value projections ``W_k``, ``W_v``.

    Keys and values of the noisy features are ``K + scale·unit·W_kᵀ`` and ``V + scale·unit·W_vᵀ``;
    because logits and the weighted mean are linear in them, the noise enters as
    ``scale·(q·W_k)·unitᵀ`` and ``scale·(A·unit)·W_vᵀ``: b·k·n·c work instead of projecting the noise
    (b·n·c·2d), with the same values and gradients.
    """

    unit: Float[Tensor, "b n c"]
    scale: float
    key_weight: Float[Tensor, "d c"]
    value_weight: Float[Tensor, "d c"]


def masked_slot_attention(
    queries: Float[Tensor, "b k d"],
    keys: Float[Tensor, "b n d"],
    values: Float[Tensor, "b n d"],
    keep: Bool[Tensor, "b k"] | None = None,
    epsilon: float = 1e-5,
    noise: FeatureNoise | None = None,
) -> tuple[Float[Tensor, "b k d"], Float[Tensor, "b k n"]]:
    """One slot-attention read-out; returns ``(updates, attention)``.

    ``queries`` are projected but not scaled; logits are ``queries·keysᵀ/√d``. ``attention`` is the
    softmax over the slot axis (each token's column sums to 1 over kept slots, 0 where no slot is kept);
    ``updates`` are the values averaged with that attention renormalised over tokens
    (``attention / (Σ_tokens attention + epsilon)``). ``noise`` adds feature noise to the keys and values
    without projecting it (see `FeatureNoise`). Logits, softmax and the average run in float32 even
    under autocast; ``attention`` is float32 and ``updates`` come back in the values' dtype.
    """
    if epsilon <= 0:
        raise ValueError(f"epsilon ({epsilon}) must be positive: it keeps empty slots from dividing by zero")
    width = queries.shape[-1]
    with torch.autocast(device_type=queries.device.type, enabled=False):
        queries = queries.float()
        logits = torch.einsum("bkd,bnd->bkn", queries, keys.float())
        if noise is not None:
            unit = noise.unit.float()
            queries_in_features = queries @ noise.key_weight.float()
            logits = logits + noise.scale * torch.einsum("bkc,bnc->bkn", queries_in_features, unit)
        logits = logits / math.sqrt(width)
        if keep is not None:
            # A finite "minus infinity": a row with every slot pruned becomes a uniform softmax (no NaN)
            # that the multiplication by `keep` below sets to exactly zero.
            logits = logits.masked_fill(~keep[:, :, None], torch.finfo(torch.float32).min)
        attention = torch.softmax(logits, dim=1)
        if keep is not None:
            attention = attention * keep[:, :, None].to(attention.dtype)
        weights = attention / (attention.sum(dim=-1, keepdim=True) + epsilon)
        updates = torch.einsum("bkn,bnd->bkd", weights, values.float())
        if noise is not None:
            averaged_noise = torch.einsum("bkn,bnc->bkc", weights, unit)
            updates = updates + noise.scale * (averaged_noise @ noise.value_weight.float().T)
    return updates.to(values.dtype), attention
