"""The slot-attention iteration loop, with optional key/value noise, slot mask and straight-through init.

Paper §2.2 (one step), §2.7 (progressive noise), §2.9 (straight-through to the initial slots). Weights
stay in the module: it hands them in as callables through `SlotAttentionStep`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import attrs
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from metaslot.ops.attention import (
    feature_space_is_cheaper,
    feature_space_slot_attention,
    masked_slot_attention,
)
from metaslot.ops.checks import check_finite, check_shapes
from metaslot.ops.noise import noise_scale

__all__ = ["Aggregation", "SlotAttentionStep", "aggregate"]


@attrs.frozen
class SlotAttentionStep:
    """How a module hands its weights to `aggregate` (callables closing over nn parameters).

    ``project_queries``: slots ``b k d`` → queries ``b k d`` (LayerNorm + Linear without bias, unscaled).
    ``project_keys_values``: normed features ``b n c`` → ``(keys, values)``, each ``b n d``.
    ``update``: ``(slots, updates)`` → new slots (GRU cell + residual MLP).
    ``key_value_weights``: for bias-free linear key/value projections, a callable returning their
    ``(d, c)`` weights; the attention may then read the features directly instead of projecting them
    (`feature_space_slot_attention`: noisy features are never projected, and neither are clean ones where
    that is cheaper), with results equal to the general path up to rounding.
    """

    project_queries: Callable[[Tensor], Tensor]
    project_keys_values: Callable[[Tensor], tuple[Tensor, Tensor]]
    update: Callable[[Tensor, Tensor], Tensor]
    key_value_weights: Callable[[], tuple[Tensor, Tensor]] | None = None


@dataclass(frozen=True)
class Aggregation:
    """Slots after the last iteration and that iteration's softmax-over-slots attention."""

    slots: Float[Tensor, "b k d"]
    attention: Float[Tensor, "b k n"]


def aggregate(
    slots: Float[Tensor, "b k d"],
    features: Float[Tensor, "b n c"],
    step: SlotAttentionStep,
    num_iterations: int,
    *,
    keep: Bool[Tensor, "b k"] | None = None,
    noise_weight: float = 0.0,
    noise: Float[Tensor, "t b n c"] | None = None,
    generator: torch.Generator | None = None,
    straight_through: Float[Tensor, "b k d"] | None = None,
    clean_keys_values: tuple[Tensor, Tensor] | None = None,
    feature_space: bool | None = None,
    epsilon: float = 1e-5,
) -> Aggregation:
    """Run ``num_iterations`` slot-attention steps from ``slots`` over already layer-normed ``features``.

    Iteration t attends to ``features + σ_t·ε_t`` with ``σ_t = noise_scale(t, T, noise_weight)`` and fresh
    unit noise ``ε_t`` (``noise[t]`` if given, else drawn from ``generator``, which must live on the
    features' device). Where the step exposes its key/value weights, noisy iterations read the noisy
    features in feature space and clean ones do too when ``feature_space`` is True (None: when
    `feature_space_is_cheaper` for these shapes and no ``clean_keys_values`` are given); otherwise clean
    iterations share one projection (``clean_keys_values`` or computed here) and noisy ones project the
    noisy features. ``keep`` masks pruned slots at every iteration; pruned slots still pass through
    ``update`` (as in the reference) and consumers use ``keep``. Before the last iteration
    ``straight_through`` adds ``x − x.detach()``: the value is unchanged but the gradient reaches ``x``
    (the initial slots, BO-QSA trick). ``epsilon`` is added to each slot's attention mass before the
    weighted mean over tokens.
    """
    check_shapes(
        "aggregate",
        slots=(slots, "b k d", "float"),
        features=(features, "b n c", "float"),
        keep=(keep, "b k", "bool"),
        noise=(noise, "t b n c", "float"),
        straight_through=(straight_through, "b k d", "float"),
    )
    check_finite(
        "aggregate",
        "check the encoder output and the learning rate (the slots would all be NaN)",
        slots=slots,
        features=features,
    )
    if num_iterations < 1:
        raise ValueError(f"num_iterations ({num_iterations}) must be at least 1")
    if not 0 <= noise_weight < math.inf:  # also refuses NaN
        raise ValueError(
            f"noise_weight ({noise_weight}) must be non-negative and finite; use 0 to disable noise"
        )
    if noise is not None and noise.shape[0] != num_iterations:
        raise ValueError(
            f"noise has {noise.shape[0]} iterations but num_iterations is {num_iterations}: "
            "pass one unit-normal draw per iteration"
        )
    weights = step.key_value_weights() if step.key_value_weights is not None else None
    if feature_space and weights is None:
        raise ValueError(
            "feature_space=True needs a step with key_value_weights (bias-free linear key/value projections)"
        )
    if feature_space is None:
        feature_space = (
            weights is not None
            and clean_keys_values is None
            and feature_space_is_cheaper(
                tokens=features.shape[1],
                feature_dim=features.shape[2],
                slot_dim=weights[0].shape[0],
                num_slots=slots.shape[1],
                num_iterations=num_iterations,
            )
        )
    clean = clean_keys_values
    attention: Tensor | None = None
    for iteration in range(num_iterations):
        sigma = noise_scale(iteration, num_iterations, noise_weight)
        if straight_through is not None and iteration == num_iterations - 1:
            slots = slots + straight_through - straight_through.detach()
        queries = step.project_queries(slots)
        if sigma > 0:
            unit_noise = noise[iteration] if noise is not None else _unit_noise(features, generator)
            # The same noisy features feed keys and values, as in the reference's `noisy`.
            noisy = torch.add(features, unit_noise, alpha=sigma)
            if weights is not None:
                updates, attention = feature_space_slot_attention(queries, noisy, *weights, keep, epsilon)
            else:
                updates, attention = masked_slot_attention(
                    queries, *step.project_keys_values(noisy), keep, epsilon
                )
        elif feature_space:
            assert weights is not None  # checked above
            updates, attention = feature_space_slot_attention(queries, features, *weights, keep, epsilon)
        else:
            if clean is None:
                clean = step.project_keys_values(features)
            updates, attention = masked_slot_attention(queries, *clean, keep, epsilon)
        slots = step.update(slots, updates)
    assert attention is not None  # num_iterations >= 1 was checked above
    return Aggregation(slots=slots, attention=attention)


def _unit_noise(
    features: Float[Tensor, "b n c"], generator: torch.Generator | None
) -> Float[Tensor, "b n c"]:
    return torch.randn(features.shape, generator=generator, device=features.device, dtype=features.dtype)
