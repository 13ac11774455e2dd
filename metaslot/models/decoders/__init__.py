"""Decoders: ``decoder(slots b k d, keep b k | None)`` → a typed output; keep None decodes every slot
(the reference's behaviour), otherwise pruned slots contribute nothing."""

from __future__ import annotations

from metaslot.models.decoders.broadcast_mlp import FeatureDecoderOutput, MLPDecoder, MLPDecoderSpec
from metaslot.models.decoders.broadcast_pixel import (
    BroadcastPixelDecoder,
    BroadcastPixelDecoderSpec,
    PixelDecoderOutput,
)

__all__ = [
    "BroadcastPixelDecoder",
    "BroadcastPixelDecoderSpec",
    "FeatureDecoderOutput",
    "MLPDecoder",
    "MLPDecoderSpec",
    "PixelDecoderOutput",
]
