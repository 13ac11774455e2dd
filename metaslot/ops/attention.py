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

__all__ = [
    "feature_space_is_cheaper",
    "feature_space_slot_attention",
    "masked_slot_attention",
    "noisy_feature_space_slot_attention",
]


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
        attention, weights = _attention_weights(logits, keep, epsilon)
        updates = torch.bmm(weights, values.float())
    return updates.to(values.dtype), attention


def _attention_weights(
    logits: Float[Tensor, "b k n"], keep: Bool[Tensor, "b k"] | None, epsilon: float
) -> tuple[Float[Tensor, "b k n"], Float[Tensor, "b k n"]]:
    """Softmax over slots (pruned slots exactly 0) and the same renormalised over tokens (+ epsilon)."""
    if keep is not None:
        # A finite "minus infinity": a row with every slot pruned becomes a uniform softmax (no NaN)
        # that the multiplication by `keep` below sets to exactly zero.
        logits = logits.masked_fill(~keep[:, :, None], torch.finfo(torch.float32).min)
    attention = torch.softmax(logits, dim=1)
    if keep is not None:
        attention = attention * keep[:, :, None].to(attention.dtype)
    weights = attention / (attention.sum(dim=-1, keepdim=True) + epsilon)
    return attention, weights


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


def noisy_feature_space_slot_attention(
    queries: Float[Tensor, "b k d"],
    features: Float[Tensor, "b n c"],
    key_weight: Float[Tensor, "d c"],
    value_weight: Float[Tensor, "d c"],
    sigma: float,
    keep: Bool[Tensor, "b k"] | None = None,
    epsilon: float = 1e-5,
    generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, "b k d"], Float[Tensor, "b k n"]]:
    """`feature_space_slot_attention` over ``features + σ·ε`` (ε a b·n·c unit normal), drawing only
    b·n·k + b·k·c normals: the same joint distribution of ``(updates, attention)``, without gradients.

    The read-out sees ε through two linear maps only. The logits see ``q̃·ε_n`` (q̃ = queries·W_k, k×c):
    with Q an orthonormal basis of the span of q̃'s rows (QR of q̃ᵀ), ``q̃·ε_n = (q̃·Q)·z_n`` where
    ``z_n = Qᵀ·ε_n ~ N(0, I_k)``, drawn directly. The weighted mean sees ``Σ_n w_kn·ε_n = (w·z)·Qᵀ + w·E⊥``
    (w = attention renormalised over tokens, E⊥ = the part of ε orthogonal to Q, independent of z):
    given w, ``w·E⊥`` is matrix-normal with row covariance w·wᵀ and column covariance ``P⊥ = I − Q·Qᵀ``,
    drawn as ``Rᵀ·Y·P⊥`` with ``w·wᵀ = Rᵀ·R`` (QR of wᵀ) and Y a k×c unit normal. The draws' values
    differ from drawing ε, their distribution does not. Only valid where no gradient is taken
    (MetaSlot's stage 1 runs without autograd): a gradient would read ε along directions this never draws.
    """
    check_shapes(
        "noisy_feature_space_slot_attention",
        queries=(queries, "b k d", "float"),
        features=(features, "b n c", "float"),
        key_weight=(key_weight, "d c", "float"),
        value_weight=(value_weight, "d c", "float"),
        keep=(keep, "b k", "bool"),
    )
    if torch.is_grad_enabled() and (
        queries.requires_grad or features.requires_grad or key_weight.requires_grad
    ):
        raise ValueError(
            "noisy_feature_space_slot_attention draws only what the values need: call it without autograd "
            "(torch.no_grad()), or add full noise to the features for a differentiable read-out"
        )
    if not 0 < epsilon < math.inf:  # also refuses NaN
        raise ValueError(f"epsilon ({epsilon}) must be positive and finite")
    with torch.autocast(device_type=queries.device.type, enabled=False):
        features = features.float()
        queries_in_features = queries.float() @ key_weight.float()  # b k c
        basis = torch.linalg.qr(queries_in_features.transpose(1, 2)).Q  # b c r, r = min(k, c)
        batch, tokens, width = features.shape
        along = torch.randn(
            (batch, tokens, basis.shape[-1]),
            generator=generator,
            device=features.device,
            dtype=features.dtype,
        )  # z_n = Qᵀ·ε_n
        logit_scale = 1.0 / math.sqrt(key_weight.shape[0])
        logits = torch.bmm(queries_in_features, features.transpose(1, 2))
        logits = (
            logits + torch.bmm(sigma * (queries_in_features @ basis), along.transpose(1, 2))
        ) * logit_scale
        attention, weights = _attention_weights(logits, keep, epsilon)
        root = torch.linalg.qr(weights.transpose(1, 2), mode="r").R.transpose(1, 2)  # root·rootᵀ = w·wᵀ
        across = torch.randn(
            (batch, root.shape[-1], width), generator=generator, device=features.device, dtype=features.dtype
        )
        across = across - (across @ basis) @ basis.transpose(1, 2)  # · P⊥
        noise_mean = torch.bmm(weights, along) @ basis.transpose(1, 2) + root @ across
        updates = (torch.bmm(weights, features) + sigma * noise_mean) @ value_weight.float().T
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
