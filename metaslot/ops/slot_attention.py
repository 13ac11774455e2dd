"""The slot-attention iteration loop, with optional key/value noise, slot mask and straight-through init.

Paper §2.2 (one step), §2.7 (progressive noise), §2.9 (straight-through to the initial slots). Weights
stay in the module: it hands them in as callables through `SlotAttentionStep`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import attrs
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from metaslot.ops.attention import FeatureNoise, masked_slot_attention
from metaslot.ops.noise import noise_scale

__all__ = ["Aggregation", "SlotAttentionStep", "aggregate"]


@attrs.frozen
class SlotAttentionStep:
    """How a module hands its weights to `aggregate` (callables closing over nn parameters).

    ``project_queries``: slots ``b k d`` → queries ``b k d`` (LayerNorm + Linear without bias, unscaled).
    ``project_keys_values``: normed features ``b n c`` → ``(keys, values)``, each ``b n d``.
    ``update``: ``(slots, updates)`` → new slots (GRU cell + residual MLP).
    ``key_value_weights``: for bias-free linear key/value projections, a callable returning their
    ``(d, c)`` weights; feature noise then enters the attention without being projected (`FeatureNoise`),
    the clean projection is shared by every iteration, and results equal the general path up to rounding.
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
    epsilon: float = 1e-5,
) -> Aggregation:
    """Run ``num_iterations`` slot-attention steps from ``slots`` over already layer-normed ``features``.

    Iteration t uses keys/values of ``features + σ_t·ε_t`` with ``σ_t = noise_scale(t, T, noise_weight)``
    and fresh unit noise ``ε_t`` (``noise[t]`` if given, else drawn from ``generator``, which must live on
    the features' device); where ``σ_t == 0`` the clean projections are computed once (or taken from
    ``clean_keys_values``) and reused. ``keep`` masks pruned slots at every iteration; pruned slots still
    pass through ``update`` (as in the reference) and consumers use ``keep``. Before the last iteration
    ``straight_through`` adds ``x − x.detach()``: the value is unchanged but the gradient reaches ``x``
    (the initial slots, BO-QSA trick). ``epsilon`` is added to each slot's attention mass before the
    weighted mean over tokens.
    """
    if num_iterations < 1:
        raise ValueError(f"num_iterations ({num_iterations}) must be at least 1")
    if noise_weight < 0:
        raise ValueError(f"noise_weight ({noise_weight}) must be non-negative; use 0 to disable noise")
    if noise is not None and noise.shape[0] != num_iterations:
        raise ValueError(
            f"noise has {noise.shape[0]} iterations but num_iterations is {num_iterations}: "
            "pass one unit-normal draw per iteration"
        )
    clean = clean_keys_values
    attention: Tensor | None = None
    for iteration in range(num_iterations):
        sigma = noise_scale(iteration, num_iterations, noise_weight)
        feature_noise: FeatureNoise | None = None
        project_noisy = sigma > 0 and step.key_value_weights is None
        if not project_noisy:
            if clean is None:
                clean = step.project_keys_values(features)
            keys, values = clean
        if sigma > 0:
            if noise is not None:
                unit_noise = noise[iteration]
            else:
                unit_noise = torch.randn(
                    features.shape, generator=generator, device=features.device, dtype=features.dtype
                )
            # The same noisy features feed keys and values, as in the reference's `noisy`.
            if project_noisy:
                keys, values = step.project_keys_values(features + sigma * unit_noise)
            else:
                key_weight, value_weight = step.key_value_weights()
                feature_noise = FeatureNoise(unit_noise, sigma, key_weight, value_weight)
        if straight_through is not None and iteration == num_iterations - 1:
            slots = slots + straight_through - straight_through.detach()
        queries = step.project_queries(slots)
        updates, attention = masked_slot_attention(queries, keys, values, keep, epsilon, feature_noise)
        slots = step.update(slots, updates)
    assert attention is not None  # num_iterations >= 1 was checked above
    return Aggregation(slots=slots, attention=attention)
