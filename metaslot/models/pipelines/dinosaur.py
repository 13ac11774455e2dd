"""DINOSAUR (Seitzer et al. 2023; ``spec/reference.md`` §1.5): frozen ViT features → projection →
aggregator → broadcast MLP decoder reconstructing the features; masks from the decoder's alpha.

FT-DINOSAUR (Didolkar et al. 2024) is the same pipeline with a trainable encoder, a frozen
``target_encoder`` (the original DINOv2) giving the features to reconstruct, ReLU MLPs and top-k decoding
(`metaslot.pretrained.ftdinosaur`)."""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Float
from torch import Tensor

from metaslot.errors import ConfigError
from metaslot.models.aggregators import AdaSlotSpec, MetaSlotSpec
from metaslot.models.decoders import MLPDecoderSpec
from metaslot.models.encoders import DinoViTSpec, EncoderSpec, ProjectionSpec
from metaslot.models.masks import attention_to_masks
from metaslot.models.pipelines.frontend import AggregatorSpec
from metaslot.models.pipelines.slot_pipeline import (
    SlotMasks,
    SlotPipeline,
    evaluation_attention_masks,
    reconstruction_output,
    require_image_size,
)
from metaslot.models.records import PipelineOutput
from metaslot.validators import at_least_one, holds


def _default_aggregator() -> AggregatorSpec:
    return MetaSlotSpec(num_slots=7, slot_dim=256, feature_dim=256)


def _top_k_fits(spec: DinosaurSpec) -> None:
    """Top-k decoding picks k of the slots by a hard keep: at most the slot count, and not AdaSlot's
    learnt keep."""
    top_k = spec.decoder.top_k
    if top_k is not None and isinstance(spec.aggregator, AdaSlotSpec):
        raise ConfigError(
            "top-k decoding (decoder top_k) takes a hard keep, but AdaSlot's keep is soft (learnt): "
            "set the decoder's top_k to None or use another aggregator"
        )
    if top_k is not None and top_k > spec.aggregator.num_slots:
        raise ConfigError(
            f"decoder top_k ({top_k}) exceeds the number of slots ({spec.aggregator.num_slots}): "
            f"lower top_k or raise num_slots"
        )


@attrs.frozen(kw_only=True)
class DinosaurSpec:
    """Reference defaults: DINOv2 ViT-S/14 at 224 (16×16×384), projection to 256, 3×2048 MLP decoder."""

    encoder: EncoderSpec = attrs.field(factory=DinoViTSpec)
    projection: ProjectionSpec | None = attrs.field(factory=ProjectionSpec)
    aggregator: AggregatorSpec = attrs.field(factory=_default_aggregator)
    decoder: MLPDecoderSpec = attrs.field(factory=MLPDecoderSpec, validator=holds(_top_k_fits))
    image_size: int = attrs.field(default=256, validator=at_least_one)
    """Side of the square input images (fixes the token count of a CNN encoder and the mask size)."""
    target_encoder: EncoderSpec | None = None
    """Frozen encoder whose features the decoder reconstructs; None: the encoder's own, detached (the
    reference). FT-DINOSAUR fine-tunes the encoder and reconstructs the original DINOv2's features."""

    def build(self) -> Dinosaur:
        return Dinosaur(self)


class Dinosaur(SlotPipeline):
    """``forward(image b 3 h w) -> PipelineOutput``; the loss is MSE to the detached encoder features."""

    def __init__(self, spec: DinosaurSpec) -> None:
        super().__init__(spec.encoder, spec.projection, spec.aggregator)
        self.spec = spec
        encoder = self.frontend.encoder
        grid_height, grid_width = encoder.grid_size(spec.image_size, spec.image_size)
        self.decoder = spec.decoder.build(
            slot_dim=spec.aggregator.slot_dim,
            feature_dim=encoder.out_channels,
            num_tokens=grid_height * grid_width,
        )
        self.target_encoder = None if spec.target_encoder is None else spec.target_encoder.build()
        if self.target_encoder is not None:
            _check_target_encoder(self.target_encoder, encoder, spec.image_size)

    def slot_masks(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> SlotMasks:
        """Front end and decoder; masks from the decoder's alpha on the token grid, no loss."""
        size = self.spec.image_size
        require_image_size(image, size, "DINOSAUR", "DinosaurSpec")
        front = self.frontend(image, generator=generator)
        aggregated = front.aggregator
        keep = self.downstream_keep(aggregated)
        decoded = self.decoder(
            aggregated.slots, keep, self.soft_keep(aggregated), scores=aggregated.attention
        )
        masks = attention_to_masks(decoded.alpha, front.grid, (size, size), keep)
        return SlotMasks(front=front, masks=masks, reconstruction=decoded.reconstruction)

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        masked = self.slot_masks(image, generator)
        size = self.spec.image_size
        # The target is detached (reference: feature.detach()), also when the encoder is trainable.
        target = (
            masked.front.features if self.target_encoder is None else self.target_encoder(image)
        ).detach()
        return reconstruction_output(
            masked.front.aggregator,
            masked.reconstruction,
            target,
            masked.masks,
            honour_keep_downstream=self.honour_keep_downstream,
            attention_masks=evaluation_attention_masks(self, masked.front, (size, size)),
        )


def _check_target_encoder(target: torch.nn.Module, encoder: torch.nn.Module, image_size: int) -> None:
    """The target encoder must give what the decoder predicts: the encoder's width and token grid."""
    ours = (encoder.out_channels, encoder.grid_size(image_size, image_size))
    theirs = (target.out_channels, target.grid_size(image_size, image_size))
    if ours != theirs:
        raise ConfigError(
            f"target_encoder gives {theirs[0]}-wide tokens on a {theirs[1]} grid but the encoder "
            f"{ours[0]}-wide on {ours[1]}: use the same backbone and image_size for both"
        )
