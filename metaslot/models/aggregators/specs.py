"""Frozen specs of the aggregators: Slot Attention, MetaSlot and AdaSlot.

Every place where MetaSlot's defaults differ from the paper text or from the paper-era reference code
(commit c602fa4, see ``spec/paper.md`` §5) is a field here, so both behaviours can be reproduced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import attrs

from metaslot.models.activations import Activation, check_activation
from metaslot.ops.imagenet import IMAGENET_STD
from metaslot.ops.slot_attention import AttentionPath
from metaslot.validators import (
    at_least_one,
    fraction,
    non_negative,
    not_above,
    not_below,
    one_of,
    positive,
    probability,
    unit_interval,
)

if TYPE_CHECKING:
    from metaslot.models.aggregators.adaslot import AdaSlot
    from metaslot.models.aggregators.metaslot import MetaSlot
    from metaslot.models.aggregators.slot_attention import SlotAttention

Initializer = Literal["per-slot", "shared", "learnt"]
Quantizer = Literal["argmin", "gumbel"]
EvalKeep = Literal["sample", "argmax"]
DecoderMask = Literal["mask_normalized", "logit", "mask"]
TemperatureSchedule = Literal["constant", "cosine"]
NoiseStages = Literal["both", "second"]
CodebookUpdate = Literal["gradient", "kmeans", "both"]


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
    mlp_activation: Activation = attrs.field(default="gelu", validator=check_activation)
    """Hidden activation of the residual MLP: 'gelu' (the MetaSlot reference) or 'relu' (FT-DINOSAUR)."""
    mlp_dropout: float = attrs.field(default=0.0, validator=fraction)
    """Dropout after the residual MLP's hidden activation, in training only (the reference's ``ffn``
    dropout: 0 for MetaSlot, 0.01 for the parent framework's Slot Attention baselines). Its draws come
    from the global RNG, not from the forward's ``generator``."""
    initializer: Initializer = attrs.field(
        default="per-slot", validator=one_of("per-slot", "shared", "learnt")
    )
    """'per-slot': one learned Gaussian per slot (reference NormalSeparat, mean at evaluation);
    'shared': one learned Gaussian for all slots (reference NormalShared); 'learnt': one learnt query
    per slot, no noise (SPOT's stage-2 ``init_method='embedding'``)."""
    shared_samples_at_eval: bool = True
    """Shared initialiser only: draw samples at evaluation too (the reference does; False uses the mean)."""
    epsilon: float = attrs.field(default=1e-5, validator=positive)
    """Added to the per-slot attention mass before the weighted mean over tokens (reference 1e-5)."""
    attention_path: AttentionPath = attrs.field(
        default="auto", validator=one_of("auto", "projected", "feature_space")
    )
    """How clean iterations read the features (same results up to rounding, different cost):
    'projected' projects keys and values once per forward (the reference); 'feature_space' never
    projects them (queries go to feature space, `metaslot.ops.feature_space_slot_attention`); 'auto'
    picks whichever costs fewer multiply-adds for the shapes (`metaslot.ops.feature_space_is_cheaper`)."""


@attrs.frozen(kw_only=True)
class SlotAttentionSpec(_SlotAttentionFields):
    """Plain Slot Attention (Locatello et al. 2020) with the reference's weights."""

    bilevel: bool = False
    """BO-QSA bi-level trick: detach the slots before the last iteration and add a straight-through
    term from the initial slots (the parent framework's configs turn this on)."""

    def build(self) -> SlotAttention:
        from metaslot.models.aggregators.slot_attention import SlotAttention

        return SlotAttention(self)


