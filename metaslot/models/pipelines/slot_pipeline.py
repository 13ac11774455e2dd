"""What every slot pipeline (Autoencoder, DINOSAUR, SLATE, SlotDiffusion) shares around its decoder.

:class:`SlotPipeline` owns the front end (encoder → projection → aggregator), the keep policy for the
decoder and the codebook upkeep after each optimiser step, and :meth:`SlotPipeline.segment` for images
from outside a dataset. The functions build the pieces of the :class:`PipelineOutput` the same way
everywhere: masks from the aggregator's attention (SLATE, SlotDiffusion) or from a decoder's alpha (see
:func:`reconstruction_output`), pruned slots zeroed unless the aggregator spec asks for the reference's
behaviour (``honour_keep_downstream=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn
from torch.nn import functional

from metaslot.errors import DataError
from metaslot.models import segmentation
from metaslot.models.encoders import EncoderSpec, ProjectionSpec
from metaslot.models.masks import SoftKeep, attention_to_masks
from metaslot.models.pipelines.frontend import (
    AggregatorSpec,
    FrontEndOutput,
    build_frontend,
    decoder_mask_mode,
    honour_keep_downstream,
)
from metaslot.models.records import AggregatorOutput, CodebookStatistics, PipelineOutput, Segmentation


@dataclass(frozen=True)
class SlotMasks:
    """What a slot pipeline computes before its loss: the front end's output and per-slot ``masks`` at
    the input resolution (pruned slots zero unless keep is not honoured), plus the decoder's
    ``reconstruction`` when the masks come from a decoder (Autoencoder, DINOSAUR)."""

    front: FrontEndOutput
    masks: Float[Tensor, "b k h w"]
    reconstruction: Tensor | None = None


def require_image_size(image: Float[Tensor, "b 3 h w"], size: int, pipeline: str, spec: str) -> None:
    """Pipelines whose decoder is built for one square size reject other inputs with the fix."""
    if tuple(image.shape[-2:]) != (size, size):
        raise DataError(
            f"{pipeline} was built for {size}×{size} images but got {tuple(image.shape[-2:])}: "
            f"resize the data or set image_size={image.shape[-1]} in {spec}"
        )


class SlotPipelineSpec(Protocol):
    """What the base reads from a pipeline's spec."""

    @property
    def image_size(self) -> int: ...


