"""The part SLATE and SlotDiffusion share: a slot pipeline whose decoder learns the latents of a frozen
stage-1 VQ-VAE (reference §1.7-1.8), with masks from the aggregator's attention.

The VQ-VAE is built without LPIPS and without gradients, and stays in evaluation mode under
``pipeline.train()``. Load its trained weights after ``build()`` with
``checkpoint_mapping.load_vqvae_checkpoint``.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from torch import nn

from metaslot.models.encoders import EncoderSpec, ProjectionSpec
from metaslot.models.pipelines.frontend import AggregatorSpec
from metaslot.models.pipelines.slot_pipeline import SlotPipeline
from metaslot.models.pipelines.vqvae import VQVAESpec, frozen_vqvae


@runtime_checkable
class StageTwoSpec(Protocol):
    """A pipeline spec that needs a trained stage-1 VQ-VAE (`SlateSpec`, `SlotDiffusionSpec`)."""

    stage_one_variant: ClassVar[str]
    """The VQ-VAE preset its own presets train first: ``c256`` (SLATE) or ``c4`` (SlotDiffusion)."""
    vqvae: VQVAESpec

    def build(self) -> nn.Module: ...


class StageTwoPipeline(SlotPipeline):
    """``self.frontend`` and ``self.vqvae`` (frozen, always in eval mode); subclasses add ``self.decoder``."""

    def __init__(
        self,
        encoder: EncoderSpec,
        projection: ProjectionSpec | None,
        aggregator: AggregatorSpec,
        vqvae: VQVAESpec,
    ) -> None:
        super().__init__(encoder, projection, aggregator)
        self.vqvae = frozen_vqvae(vqvae)

    @property
    def renders(self) -> bool:
        """Whether ``reconstruct`` can draw images: False when the stage-1 decoder is absent (a reference
        file loaded without its stage-1 VQ-VAE file, ``VQVAESpec.with_decoder=False``)."""
        return self.vqvae.decoder is not None

    def train(self, mode: bool = True) -> StageTwoPipeline:
        super().train(mode)
        self.vqvae.eval()  # frozen stage 1 stays in evaluation mode
        return self
