"""The slot-attention iteration loop, with optional key/value noise, slot mask and straight-through init.

Paper §2.2 (one iteration), §2.7 (progressive noise), §2.9 (straight-through to the initial slots).
Weights stay in the module: it hands them in as callables through `SlotAttentionLayers`. How the clean
read-outs of a forward get their keys and values is decided once per forward (`key_value_source`) and
handed to `aggregate` as a `KeyValueSource`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import attrs
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from metaslot.ops.attention import (
    feature_space_is_cheaper,
    feature_space_slot_attention,
    masked_slot_attention,
    noisy_feature_space_slot_attention,
)
from metaslot.ops.checks import check_finite, check_shapes
from metaslot.ops.noise import noise_scale

__all__ = [
    "Aggregation",
    "AttentionPath",
    "KeyValueSource",
    "SlotAttentionLayers",
    "aggregate",
    "key_value_source",
]

AttentionPath = Literal["auto", "projected", "feature_space"]
"""How clean read-outs get keys and values: 'projected' once per forward (the reference), never in
'feature_space', or whichever costs fewer multiply-adds ('auto', `feature_space_is_cheaper`)."""


@attrs.frozen
class SlotAttentionLayers:
    """The layers of one slot-attention iteration, as callables a module hands to `aggregate`.

    ``project_queries``: slots ``b k d`` → queries ``b k d`` (LayerNorm + Linear without bias, unscaled).
    ``project_keys_values``: normed features ``b n c`` → ``(keys, values)``, each ``b n d``.
    ``update``: ``(slots, updates)`` → new slots (GRU cell + residual MLP).
    ``key_value_weights``: for bias-free linear key/value projections, a callable returning their
    ``(d, c)`` weights; the attention may then read the features directly instead of projecting them
    (`feature_space_slot_attention`: noisy features are never projected, and neither are clean ones where
    `key_value_source` says so), with results equal to the general path up to rounding.
    """

    project_queries: Callable[[Tensor], Tensor]
    project_keys_values: Callable[[Tensor], tuple[Tensor, Tensor]]
    update: Callable[[Tensor, Tensor], Tensor]
    key_value_weights: Callable[[], tuple[Tensor, Tensor]] | None = None


@dataclass(frozen=True)
class KeyValueSource:
    """Where the clean (noise-free) read-outs of one forward take their keys and values.

    ``keys_values`` holds the keys and values projected once (``b n d`` each) and shared by every clean
    read-out, or is None: those read-outs run in feature space. Noisy read-outs never use it (they read
    their own noisy features). Built by `key_value_source`, once per forward.
    """

    keys_values: tuple[Float[Tensor, "b n d"], Float[Tensor, "b n d"]] | None

    @property
    def in_feature_space(self) -> bool:
        return self.keys_values is None


def key_value_source(
    features: Float[Tensor, "b n c"],
    layers: SlotAttentionLayers,
    *,
    num_slots: int,
    num_read_outs: int,
    path: AttentionPath = "auto",
) -> KeyValueSource:
    """The one decision of a forward: project the clean ``features`` once, or read them in feature space.

    'auto' reads in feature space when the layers expose their key/value weights and that costs fewer
    multiply-adds for ``num_read_outs`` read-outs of ``num_slots`` slots (`feature_space_is_cheaper`);
    'feature_space' needs those weights.
    """
    weights = layers.key_value_weights() if layers.key_value_weights is not None else None
    if path == "feature_space" and weights is None:
        raise ValueError(
            "path='feature_space' needs layers with key_value_weights (bias-free linear key/value projections)"
        )
    if path == "auto":
        in_feature_space = weights is not None and feature_space_is_cheaper(
            tokens=features.shape[1],
            feature_dim=features.shape[2],
            slot_dim=weights[0].shape[0],
            num_slots=num_slots,
            num_iterations=num_read_outs,
        )
    else:
        in_feature_space = path == "feature_space"
    return KeyValueSource(None if in_feature_space else layers.project_keys_values(features))


@dataclass(frozen=True)
class Aggregation:
    """Slots after the last iteration and that iteration's softmax-over-slots attention."""

    slots: Float[Tensor, "b k d"]
    attention: Float[Tensor, "b k n"]


