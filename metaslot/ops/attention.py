"""Slot attention's inverted attention: tokens distribute themselves over slots (softmax over slots).

Paper §2.2, reference `inverted_scaled_dot_product_attention`. Pruned slots (``keep`` False) are removed
from the competition before the softmax, so they receive exactly zero attention and zero updates.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from metaslot.ops.checks import check_shapes

__all__ = ["feature_space_is_cheaper", "feature_space_slot_attention", "masked_slot_attention"]


def masked_slot_attention(
    queries: Float[Tensor, "b k d"],
    keys: Float[Tensor, "b n d"],
    values: Float[Tensor, "b n d"],
    keep: Bool[Tensor, "b k"] | None = None,
    epsilon: float = 1e-5,
    logit_scale: float | None = None,
) -> tuple[Float[Tensor, "b k d"], Float[Tensor, "b k n"]]:
    """One slot-attention read-out; returns ``(updates, attention)``.

    ``queries`` are projected but not scaled; logits are ``queries·keysᵀ/√d`` (``logit_scale`` replaces
    ``1/√d`` where the queries live in another space, see `feature_space_slot_attention`). ``attention`` is the
    softmax over the slot axis (each token's column sums to 1 over kept slots, 0 where no slot is kept);
    ``updates`` are the values averaged with that attention renormalised over tokens
    (``attention / (Σ_tokens attention + epsilon)``). Logits, softmax and the average run in float32 even
    under autocast; ``attention`` is float32 and ``updates`` come back in the values' dtype.
    """
    check_shapes(
        "masked_slot_attention",
        queries=(queries, "b k d", "float"),
        keys=(keys, "b n d", "float"),
        values=(values, "b n d", "float"),
        keep=(keep, "b k", "bool"),
    )
    if not 0 < epsilon < math.inf:  # also refuses NaN
        raise ValueError(
            f"epsilon ({epsilon}) must be positive and finite: it keeps empty slots from dividing by zero"
        )
    if logit_scale is None:
        logit_scale = 1.0 / math.sqrt(queries.shape[-1])
    with torch.autocast(device_type=queries.device.type, enabled=False):
        queries = queries.float()
        logits = torch.bmm(queries, keys.float().transpose(1, 2)) * logit_scale
        if keep is not None:
            # A finite "minus infinity": a row with every slot pruned becomes a uniform softmax (no NaN)
            # that the multiplication by `keep` below sets to exactly zero.
            logits = logits.masked_fill(~keep[:, :, None], torch.finfo(torch.float32).min)
        attention = torch.softmax(logits, dim=1)
        if keep is not None:
            attention = attention * keep[:, :, None].to(attention.dtype)
        weights = attention / (attention.sum(dim=-1, keepdim=True) + epsilon)
        updates = torch.bmm(weights, values.float())
    return updates.to(values.dtype), attention


def feature_space_slot_attention(
    queries: Float[Tensor, "b k d"],
    features: Float[Tensor, "b n c"],
    key_weight: Float[Tensor, "d c"],
    value_weight: Float[Tensor, "d c"],
    keep: Bool[Tensor, "b k"] | None = None,
    epsilon: float = 1e-5,
) -> tuple[Float[Tensor, "b k d"], Float[Tensor, "b k n"]]:
    """`masked_slot_attention` over keys ``features·W_kᵀ`` and values ``features·W_vᵀ``, never projecting them.

    Logits and the weighted mean are linear in the keys and values, so ``q·(X·W_kᵀ)ᵀ = (q·W_k)·Xᵀ`` and
    ``A·(X·W_vᵀ) = (A·X)·W_vᵀ``: the queries go to feature space and the averaged features come back,
    b·k·c·(2n + 2d) work per call instead of projecting every token (b·n·c·2d). Same values and gradients
    as projecting, up to rounding; the cheaper choice depends on the shapes (`feature_space_is_cheaper`).
    ``updates`` come back in float32.
    """
    check_shapes(
        "feature_space_slot_attention",
        queries=(queries, "b k d", "float"),
        features=(features, "b n c", "float"),
        key_weight=(key_weight, "d c", "float"),
        value_weight=(value_weight, "d c", "float"),
        keep=(keep, "b k", "bool"),
    )
    with torch.autocast(device_type=queries.device.type, enabled=False):
        queries_in_features = queries.float() @ key_weight.float()
        averaged_features, attention = masked_slot_attention(
            queries_in_features,
            features,
            features,
            keep,
            epsilon,
            logit_scale=1.0 / math.sqrt(key_weight.shape[0]),
        )
        updates = averaged_features.float() @ value_weight.float().T
    return updates, attention


def feature_space_is_cheaper(
    tokens: int, feature_dim: int, slot_dim: int, num_slots: int, num_iterations: int
) -> bool:
    """Whether ``num_iterations`` read-outs in feature space cost fewer multiply-adds than projecting once.

    Per image, projecting keys and values costs ``2·n·c·d`` once plus ``2·k·n·d`` per read-out; reading out
    in feature space costs ``2·k·n·c + 2·k·c·d`` per read-out. With ``c = d`` that is simply ``T·k < n``:
    true for slot attention over a feature map (k ≈ 10, n ≥ 64), false for a handful of tokens.
    """
    n, c, d, k = tokens, feature_dim, slot_dim, num_slots
    projected = 2 * n * c * d + num_iterations * 2 * k * n * d
    feature_space = num_iterations * (2 * k * n * c + 2 * k * c * d)
    return feature_space < projected
