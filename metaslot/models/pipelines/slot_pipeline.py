"""What every slot pipeline (Autoencoder, DINOSAUR, SLATE, SlotDiffusion) shares around its decoder.

:class:`SlotPipeline` owns the front end (encoder → projection → aggregator), the keep policy for the
decoder and the codebook upkeep after each optimiser step. The functions build the pieces of the
:class:`PipelineOutput` the same way everywhere: masks from the aggregator's attention (SLATE,
SlotDiffusion) or from a decoder's alpha (see :func:`reconstruction_output`), pruned slots zeroed.
"""

from __future__ import annotations

from jaxtyping import Bool, Float
from torch import Tensor, nn
from torch.nn import functional

from metaslot.errors import DataError
from metaslot.models.encoders import EncoderSpec, ProjectionSpec
from metaslot.models.masks import attention_to_masks
from metaslot.models.pipelines.frontend import (
    AggregatorSpec,
    FrontEndOutput,
    build_frontend,
    honour_keep_downstream,
)
from metaslot.models.records import AggregatorOutput, PipelineOutput


def require_image_size(image: Float[Tensor, "b 3 h w"], size: int, pipeline: str, spec: str) -> None:
    """Pipelines whose decoder is built for one square size reject other inputs with the fix."""
    if tuple(image.shape[-2:]) != (size, size):
        raise DataError(
            f"{pipeline} was built for {size}×{size} images but got {tuple(image.shape[-2:])}: "
            f"resize the data or set image_size={image.shape[-1]} in {spec}"
        )


class SlotPipeline(nn.Module):
    """Base of the pipelines with slots: ``self.frontend``, ``aggregator``, ``decoder_keep``, upkeep.

    Subclasses add their decoder (and targets) and define ``forward(image, generator) -> PipelineOutput``.
    """

    def __init__(
        self, encoder: EncoderSpec, projection: ProjectionSpec | None, aggregator: AggregatorSpec
    ) -> None:
        super().__init__()
        self.frontend = build_frontend(encoder, projection, aggregator)
        self.honour_keep_downstream = honour_keep_downstream(aggregator)

    @property
    def honour_keep(self) -> bool:
        """The former name of ``honour_keep_downstream`` (kept for existing callers)."""
        return self.honour_keep_downstream

    @property
    def aggregator(self) -> nn.Module:
        return self.frontend.aggregator

    def decoder_keep(self, aggregated: AggregatorOutput) -> Bool[Tensor, "b k"] | None:
        """The keep mask the decoder sees: None (decode every slot, the reference) unless keep is honoured."""
        return aggregated.keep if self.honour_keep_downstream else None

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        """Codebook upkeep of the aggregator (a no-op for plain Slot Attention)."""
        if output.aggregator is None:
            raise ValueError(
                "output.aggregator is None: pass the PipelineOutput this pipeline's forward returned"
            )
        self.aggregator.update_codebook(output.aggregator)


def attention_masks(front: FrontEndOutput, size: tuple[int, int]) -> Float[Tensor, "b k h w"]:
    """Masks from the aggregator's attention over the encoder grid, at ``size``, pruned slots zero."""
    aggregated = front.aggregator
    return attention_to_masks(aggregated.attention, front.grid, size, aggregated.keep)


def slot_output(
    aggregated: AggregatorOutput,
    loss: Float[Tensor, ""],
    term: str,
    masks: Float[Tensor, "b k h w"],
    reconstruction: Tensor | None = None,
) -> PipelineOutput:
    """The record a one-loss slot pipeline returns; ``term`` names the loss in ``terms``."""
    return PipelineOutput(
        loss=loss,
        terms={term: loss.detach()},
        slots=aggregated.slots,
        keep=aggregated.keep,
        masks=masks,
        reconstruction=reconstruction,
        aggregator=aggregated,
    )


def reconstruction_output(
    aggregated: AggregatorOutput,
    reconstruction: Float[Tensor, "*target"],
    target: Float[Tensor, "*target"],
    masks: Float[Tensor, "b k h w"],
) -> PipelineOutput:
    """Autoencoder and DINOSAUR: loss = MSE(reconstruction, target), reported as ``terms["reconstruction"]``.

    ``target`` must carry no gradient path the loss should not use (DINOSAUR detaches its features).
    """
    loss = functional.mse_loss(reconstruction, target)
    return slot_output(aggregated, loss, "reconstruction", masks, reconstruction)