def aggregate(
    slots: Float[Tensor, "b k d"],
    features: Float[Tensor, "b n c"],
    layers: SlotAttentionLayers,
    num_iterations: int,
    *,
    keep: Bool[Tensor, "b k"] | None = None,
    noise_weight: float = 0.0,
    noise: Float[Tensor, "t b n c"] | None = None,
    generator: torch.Generator | None = None,
    straight_through: Float[Tensor, "b k d"] | None = None,
    source: KeyValueSource | None = None,
    epsilon: float = 1e-5,
) -> Aggregation:
    """Run ``num_iterations`` slot-attention iterations from ``slots`` over already layer-normed ``features``.

    Iteration t attends to ``features + σ_t·ε_t`` with ``σ_t = noise_scale(t, T, noise_weight)`` and fresh
    unit noise ``ε_t`` (``noise[t]`` if given, else drawn from ``generator``, which must live on the
    features' device). Noisy iterations read the noisy features in feature space where the layers expose
    their key/value weights, else project them; without autograd and without ``noise`` they draw only
    what the read-out sees (`noisy_feature_space_slot_attention`: same distribution, other values); clean iterations follow ``source`` (without one, it is
    decided here by `key_value_source` for ``num_iterations`` read-outs). ``keep`` masks pruned slots at every
    iteration; pruned slots still pass through ``update`` (as in the reference) and consumers use
    ``keep``. Before the last iteration ``straight_through`` adds ``x − x.detach()``: the value is
    unchanged but the gradient reaches ``x`` (the initial slots, BO-QSA trick). ``epsilon`` is added to
    each slot's attention mass before the weighted mean over tokens.
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
    _check_iterations(num_iterations, noise_weight, noise)
    if source is None:
        source = key_value_source(features, layers, num_slots=slots.shape[1], num_read_outs=num_iterations)
    weights = layers.key_value_weights() if layers.key_value_weights is not None else None
    attention: Tensor | None = None
    for iteration in range(num_iterations):
        sigma = noise_scale(iteration, num_iterations, noise_weight)
        if straight_through is not None and iteration == num_iterations - 1:
            slots = slots + straight_through - straight_through.detach()
        queries = layers.project_queries(slots)
        if sigma > 0 and noise is None and weights is not None and not torch.is_grad_enabled():
            # Without autograd (MetaSlot's stage 1) draw only what the read-out depends on: b·n·k + b·k·c
            # normals instead of b·n·c, same distribution (docs/benchmarks.md says which draws changed).
            updates, attention = noisy_feature_space_slot_attention(
                queries, features, *weights, sigma, keep, epsilon, generator
            )
        elif sigma > 0:
            unit_noise = noise[iteration] if noise is not None else _unit_noise(features, generator)
            # The same noisy features feed keys and values, as in the reference's `noisy`.
            noisy = torch.add(features, unit_noise, alpha=sigma)
            if weights is not None:
                updates, attention = feature_space_slot_attention(queries, noisy, *weights, keep, epsilon)
            else:
                keys, values = layers.project_keys_values(noisy)
                updates, attention = masked_slot_attention(queries, keys, values, keep, epsilon)
        elif source.keys_values is None:
            assert weights is not None  # key_value_source reads in feature space only with the weights
            updates, attention = feature_space_slot_attention(queries, features, *weights, keep, epsilon)
        else:
            updates, attention = masked_slot_attention(queries, *source.keys_values, keep, epsilon)
        slots = layers.update(slots, updates)
    assert attention is not None  # num_iterations >= 1 was checked above
    return Aggregation(slots=slots, attention=attention)


def _check_iterations(num_iterations: int, noise_weight: float, noise: Tensor | None) -> None:
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


def _unit_noise(
    features: Float[Tensor, "b n c"], generator: torch.Generator | None
) -> Float[Tensor, "b n c"]:
    return torch.randn(features.shape, generator=generator, device=features.device, dtype=features.dtype)
