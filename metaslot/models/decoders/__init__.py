"""Decoders: ``decoder(slots b k d, keep b k | None)`` → a typed output; keep None decodes every slot
(the reference's behaviour), otherwise pruned slots contribute nothing.

The diffusion decoder needs ``diffusers``; its names resolve lazily so that the other decoders import
without it.
"""

from __future__ import annotations

from metaslot._lazy import lazy_exports
from metaslot.models.decoders.attention_colour import AttentionColourDecoder, AttentionColourDecoderSpec
from metaslot.models.decoders.autoregressive import ARDecoder, ARDecoderSpec
from metaslot.models.decoders.broadcast_mlp import FeatureDecoderOutput, MLPDecoder, MLPDecoderSpec
from metaslot.models.decoders.broadcast_pixel import (
    BroadcastPixelDecoder,
    BroadcastPixelDecoderSpec,
    PixelDecoder,
    PixelDecoderOutput,
)

# Public name → module, imported on first access (diffusers is heavy and optional for most pipelines).
_LAZY = {
    "DiffusionDecoder": "metaslot.models.decoders.diffusion",
    "DiffusionDecoderSpec": "metaslot.models.decoders.diffusion",
    "DiffusionTerms": "metaslot.models.decoders.diffusion",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "ARDecoder",
    "ARDecoderSpec",
    "AttentionColourDecoder",
    "AttentionColourDecoderSpec",
    "BroadcastPixelDecoder",
    "BroadcastPixelDecoderSpec",
    "FeatureDecoderOutput",
    "MLPDecoder",
    "MLPDecoderSpec",
    "PixelDecoder",
    "PixelDecoderOutput",
    *_LAZY,
]