@attrs.frozen(kw_only=True)
class MetaSlotSpec(_SlotAttentionFields):
    """MetaSlot (NeurIPS 2025): two-stage Slot Attention with codebook deduplication and pruning.

    Defaults follow the paper-era reference code with its bugs fixed (``DESIGN.md``).
    """

    codebook_size: int = attrs.field(default=512, validator=at_least_one)
    """m: number of prototypes."""
    quantizer: Quantizer = attrs.field(default="argmin", validator=one_of("argmin", "gumbel"))
    """'argmin': exact nearest prototype (paper text, and the reference at evaluation);
    'gumbel': the reference's training quantiser (hard Gumbel-softmax over negative squared distances,
    drawn from the forward's generator). Evaluation and the codebook upkeep always use argmin."""
    noise_weight: float = attrs.field(default=0.5, validator=non_negative)
    """w in σ_t = w·(1 − t/(T−1)) added to the layer-normed features before the key/value projections."""
    noise_stages: NoiseStages = attrs.field(default="both", validator=one_of("both", "second"))
    """'both': noise in both stages (reference code); 'second': only the masked stage (paper figure)."""
    noise_at_eval: bool = False
    """Noise at evaluation too (the paper-era code did it, making evaluation stochastic)."""
    prune_start: float = attrs.field(default=0.02, validator=probability)
    """p0: probability of the prune path at step 0 of training."""
    prune_growth: float = attrs.field(default=1.001, validator=at_least_one)
    """g: p(step) = min(1, p0·g^step), with step counted in optimiser steps (upkeep calls), not forwards
    as in the reference."""
    codebook_update: CodebookUpdate = attrs.field(
        default="gradient", validator=one_of("gradient", "kmeans", "both")
    )
    """'gradient': prototypes are trained by the optimiser through stage 2 (what the reference
    effectively does); 'kmeans': an EMA mini-batch k-means step per upkeep (paper text) and no gradient;
    'both': both."""
    kmeans_decay: float = attrs.field(default=0.95, validator=unit_interval)
    """EMA decay of the mini-batch k-means step (used when codebook_update is 'kmeans' or 'both')."""
    kmeans_init: bool = True
    """Run a one-off k-means once the ring buffer first holds at least min(codebook_size, buffer_capacity)
    real slots (the reference ran it at step 1 on a buffer of random filler)."""
    kmeans_init_iterations: int = attrs.field(default=100, validator=at_least_one)
    """Lloyd iterations of the one-off k-means (the reference: at most 100)."""
    dead_code_timeout: int = attrs.field(default=4096, validator=at_least_one)
    """Timeout in slot vectors; converted to upkeep steps as ceil(timeout·m / buffer_capacity)."""
    replacement_rate: float = attrs.field(default=0.8, validator=unit_interval)
    """A dead code moves this far towards its replacement vector."""
    replacement_noise: float = attrs.field(default=0.01, validator=non_negative)
    """Relative noise on replacement vectors (x + ρ‖x‖ε)."""
    buffer_capacity: int = attrs.field(
        default=768,
        validator=not_below(
            "num_slots",
            "the ring buffer must hold at least one image's slots; raise buffer_capacity "
            "(the reference used 4·batch·k)",
        ),
    )
    """Ring buffer of recent kept final slots (the reference used 4·batch·k; may be smaller than m)."""
    honour_keep_downstream: bool = True
    """Pipelines read this: True makes decoders/metrics ignore pruned slots; False reproduces the
    reference, where decoders never saw the mask. The aggregator always reports ``keep``."""
    straight_through: bool = True
    """Add (initial − initial.detach()) before the last stage-2 iteration so the initialiser is trained."""

    def build(self) -> MetaSlot:
        from metaslot.models.aggregators.metaslot import MetaSlot

        return MetaSlot(self)


