"""Encoders: ``encoder(image b 3 h w) -> tokens b n c``, with ``out_channels`` (c), ``grid_size(h, w)``
(the token grid h'×w') and ``frozen``; plus the projection MLP to the aggregator's width."""

from __future__ import annotations

from metaslot.models.encoders.cnn import CNNEncoder, CNNEncoderSpec
from metaslot.models.encoders.projection import Projection, ProjectionSpec
from metaslot.models.encoders.vit import KNOWN_VITS, DinoViT, DinoViTSpec, WeightsNotFoundError

EncoderSpec = CNNEncoderSpec | DinoViTSpec
"""What an OCL pipeline's ``encoder`` field accepts."""

__all__ = [
    "KNOWN_VITS",
    "CNNEncoder",
    "CNNEncoderSpec",
    "DinoViT",
    "DinoViTSpec",
    "EncoderSpec",
    "Projection",
    "ProjectionSpec",
    "WeightsNotFoundError",
]
