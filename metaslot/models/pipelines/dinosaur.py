"""DINOSAUR (Seitzer et al. 2023; ``spec/reference.md`` §1.5): frozen ViT features → projection →
aggregator → broadcast MLP decoder reconstructing the features; masks from the decoder's alpha."""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn import functional

from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.decoders import MLPDecoderSpec
from metaslot.models.encoders import DinoViTSpec, EncoderSpec, ProjectionSpec
from metaslot.models.masks import attention_to_masks
from metaslot.models.pipelines.frontend import AggregatorSpec, build_frontend, honours_keep
from metaslot.models.records import PipelineOutput


def _positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


def _default_aggregator() -> AggregatorSpec:
    return MetaSlotSpec(num_slots=7, slot_dim=256, feature_dim=256)


@attrs.frozen(kw_only=True)
class DinosaurSpec:
    """Reference defaults: DINOv2 ViT-S/14 at 224 (16×16×384), projection to 256, 3×2048 MLP decoder."""

    encoder: EncoderSpec = attrs.field(factory=DinoViTSpec)
    projection: ProjectionSpec | None = attrs.field(factory=ProjectionSpec)
    aggregator: AggregatorSpec = attrs.field(factory=_default_aggregator)
    decoder: MLPDecoderSpec = attrs.field(factory=MLPDecoderSpec)
    image_size: int = attrs.field(default=256, validator=_positive)
    """Side of the square input images (fixes the token count of a CNN encoder and the mask size)."""

    def build(self) -> Dinosaur:
        return Dinosaur(self)


class Dinosaur(nn.Module):
    """``forward(image b 3 h w) -> PipelineOutput``; the loss is MSE to the detached encoder features."""

    def __init__(self, spec: DinosaurSpec) -> None:
        super().__init__()
        self.spec = spec
        self.honour_keep = honours_keep(spec.aggregator)
        self.frontend = build_frontend(spec.encoder, spec.projection, spec.aggregator)
        encoder = self.frontend.encoder
        grid_height, grid_width = encoder.grid_size(spec.image_size, spec.image_size)
        self.decoder = spec.decoder.build(
            slot_dim=spec.aggregator.slot_dim,
            feature_dim=encoder.out_channels,
            num_tokens=grid_height * grid_width,
        )

    @property
    def aggregator(self) -> nn.Module:
        return self.frontend.aggregator

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        size = self.spec.image_size
        if tuple(image.shape[-2:]) != (size, size):
            raise ValueError(
                f"DINOSAUR was built for {size}×{size} images but got {tuple(image.shape[-2:])}: "
                f"resize the data or set image_size={image.shape[-1]} in DinosaurSpec"
            )
        front = self.frontend(image, generator=generator)
        aggregated = front.aggregator
        decoded = self.decoder(aggregated.slots, aggregated.keep if self.honour_keep else None)
        # The target is detached (reference: feature.detach()), also when the encoder is trainable.
        loss = functional.mse_loss(decoded.reconstruction, front.features.detach())
        return PipelineOutput(
            loss=loss,
            terms={"reconstruction": loss.detach()},
            slots=aggregated.slots,
            keep=aggregated.keep,
            masks=attention_to_masks(decoded.alpha, front.grid, (size, size), aggregated.keep),
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