@attrs.frozen(kw_only=True)
class AdaSlotSpec(_SlotAttentionFields):
    """AdaSlot (Fan et al., CVPR 2024): Slot Attention, then a score network keeps or drops each slot
    with a hard straight-through Gumbel sample; decoders ignore dropped slots and a sparsity term
    ``λ·mean(keep)`` trades reconstruction against the number of kept slots.

    Defaults follow the released code (amazon-science/AdaSlot, ``spec/adaslot.md``) where it is a choice:
    one shared Gaussian initialiser (so the weights do not depend on k, and a fixed-K run of another k
    can start an AdaSlot run: ``--init-from``), tau = 1, no lower bound, sampling at evaluation too,
    ``mask_normalized`` decoder alpha, λ = 0.1 (the feature-reconstruction configs).
    """

    initializer: Initializer = attrs.field(default="shared", validator=one_of("per-slot", "shared"))
    """'shared' as released (one Gaussian for every slot); 'per-slot' ties the weights to k."""
    sparsity_weight: float = attrs.field(default=0.1, validator=non_negative)
    """λ, the linear weight of the sparsity term on mean(keep), in the units of the pipeline's loss.
    Released: 0.1 for the feature-reconstruction (DINOSAUR) configs; 10 for the pixel model on CLEVR10,
    whose loss is the squared error summed over pixels (our autoencoder's is their mean on other units:
    its presets use `pixel_sparsity_weight`, about 9.9e-4)."""
    sparsity_quadratic: float = attrs.field(default=0.0, validator=non_negative)
    """Quadratic weight of the released ``SparsePenalty`` on (mean(keep) − bias)² (0 in every config)."""
    sparsity_bias: float = attrs.field(default=0.5, validator=unit_interval)
    """Bias of the quadratic term (released 0.5)."""
    temperature_schedule: TemperatureSchedule = attrs.field(
        default="constant", validator=one_of("constant", "cosine")
    )
    """'constant': tau = temperature_start throughout (released: its schedule hook is never called, so
    tau = 1); 'cosine': anneal from temperature_start to temperature_end over temperature_steps."""
    temperature_start: float = attrs.field(default=1.0, validator=positive)
    temperature_end: float = attrs.field(default=0.5, validator=positive)
    temperature_steps: int = attrs.field(default=10_000, validator=at_least_one)
    """Optimiser steps of the cosine anneal (counted by the module's own step buffer)."""
    lower_bound: int = attrs.field(
        default=0, validator=[non_negative, not_above("num_slots", "it is the fewest slots an image keeps")]
    )
    """Each image keeps at least this many slots: dropped ones are switched on at random, with no
    gradient (released ``low_bound``; 0 in every config)."""
    eval_keep: EvalKeep = attrs.field(default="sample", validator=one_of("sample", "argmax"))
    """Keep decision at evaluation: 'sample' draws the Gumbel noise as in training (released: there is
    no training check, so evaluation is stochastic); 'argmax' keeps a slot when its keep logit wins
    (deterministic up to the shared initialiser's draw). evaluation.json records which."""
    decoder_mask: DecoderMask = attrs.field(
        default="mask_normalized", validator=one_of("mask_normalized", "logit", "mask")
    )
    """How decoders take dropped slots out of their alpha (`metaslot.ops.keep_weighted_alpha`):
    'mask_normalized' (released default) multiplies the slot softmax by keep and renormalises; 'logit'
    subtracts 1e5 from dropped logits; 'mask' only multiplies (kept alphas no longer sum to one)."""

    def build(self) -> AdaSlot:
        from metaslot.models.aggregators.adaslot import AdaSlot

        return AdaSlot(self)


RELEASED_PIXEL_SPARSITY = 10.0
"""λ of the released pixel model (CLEVR10, 11 slots): against a squared error summed over the 3·128·128
values of an image normalised to [-1, 1] (std 0.5)."""


def pixel_sparsity_weight(released: float = RELEASED_PIXEL_SPARSITY) -> float:
    """λ for our pixel autoencoder, whose loss is the *mean* squared error on ImageNet-normalised images,
    with the released trade-off: a kept slot costs the same share of an image's reconstruction error.

    The released sum over 3·128² values becomes our mean (÷ 3·128²), and our normalisation (std ≈ 0.226)
    makes every squared error (0.5 / 0.226)² ≈ 4.9× larger than theirs (std 0.5): 10 → about 9.9e-4.
    Neither depends on our image size (object areas are fractions of the image in both).
    """
    imagenet_std = sum(IMAGENET_STD) / 3
    return released / (3 * 128 * 128) * (0.5 / imagenet_std) ** 2
