"""Frozen specs of the two aggregators.

Every place where MetaSlot's defaults differ from the paper text or from the paper-era reference code
(commit c602fa4, see ``spec/paper.md`` §5) is a field here, so both behaviours can be reproduced.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import attrs

from metaslot.errors import ConfigError
from metaslot.ops.slot_attention import AttentionPath
from metaslot.validators import at_least_one, non_negative

if TYPE_CHECKING:
    from metaslot.models.aggregators.metaslot import MetaSlot
    from metaslot.models.aggregators.slot_attention import SlotAttention

Initializer = Literal["per-slot", "shared"]
Quantizer = Literal["argmin", "gumbel"]
NoiseStages = Literal["both", "second"]
CodebookUpdate = Literal["gradient", "kmeans", "both"]


def _one_of(*choices: str):
    def check(instance: object, attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            raise ConfigError(
                f"unknown {attribute.name} {value!r}: choose one of {', '.join(repr(c) for c in choices)}"
            )

    return check


def _unit_interval(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{attribute.name} must lie in [0, 1], got {value}")


def _default_hidden(instance: _SlotAttentionFields) -> int:
    return 4 * instance.slot_dim


@attrs.frozen(kw_only=True)
class _SlotAttentionFields:
    """Fields shared by Slot Attention and MetaSlot (the weights are the same, as in the reference)."""

    num_slots: int = attrs.field(validator=at_least_one)
    """k: slots per image (MetaSlot: the maximum; pruning only ever removes slots)."""
    slot_dim: int = attrs.field(validator=at_least_one)
    """d: slot width."""
    feature_dim: int = attrs.field(validator=at_least_one)
    """c: width of the encoder features the slots attend to."""
    num_iterations: int = attrs.field(default=3, validator=at_least_one)
    """T: Slot Attention iterations (per stage for MetaSlot, so 2T in all)."""
    mlp_hidden_dim: int = attrs.field(
        default=attrs.Factory(_default_hidden, takes_self=True), validator=at_least_one
    )
    """Hidden width of the residual MLP after the GRU (4·d as in the reference)."""
    mlp_dropout: float = attrs.field(default=0.0)
    """Dropout after the residual MLP's hidden activation, in training only (the reference's ``ffn``
    dropout: 0 for MetaSlot, 0.01 for the parent framework's Slot Attention baselines). Its draws come
    from the global RNG, not from the forward's ``generator``."""
    initializer: Initializer = attrs.field(default="per-slot", validator=_one_of("per-slot", "shared"))
    """'per-slot': one learned Gaussian per slot (reference NormalSeparat, mean at evaluation);
    'shared': one learned Gaussian for all slots (reference NormalShared)."""
    shared_samples_at_eval: bool = True
    """Shared initialiser only: draw samples at evaluation too (the reference does; False uses the mean)."""
    epsilon: float = attrs.field(default=1e-5)
    """Added to the per-slot attention mass before the weighted mean over tokens (reference 1e-5)."""
    attention_path: AttentionPath = attrs.field(
        default="auto", validator=_one_of("auto", "projected", "feature_space")
    )
    """How clean iterations read the features (same results up to rounding, different cost):
    'projected' projects keys and values once per forward (the reference); 'feature_space' never
    projects them (queries go to feature space, `metaslot.ops.feature_space_slot_attention`); 'auto'
    picks whichever costs fewer multiply-adds for the shapes (`metaslot.ops.feature_space_is_cheaper`)."""

    @mlp_dropout.validator
    def _check_dropout(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(
                f"mlp_dropout must lie in [0, 1), got {value}: it is the probability of zeroing a unit"
            )

    @epsilon.validator
    def _check_epsilon(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0 < value < math.inf:  # also refuses NaN
            raise ConfigError(
                f"epsilon must be positive and finite, got {value}: it keeps empty slots from dividing by zero"
            )


@attrs.frozen(kw_only=True)
class SlotAttentionSpec(_SlotAttentionFields):
    """Plain Slot Attention (Locatello et al. 2020) with the reference's weights."""

    bilevel: bool = False
    """BO-QSA bi-level trick: detach the slots before the last iteration and add a straight-through
    term from the initial slots (the parent framework's configs turn this on)."""

    def build(self) -> SlotAttention:
        from metaslot.models.aggregators.slot_attention import SlotAttention

        return SlotAttention.from_spec(self)


@attrs.frozen(kw_only=True)
class MetaSlotSpec(_SlotAttentionFields):
    """MetaSlot (NeurIPS 2025): two-stage Slot Attention with codebook deduplication and pruning.

    Defaults follow the paper-era reference code with its bugs fixed (``DESIGN.md``).
    """

    codebook_size: int = attrs.field(default=512, validator=at_least_one)
    """m: number of prototypes."""
    quantizer: Quantizer = attrs.field(default="argmin", validator=_one_of("argmin", "gumbel"))
    """'argmin': exact nearest prototype (paper text, and the reference at evaluation);
    'gumbel': the reference's training quantiser (hard Gumbel-softmax over negative squared distances,
    drawn from the forward's generator). Evaluation and the codebook upkeep always use argmin."""
    noise_weight: float = attrs.field(default=0.5, validator=non_negative)
    """w in σ_t = w·(1 − t/(T−1)) added to the layer-normed features before the key/value projections."""
    noise_stages: NoiseStages = attrs.field(default="both", validator=_one_of("both", "second"))
    """'both': noise in both stages (reference code); 'second': only the masked stage (paper figure)."""
    noise_at_eval: bool = False
    """Noise at evaluation too (the paper-era code did it, making evaluation stochastic)."""
    prune_start: float = attrs.field(default=0.02)
    """p0: probability of the prune path at step 0 of training."""
    prune_growth: float = attrs.field(default=1.001)
    """g: p(step) = min(1, p0·g^step), with step counted in optimiser steps (upkeep calls), not forwards
    as in the reference."""
    codebook_update: CodebookUpdate = attrs.field(
        default="gradient", validator=_one_of("gradient", "kmeans", "both")
    )
    """'gradient': prototypes are trained by the optimiser through stage 2 (what the reference
    effectively does); 'kmeans': an EMA mini-batch k-means step per upkeep (paper text) and no gradient;
    'both': both."""
    kmeans_decay: float = attrs.field(default=0.95, validator=_unit_interval)
    """EMA decay of the mini-batch k-means step (used when codebook_update is 'kmeans' or 'both')."""
    kmeans_init: bool = True
    """Run a one-off k-means once the ring buffer first holds at least min(codebook_size, buffer_capacity)
    real slots (the reference ran it at step 1 on a buffer of random filler)."""
    kmeans_init_iterations: int = attrs.field(default=100, validator=at_least_one)
    """Lloyd iterations of the one-off k-means (the reference: at most 100)."""
    dead_code_timeout: int = attrs.field(default=4096, validator=at_least_one)
    """Timeout in slot vectors; converted to upkeep steps as ceil(timeout·m / buffer_capacity)."""
    replacement_rate: float = attrs.field(default=0.8, validator=_unit_interval)
    """A dead code moves this far towards its replacement vector."""
    replacement_noise: float = attrs.field(default=0.01, validator=non_negative)
    """Relative noise on replacement vectors (x + ρ‖x‖ε)."""
    buffer_capacity: int = attrs.field(default=768)
    """Ring buffer of recent kept final slots (the reference used 4·batch·k; may be smaller than m)."""
    honour_keep_downstream: bool = True
    """Pipelines read this: True makes decoders/metrics ignore pruned slots; False reproduces the
    reference, where decoders never saw the mask. The aggregator always reports ``keep``."""
    straight_through: bool = True
    """Add (initial − initial.detach()) before the last stage-2 iteration so the initialiser is trained."""

    @prune_start.validator
    def _check_start(self, attribute: attrs.Attribute, value: float) -> None:
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"prune_start must lie in (0, 1], got {value}: 1 prunes from the first step")

    @prune_growth.validator
    def _check_growth(self, attribute: attrs.Attribute, value: float) -> None:
        if value < 1.0:
            raise ConfigError(f"prune_growth must be >= 1 (a growing probability), got {value}")

    @buffer_capacity.validator
    def _check_capacity(self, attribute: attrs.Attribute, value: int) -> None:
        if value < self.num_slots:
            raise ConfigError(
                f"buffer_capacity ({value}) is smaller than num_slots ({self.num_slots}): the ring buffer "
                f"must hold at least one image's slots; raise buffer_capacity (the reference used 4·batch·k)"
            )

    def build(self) -> MetaSlot:
        from metaslot.models.aggregators.metaslot import MetaSlot

        return MetaSlot.from_spec(self)
