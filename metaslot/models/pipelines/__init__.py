"""Pipelines: spec → ``build()`` → module with ``forward(image b 3 h w) -> PipelineOutput``, an
``aggregator`` attribute and ``after_optimizer_step(output)`` (codebook upkeep)."""

from __future__ import annotations

from metaslot.models.pipelines.autoencoder import Autoencoder, AutoencoderSpec
from metaslot.models.pipelines.dinosaur import Dinosaur, DinosaurSpec
from metaslot.models.pipelines.frontend import (
    AggregatorSpec,
    FrontEnd,
    FrontEndOutput,
    build_frontend,
    honours_keep,
)

__all__ = [
    "AggregatorSpec",
    "Autoencoder",
    "AutoencoderSpec",
    "Dinosaur",
    "DinosaurSpec",
    "FrontEnd",
    "FrontEndOutput",
    "build_frontend",
    "honours_keep",
]

# Other pipelines (vqvae, slate, slotdiffusion) append their imports and __all__ entries below.

from metaslot.models.pipelines.checkpoint_mapping import (  # noqa: E402
    CheckpointMismatchError,
    load_vqvae_checkpoint,
    load_vqvae_into,
)
from metaslot.models.pipelines.slate import Slate, SlateSpec  # noqa: E402
from metaslot.models.pipelines.slotdiffusion import SlotDiffusion, SlotDiffusionSpec  # noqa: E402
from metaslot.models.pipelines.vqvae import VQVAE, VQVAESpec, vqvae_c4, vqvae_c256  # noqa: E402

__all__ += [
    "VQVAE",
    "CheckpointMismatchError",
    "Slate",
    "SlateSpec",
    "SlotDiffusion",
    "SlotDiffusionSpec",
    "VQVAESpec",
    "load_vqvae_checkpoint",
    "load_vqvae_into",
    "vqvae_c4",
    "vqvae_c256",
]