class SlotPipeline(nn.Module):
    """Base of the pipelines with slots: ``self.frontend``, ``aggregator``, ``downstream_keep``, upkeep.

    Subclasses add their decoder (and targets), set ``spec`` and define
    ``forward(image, generator) -> PipelineOutput``; those whose masks come from a decoder override
    ``slot_masks``.
    """

    spec: SlotPipelineSpec
    """The pipeline's spec, set by each pipeline."""

    def __init__(
        self, encoder: EncoderSpec, projection: ProjectionSpec | None, aggregator: AggregatorSpec
    ) -> None:
        super().__init__()
        self.frontend = build_frontend(encoder, projection, aggregator)
        self.honour_keep_downstream = honour_keep_downstream(aggregator)
        self.decoder_mask = decoder_mask_mode(aggregator)

    @property
    def image_size(self) -> int:
        """Side of the square images the pipeline reads (its spec's ``image_size``)."""
        return self.spec.image_size

    @property
    def aggregator(self) -> nn.Module:
        return self.frontend.aggregator

    def downstream_keep(self, aggregated: AggregatorOutput) -> Bool[Tensor, "b k"] | None:
        """The keep mask the decoder, the masks and the pixel labels see: None (every slot decoded and
        able to win pixels, the reference) unless keep is honoured."""
        return aggregated.keep if self.honour_keep_downstream else None

    def soft_keep(self, aggregated: AggregatorOutput) -> SoftKeep | None:
        """What decoders with an alpha weigh it by when the keep is learnt (AdaSlot's straight-through
        ``keep_weight`` and ``decoder_mask``); None otherwise, or when keep is not honoured."""
        if aggregated.keep_weight is None or not self.honour_keep_downstream:
            return None
        return SoftKeep(weight=aggregated.keep_weight, mode=self.decoder_mask)

    def decoder_slots(self, aggregated: AggregatorOutput) -> Float[Tensor, "b k d"]:
        """The slots a decoder without an alpha (SLATE's transformer, SlotDiffusion's UNet) reads: with a
        learnt keep, each slot times its straight-through keep weight, so the reconstruction's gradient
        reaches the keep decision of the kept slots (value unchanged; dropped slots are masked anyway)."""
        soft = self.soft_keep(aggregated)
        if soft is None:
            return aggregated.slots
        return aggregated.slots * soft.weight[:, :, None].to(aggregated.slots.dtype)

    def slot_masks(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> SlotMasks:
        """Front end and masks without any loss; here from the aggregator's attention (SLATE, SlotDiffusion)."""
        front = self.frontend(image, generator=generator)
        keep = self.downstream_keep(front.aggregator)
        return SlotMasks(front=front, masks=attention_masks(front, (image.shape[-2], image.shape[-1]), keep))

    def segment(self, images: segmentation.Images, generator: torch.Generator | None = None) -> Segmentation:
        """Slots, keep, masks and labels of images from anywhere, at their own size (evaluation mode).

        ``images``: a uint8 (0-255) or float (0-1) RGB batch ``(b, 3, h, w)`` of any size, or a path / PIL
        image / list of them (one size per call). They get the evaluation transform of the datasets
        (centred square, resize to ``image_size``, ImageNet normalisation), then the front end and, where
        the masks come from it, the decoder; no loss. The aggregator draws nothing unless its spec samples
        at evaluation (shared initialiser, ``noise_at_eval``); those draws come from ``generator``
        (default: seeded with 0, so the same images give the same result).
        """
        batch = segmentation.image_batch(images)
        height, width = batch.shape[-2:]
        window = segmentation.centre_square(height, width)
        device = next(self.parameters()).device
        inputs = segmentation.preprocess(batch.to(device), window, self.image_size)
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(0)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                masked = self.slot_masks(inputs, generator)
        finally:
            self.train(was_training)
        return segmentation.segmentation_at_input(
            masked.front.aggregator, masked.masks, window, height, width
        )

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        """Codebook upkeep of the aggregator (a no-op for plain Slot Attention)."""
        if output.aggregator is None:
            raise ValueError(
                "output.aggregator is None: pass the PipelineOutput this pipeline's forward returned"
            )
        self.aggregator.update_codebook(output.aggregator)

    def codebook_statistics(self) -> CodebookStatistics | None:
        """The aggregator's codebook health (codes in use, perplexity), or None without a codebook."""
        return self.aggregator.codebook_statistics()


def attention_masks(
    front: FrontEndOutput, size: tuple[int, int], keep: Bool[Tensor, "b k"] | None
) -> Float[Tensor, "b k h w"]:
    """Masks from the aggregator's attention over the encoder grid, at ``size``; slots not in ``keep``
    zero (pruned slots get no attention anyway)."""
    return attention_to_masks(front.aggregator.attention, front.grid, size, keep)


def slot_output(
    aggregated: AggregatorOutput,
    loss: Float[Tensor, ""],
    term: str,
    masks: Float[Tensor, "b k h w"],
    reconstruction: Tensor | None = None,
    *,
    honour_keep_downstream: bool = True,
    attention_masks: Float[Tensor, "b k h w"] | None = None,
) -> PipelineOutput:
    """The record a one-loss slot pipeline returns; ``term`` names the loss in ``terms``. The
    aggregator's own ``loss_terms`` (AdaSlot's sparsity) are added to the loss and logged beside it.
    ``attention_masks``: the aggregator's attention masks, where ``masks`` come from a decoder."""
    extra = aggregated.loss_terms
    total = loss + sum(extra.values()) if extra else loss
    return PipelineOutput(
        loss=total,
        terms={term: loss.detach()} | {name: value.detach() for name, value in extra.items()},
        slots=aggregated.slots,
        keep=aggregated.keep,
        masks=masks,
        reconstruction=reconstruction,
        aggregator=aggregated,
        honour_keep_downstream=honour_keep_downstream,
        attention_masks=attention_masks,
    )


def evaluation_attention_masks(
    pipeline: SlotPipeline, front: FrontEndOutput, size: tuple[int, int]
) -> Float[Tensor, "b k h w"] | None:
    """The aggregator's attention masks of a pipeline whose ``masks`` come from its decoder, in
    evaluation mode only (an evaluation protocol may score them; training never reads them)."""
    if pipeline.training:
        return None
    return attention_masks(front, size, pipeline.downstream_keep(front.aggregator))


def reconstruction_output(
    aggregated: AggregatorOutput,
    reconstruction: Float[Tensor, "*target"],
    target: Float[Tensor, "*target"],
    masks: Float[Tensor, "b k h w"],
    *,
    honour_keep_downstream: bool = True,
    attention_masks: Float[Tensor, "b k h w"] | None = None,
) -> PipelineOutput:
    """Autoencoder and DINOSAUR: loss = MSE(reconstruction, target), reported as ``terms["reconstruction"]``.

    ``target`` must carry no gradient path the loss should not use (DINOSAUR detaches its features).
    """
    loss = functional.mse_loss(reconstruction, target)
    return slot_output(
        aggregated,
        loss,
        "reconstruction",
        masks,
        reconstruction,
        honour_keep_downstream=honour_keep_downstream,
        attention_masks=attention_masks,
    )
