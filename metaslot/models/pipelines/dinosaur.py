"""DINOSAUR (Seitzer et al. 2023; ``spec/reference.md`` §1.5): frozen ViT features → projection →
aggregator → broadcast MLP decoder reconstructing the features; masks from the decoder's alpha."""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Float
from torch import Tensor

from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.decoders import MLPDecoderSpec
from metaslot.models.encoders import DinoViTSpec, EncoderSpec, ProjectionSpec
from metaslot.models.masks import attention_to_masks
from metaslot.models.pipelines.frontend import AggregatorSpec
from metaslot.models.pipelines.slot_pipeline import (
    SlotMasks,
    SlotPipeline,
    reconstruction_output,
    require_image_size,
)
from metaslot.models.records import PipelineOutput
from metaslot.validators import at_least_one


def _default_aggregator() -> AggregatorSpec:
    return MetaSlotSpec(num_slots=7, slot_dim=256, feature_dim=256)


@attrs.frozen(kw_only=True)
class DinosaurSpec:
    """Reference defaults: DINOv2 ViT-S/14 at 224 (16×16×384), projection to 256, 3×2048 MLP decoder."""

    encoder: EncoderSpec = attrs.field(factory=DinoViTSpec)
    projection: ProjectionSpec | None = attrs.field(factory=ProjectionSpec)
    aggregator: AggregatorSpec = attrs.field(factory=_default_aggregator)
    decoder: MLPDecoderSpec = attrs.field(factory=MLPDecoderSpec)
    image_size: int = attrs.field(default=256, validator=at_least_one)
    """Side of the square input images (fixes the token count of a CNN encoder and the mask size)."""

    def build(self) -> Dinosaur:
        return Dinosaur(self)


class Dinosaur(SlotPipeline):
    """``forward(image b 3 h w) -> PipelineOutput``; the loss is MSE to the detached encoder features."""

    def __init__(self, spec: DinosaurSpec) -> None:
        super().__init__(spec.encoder, spec.projection, spec.aggregator)
        self.spec = spec
        self.image_size = spec.image_size
        encoder = self.frontend.encoder
        grid_height, grid_width = encoder.grid_size(spec.image_size, spec.image_size)
        self.decoder = spec.decoder.build(
            slot_dim=spec.aggregator.slot_dim,
            feature_dim=encoder.out_channels,
            num_tokens=grid_height * grid_width,
        )

    def slot_masks(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> SlotMasks:
        """Front end and decoder; masks from the decoder's alpha on the token grid, no loss."""
        size = self.spec.image_size
        require_image_size(image, size, "DINOSAUR", "DinosaurSpec")
        front = self.frontend(image, generator=generator)
        aggregated = front.aggregator
        keep = self.downstream_keep(aggregated)
        decoded = self.decoder(aggregated.slots, keep, self.soft_keep(aggregated))
        masks = attention_to_masks(decoded.alpha, front.grid, (size, size), keep)
        return SlotMasks(front=front, masks=masks, reconstruction=decoded.reconstruction)

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        masked = self.slot_masks(image, generator)
        # The target is detached (reference: feature.detach()), also when the encoder is trainable.
        target = masked.front.features.detach()
        return reconstruction_output(
            masked.front.aggregator,
            masked.reconstruction,
            target,
            masked.masks,
            honour_keep_downstream=self.honour_keep_downstream,
        )
