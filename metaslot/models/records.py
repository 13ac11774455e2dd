"""Typed outputs shared by aggregators, decoders and pipelines (never positional tuples).

Axis glossary (one for the whole project): b batch, k slots, n tokens, d slot width, c channels,
h w spatial, m codebook size, t frames/iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass(frozen=True)
class AggregatorOutput:
    """What every aggregator (Slot Attention, MetaSlot, AdaSlot) returns.

    ``attention`` is the softmax-over-slots map of the last iteration. ``keep`` marks live slots
    (all True for plain Slot Attention); MetaSlot's pruned slots have zero attention, AdaSlot's dropped
    ones keep theirs (it decides after the last iteration). ``codes`` holds the
    prototype index of each slot, or -1 where there is none (Slot Attention, AdaSlot, pruned slots).
    ``keep_weight`` is ``keep`` as a float in {0, 1} that carries the straight-through gradient to what
    decided it (AdaSlot's score network), for decoders to multiply their alpha with; None when the keep
    decision is not learnt. ``loss_terms`` are weighted terms the pipeline adds to its loss and logs
    under their names (AdaSlot's ``sparsity``).
    """

    slots: Float[Tensor, "b k d"]
    attention: Float[Tensor, "b k n"]
    keep: Bool[Tensor, "b k"]
    codes: Int[Tensor, "b k"]
    keep_weight: Float[Tensor, "b k"] | None = None
    loss_terms: dict[str, Tensor] = field(default_factory=dict)


def join_aggregator_outputs(outputs: Sequence[AggregatorOutput]) -> AggregatorOutput:
    """Several outputs (the micro-batches of one optimiser step) as one along the batch axis, detached.

    With gradient accumulation the codebook upkeep runs once per optimiser step; it must see the kept
    slots of every micro-batch of the step, in order, as it would for the step's batch in one forward.
    """
    if not outputs:
        raise ValueError("join_aggregator_outputs needs at least one AggregatorOutput")
    return AggregatorOutput(
        slots=torch.cat([output.slots.detach() for output in outputs]),
        attention=torch.cat([output.attention.detach() for output in outputs]),
        keep=torch.cat([output.keep for output in outputs]),
        codes=torch.cat([output.codes for output in outputs]),
    )


@dataclass(frozen=True)
class CodebookStatistics:
    """How alive MetaSlot's codebook is: ``codes_in_use`` codes are nearest to at least one of the recent
    kept slots in the ring buffer, and ``perplexity`` is exp(entropy) of that usage (the effective number
    of codes). 0-d device tensors; `as_metrics` reads them on the host (a sync, for logging)."""

    codes_in_use: Int[Tensor, ""]
    perplexity: Float[Tensor, ""]

    def as_metrics(self, prefix: str = "codebook/") -> dict[str, float]:
        return {
            f"{prefix}codes_in_use": float(self.codes_in_use),
            f"{prefix}perplexity": float(self.perplexity),
        }


@dataclass(frozen=True)
class PipelineOutput:
    """What every pipeline's forward returns.

    ``loss`` is the total training loss, ``terms`` its named parts (already weighted). ``masks`` are
    per-slot segmentation masks at input resolution with pruned slots all zero, unless
    ``honour_keep_downstream`` is False. ``aggregator`` is the aggregator's output, which the training loop hands
    back for codebook upkeep; None for the VQ-VAE.
    """

    loss: Float[Tensor, ""]
    terms: dict[str, Tensor] = field(default_factory=dict)
    slots: Float[Tensor, "b k d"] | None = None
    keep: Bool[Tensor, "b k"] | None = None
    masks: Float[Tensor, "b k h w"] | None = None
    reconstruction: Tensor | None = None
    aggregator: AggregatorOutput | None = None
    honour_keep_downstream: bool = True
    """False reproduces the reference (``honour_keep_downstream=False``): pruned slots were decoded,
    their masks are not zeroed and they may win pixels, so evaluation labels pixels over all slots."""
    attention_masks: Float[Tensor, "b k h w"] | None = None
    """The aggregator's attention as masks (like ``masks``), where ``masks`` come from a decoder
    (Autoencoder, DINOSAUR, SPOT); None where ``masks`` already are the attention (SLATE,
    SlotDiffusion). An evaluation protocol chooses which of the two it scores."""


@dataclass(frozen=True)
class Window:
    """The centred square of an input image the model saw, in input pixels: rows ``top:top+side``,
    columns ``left:left+side``."""

    top: int
    left: int
    side: int


@dataclass(frozen=True)
class Segmentation:
    """What ``pipeline.segment(images)`` returns, at the size of the images given.

    ``masks`` are per-slot soft masks (pruned slots all zero; zero outside ``window``, the centred
    square the model saw). ``labels`` give each pixel the kept slot with the largest mask (pruned slots
    never win) and -1 outside ``window``, which only non-square inputs have, and everywhere in an image
    whose slots AdaSlot all dropped. ``codes`` are the MetaSlot
    prototype of each slot (-1 for pruned slots and for plain Slot Attention).
    """

    slots: Float[Tensor, "b k d"]
    keep: Bool[Tensor, "b k"]
    codes: Int[Tensor, "b k"]
    masks: Float[Tensor, "b k h w"]
    labels: Int[Tensor, "b h w"]
    window: Window
