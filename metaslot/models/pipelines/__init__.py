"""Pipelines: spec → ``build()`` → module with ``forward(image b 3 h w) -> PipelineOutput``, an
``aggregator`` attribute and ``after_optimizer_step(output)`` (codebook upkeep)."""

from __future__ import annotations

from metaslot.models.pipelines.autoencoder import Autoencoder, AutoencoderSpec
from metaslot.models.pipelines.dinosaur import Dinosaur, DinosaurSpec
from metaslot.models.pipelines.frontend import AggregatorSpec, FrontEnd, FrontEndOutput, build_frontend

__all__ = [
    "AggregatorSpec",
    "Autoencoder",
    "AutoencoderSpec",
    "Dinosaur",
    "DinosaurSpec",
    "FrontEnd",
    "FrontEndOutput",
    "build_frontend",
]

# Other pipelines (vqvae, slate, slotdiffusion) append their imports and __all__ entries below.
