"""The front end every object-centric pipeline shares (``spec/reference.md`` §1.1):
encoder → optional projection MLP → aggregator (Slot Attention, MetaSlot or AdaSlot)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn

from metaslot.errors import ConfigError
from metaslot.models.aggregators import AdaSlotSpec, MetaSlotSpec, SlotAttentionSpec
from metaslot.models.encoders import EncoderSpec, ProjectionSpec
from metaslot.models.records import AggregatorOutput
from metaslot.ops.adaslot import MaskMode

AggregatorSpec = SlotAttentionSpec | MetaSlotSpec | AdaSlotSpec


def honour_keep_downstream(aggregator: AggregatorSpec) -> bool:
    """Whether decoders ignore pruned slots: MetaSlot's ``honour_keep_downstream`` field (Slot Attention
    prunes nothing, so passing its all-True keep is harmless)."""
    return aggregator.honour_keep_downstream if isinstance(aggregator, MetaSlotSpec) else True


def decoder_mask_mode(aggregator: AggregatorSpec) -> MaskMode:
    """How decoders weigh their alpha with a learnt keep (`AggregatorOutput.keep_weight`): AdaSlot's
    ``decoder_mask``; the others never give a keep weight, so theirs is never read."""
    return aggregator.decoder_mask if isinstance(aggregator, AdaSlotSpec) else "mask_normalized"


@dataclass(frozen=True)
class FrontEndOutput:
    """``features`` are the encoder tokens (before projection: DINOSAUR's reconstruction target),
    ``grid`` their h'×w' layout, ``aggregator`` what the aggregator returned."""

    features: Float[Tensor, "b n c"]
    grid: tuple[int, int]
    aggregator: AggregatorOutput


class FrontEnd(nn.Module):
    """``forward(image b 3 h w) -> FrontEndOutput``; build with ``build_frontend``."""

    def __init__(self, encoder: nn.Module, projection: nn.Module | None, aggregator: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection if projection is not None else nn.Identity()
        self.aggregator = aggregator

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> FrontEndOutput:
        features = self.encoder(image)
        grid = self.encoder.grid_size(image.shape[-2], image.shape[-1])
        aggregated = self.aggregator(self.projection(features), generator=generator)
        return FrontEndOutput(features=features, grid=grid, aggregator=aggregated)


def build_frontend(
    encoder: EncoderSpec, projection: ProjectionSpec | None, aggregator: AggregatorSpec
) -> FrontEnd:
    """Build the three parts; the projection maps the encoder width to the aggregator's ``feature_dim``."""
    encoder_module = encoder.build()
    width = encoder_module.out_channels
    if projection is not None:
        projection_module = projection.build(in_channels=width, out_channels=aggregator.feature_dim)
    else:
        projection_module = None
        if width != aggregator.feature_dim:
            raise ConfigError(
                f"the encoder gives {width}-wide tokens but the aggregator's feature_dim is "
                f"{aggregator.feature_dim}: set feature_dim={width} or add a projection (ProjectionSpec())"
            )
    return FrontEnd(encoder_module, projection_module, aggregator.build())
