"""What every slot pipeline (Autoencoder, DINOSAUR, SLATE, SlotDiffusion) shares around its decoder.

:class:`SlotPipeline` owns the front end (encoder → projection → aggregator), the keep policy for the
decoder and the codebook upkeep after each optimiser step. The functions build the pieces of the
:class:`PipelineOutput` the same way everywhere: masks from the aggregator's attention (SLATE,
SlotDiffusion) or from a decoder's alpha (see :func:`reconstruction_output`), pruned slots zeroed
unless the aggregator spec asks for the reference's behaviour (``honour_keep_downstream=False``).
"""

from __future__ import annotations

from jaxtyping import Bool, Float
from torch import Tensor, nn
from torch.nn import functional

from metaslot.models.encoders import EncoderSpec, ProjectionSpec
from metaslot.models.masks import attention_to_masks
from metaslot.models.pipelines.frontend import AggregatorSpec, FrontEndOutput, build_frontend, honours_keep
from metaslot.models.records import AggregatorOutput, CodebookStatistics, PipelineOutput


def require_image_size(image: Float[Tensor, "b 3 h w"], size: int, pipeline: str, spec: str) -> None:
    """Pipelines whose decoder is built for one square size reject other inputs with the fix."""
    if tuple(image.shape[-2:]) != (size, size):
        raise ValueError(
            f"{pipeline} was built for {size}×{size} images but got {tuple(image.shape[-2:])}: "
            f"resize the data or set image_size={image.shape[-1]} in {spec}"
        )


class SlotPipeline(nn.Module):
    """Base of the pipelines with slots: ``self.frontend``, ``aggregator``, ``downstream_keep``, upkeep.

    Subclasses add their decoder (and targets) and define ``forward(image, generator) -> PipelineOutput``.
    """

    def __init__(
        self, encoder: EncoderSpec, projection: ProjectionSpec | None, aggregator: AggregatorSpec
    ) -> None:
        super().__init__()
        self.frontend = build_frontend(encoder, projection, aggregator)
        self.honour_keep = honours_keep(aggregator)

    @property
    def aggregator(self) -> nn.Module:
        return self.frontend.aggregator

    def downstream_keep(self, aggregated: AggregatorOutput) -> Bool[Tensor, "b k"] | None:
        """The keep mask the decoder, the masks and the pixel labels see: None (every slot decoded and
        able to win pixels, the reference) unless keep is honoured."""
        return aggregated.keep if self.honour_keep else None

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
    honours_keep: bool = True,
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
        honours_keep=honours_keep,
    )


def reconstruction_output(
    aggregated: AggregatorOutput,
    reconstruction: Float[Tensor, "*target"],
    target: Float[Tensor, "*target"],
    masks: Float[Tensor, "b k h w"],
    *,
    honours_keep: bool = True,
) -> PipelineOutput:
    """Autoencoder and DINOSAUR: loss = MSE(reconstruction, target), reported as ``terms["reconstruction"]``.

    ``target`` must carry no gradient path the loss should not use (DINOSAUR detaches its features).
    """
    loss = functional.mse_loss(reconstruction, target)
    return slot_output(aggregated, loss, "reconstruction", masks, reconstruction, honours_keep=honours_keep)
