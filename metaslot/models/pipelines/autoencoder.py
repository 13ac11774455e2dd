"""The original Slot Attention autoencoder: CNN encoder → aggregator → spatial-broadcast pixel decoder,
trained with pixel MSE on the (ImageNet-normalised) image. The CPU default on synthetic shapes."""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Float
from torch import Tensor

from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.decoders import BroadcastPixelDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec, EncoderSpec, ProjectionSpec
from metaslot.models.masks import alpha_to_masks
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
    return MetaSlotSpec(num_slots=7, slot_dim=64, feature_dim=64)


@attrs.frozen(kw_only=True)
class AutoencoderSpec:
    """Encoder (CNN by default) → optional projection → aggregator → pixel decoder at ``image_size``."""

    encoder: EncoderSpec = attrs.field(factory=CNNEncoderSpec)
    projection: ProjectionSpec | None = None
    aggregator: AggregatorSpec = attrs.field(factory=_default_aggregator)
    decoder: BroadcastPixelDecoderSpec = attrs.field(factory=BroadcastPixelDecoderSpec)
    image_size: int = attrs.field(default=64, validator=at_least_one)
    """Side of the square input images; the decoder reconstructs at this size."""

    def build(self) -> Autoencoder:
        return Autoencoder(self)


class Autoencoder(SlotPipeline):
    """``forward(image b 3 h w) -> PipelineOutput`` with masks from the decoder's alpha."""

    def __init__(self, spec: AutoencoderSpec) -> None:
        super().__init__(spec.encoder, spec.projection, spec.aggregator)
        self.spec = spec
        self.image_size = spec.image_size
        self.decoder = spec.decoder.build(slot_dim=spec.aggregator.slot_dim, image_size=spec.image_size)

    def slot_masks(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> SlotMasks:
        """Front end and decoder; masks from the decoder's alpha, no loss."""
        size = self.spec.image_size
        require_image_size(image, size, "the autoencoder", "AutoencoderSpec")
        front = self.frontend(image, generator=generator)
        aggregated = front.aggregator
        keep = self.downstream_keep(aggregated)
        decoded = self.decoder(aggregated.slots, keep)
        masks = alpha_to_masks(decoded.alpha, (size, size), keep)
        return SlotMasks(front=front, masks=masks, reconstruction=decoded.reconstruction)

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        masked = self.slot_masks(image, generator)
        return reconstruction_output(
            masked.front.aggregator,
            masked.reconstruction,
            image,
            masked.masks,
            honour_keep_downstream=self.honour_keep_downstream,
        )
