"""The original Slot Attention autoencoder: CNN encoder → aggregator → spatial-broadcast pixel decoder,
trained with pixel MSE on the (ImageNet-normalised) image. The CPU default on synthetic shapes."""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn import functional

from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.decoders import BroadcastPixelDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec, EncoderSpec, ProjectionSpec
from metaslot.models.masks import alpha_to_masks
from metaslot.models.pipelines.frontend import AggregatorSpec, build_frontend, honours_keep
from metaslot.models.records import PipelineOutput


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


def _default_aggregator() -> AggregatorSpec:
    return MetaSlotSpec(num_slots=7, slot_dim=64, feature_dim=64)


@attrs.frozen(kw_only=True)
class AutoencoderSpec:
    """Encoder (CNN by default) → optional projection → aggregator → pixel decoder at ``image_size``."""

    encoder: EncoderSpec = attrs.field(factory=CNNEncoderSpec)
    projection: ProjectionSpec | None = None
    aggregator: AggregatorSpec = attrs.field(factory=_default_aggregator)
    decoder: BroadcastPixelDecoderSpec = attrs.field(factory=BroadcastPixelDecoderSpec)
    image_size: int = attrs.field(default=64, validator=_positive)
    """Side of the square input images; the decoder reconstructs at this size."""

    def build(self) -> Autoencoder:
        return Autoencoder(self)


class Autoencoder(nn.Module):
    """``forward(image b 3 h w) -> PipelineOutput`` with masks from the decoder's alpha."""

    def __init__(self, spec: AutoencoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.honour_keep = honours_keep(spec.aggregator)
        self.frontend = build_frontend(spec.encoder, spec.projection, spec.aggregator)
        self.decoder = spec.decoder.build(slot_dim=spec.aggregator.slot_dim, image_size=spec.image_size)

    @property
    def aggregator(self) -> nn.Module:
        return self.frontend.aggregator

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        size = self.spec.image_size
        if tuple(image.shape[-2:]) != (size, size):
            raise ValueError(
                f"the autoencoder was built for {size}×{size} images but got {tuple(image.shape[-2:])}: "
                f"resize the data or set image_size={image.shape[-1]} in AutoencoderSpec"
            )
        front = self.frontend(image, generator=generator)
        aggregated = front.aggregator
        decoded = self.decoder(aggregated.slots, aggregated.keep if self.honour_keep else None)
        loss = functional.mse_loss(decoded.reconstruction, image)
        return PipelineOutput(
            loss=loss,
            terms={"reconstruction": loss.detach()},
            slots=aggregated.slots,
            keep=aggregated.keep,
            masks=alpha_to_masks(decoded.alpha, (size, size), aggregated.keep),
            reconstruction=decoded.reconstruction,
            aggregator=aggregated,
        )

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        """Codebook upkeep (a no-op for Slot Attention)."""
        if output.aggregator is None:
            raise ValueError(
                "output.aggregator is None: pass the PipelineOutput this pipeline's forward returned"
            )
        self.aggregator.update_codebook(output.aggregator)
