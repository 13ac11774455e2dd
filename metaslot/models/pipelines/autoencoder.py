"""The original Slot Attention autoencoder: CNN encoder → aggregator → pixel decoder, trained with pixel
MSE on the (ImageNet-normalised) image. The decoder is the spatial-broadcast one of Locatello et al., or,
for the CPU default job on flat-coloured shapes, the attention-colour decoder (each slot paints one colour
through its attention mask)."""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Float
from torch import Tensor

from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.decoders import AttentionColourDecoderSpec, BroadcastPixelDecoderSpec, PixelDecoder
from metaslot.models.encoders import CNNEncoderSpec, EncoderSpec, ProjectionSpec
from metaslot.models.masks import alpha_to_masks
from metaslot.models.pipelines.frontend import AggregatorSpec
from metaslot.models.pipelines.slot_pipeline import (
    SlotMasks,
    SlotPipeline,
    attention_masks,
    evaluation_attention_masks,
    reconstruction_output,
    require_image_size,
)
from metaslot.models.records import PipelineOutput
from metaslot.validators import at_least_one


def _default_aggregator() -> AggregatorSpec:
    return MetaSlotSpec(num_slots=7, slot_dim=64, feature_dim=64)


@attrs.frozen(kw_only=True)
class AutoencoderSpec:
    """Encoder (CNN by default) → optional projection → aggregator → pixel decoder at ``image_size``."""

    encoder: EncoderSpec = attrs.field(factory=CNNEncoderSpec)
    projection: ProjectionSpec | None = None
    aggregator: AggregatorSpec = attrs.field(factory=_default_aggregator)
    decoder: BroadcastPixelDecoderSpec | AttentionColourDecoderSpec = attrs.field(
        factory=BroadcastPixelDecoderSpec
    )
    image_size: int = attrs.field(default=64, validator=at_least_one)
    """Side of the square input images; the decoder reconstructs at this size."""

    def build(self) -> Autoencoder:
        return Autoencoder(self)


class Autoencoder(SlotPipeline):
    """``forward(image b 3 h w) -> PipelineOutput`` with masks from the decoder's alpha."""

    def __init__(self, spec: AutoencoderSpec) -> None:
        super().__init__(spec.encoder, spec.projection, spec.aggregator)
        self.spec = spec
        self.decoder: PixelDecoder = spec.decoder.build(
            slot_dim=spec.aggregator.slot_dim, image_size=spec.image_size
        )

    def slot_masks(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> SlotMasks:
        """Front end and decoder; masks from the decoder's alpha (the attention, for the attention-colour
        decoder), no loss."""
        size = self.spec.image_size
        require_image_size(image, size, "the autoencoder", "AutoencoderSpec")
        front = self.frontend(image, generator=generator)
        aggregated = front.aggregator
        keep = self.downstream_keep(aggregated)
        soft = self.soft_keep(aggregated)
        # With a learnt keep the decoder takes the dropped slots out of the whole attention itself.
        attention = attention_masks(front, (size, size), keep if soft is None else None)
        decoded = self.decoder.paint(aggregated.slots, attention, keep, soft)
        masks = alpha_to_masks(decoded.alpha, (size, size), keep)
        return SlotMasks(front=front, masks=masks, reconstruction=decoded.reconstruction)

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        masked = self.slot_masks(image, generator)
        size = self.spec.image_size
        return reconstruction_output(
            masked.front.aggregator,
            masked.reconstruction,
            image,
            masked.masks,
            honour_keep_downstream=self.honour_keep_downstream,
            attention_masks=evaluation_attention_masks(self, masked.front, (size, size)),
        )
