"""Pipelines: spec → ``build()`` → module with ``forward(image b 3 h w) -> PipelineOutput``, an
``aggregator`` attribute, ``after_optimizer_step(output)`` (codebook upkeep) and
``codebook_statistics()`` (codes in use and perplexity for the training log, None without a codebook).

The slot pipelines derive from :class:`SlotPipeline` (front end, keep policy, upkeep); SLATE and
SlotDiffusion from :class:`StageTwoPipeline` (plus the frozen stage-1 VQ-VAE). SlotDiffusion needs
``diffusers``; its names resolve lazily so that the other pipelines import without it.
"""

from __future__ import annotations

from metaslot._lazy import lazy_exports
from metaslot.models.pipelines.autoencoder import Autoencoder, AutoencoderSpec
from metaslot.models.pipelines.checkpoint_mapping import (
    CheckpointMismatchError,
    load_vqvae_checkpoint,
    load_vqvae_into,
)
from metaslot.models.pipelines.dinosaur import Dinosaur, DinosaurSpec
from metaslot.models.pipelines.frontend import (
    AggregatorSpec,
    FrontEnd,
    FrontEndOutput,
    build_frontend,
    honour_keep_downstream,
)
from metaslot.models.pipelines.slate import Slate, SlateSpec
from metaslot.models.pipelines.slot_pipeline import (
    SlotMasks,
    SlotPipeline,
    attention_masks,
    reconstruction_output,
    slot_output,
)
from metaslot.models.pipelines.stage_two import StageTwoPipeline, StageTwoSpec
from metaslot.models.pipelines.vqvae import VQVAE, VQVAESpec, vqvae_c4, vqvae_c256

# Public name → module, imported on first access (diffusers is heavy and only SlotDiffusion needs it).
_LAZY = {
    "SlotDiffusion": "metaslot.models.pipelines.slotdiffusion",
    "SlotDiffusionSpec": "metaslot.models.pipelines.slotdiffusion",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "VQVAE",
    "AggregatorSpec",
    "Autoencoder",
    "AutoencoderSpec",
    "CheckpointMismatchError",
    "Dinosaur",
    "DinosaurSpec",
    "FrontEnd",
    "FrontEndOutput",
    "Slate",
    "SlateSpec",
    "SlotMasks",
    "SlotPipeline",
    "StageTwoPipeline",
    "StageTwoSpec",
    "VQVAESpec",
    "attention_masks",
    "build_frontend",
    "honour_keep_downstream",
    "load_vqvae_checkpoint",
    "load_vqvae_into",
    "reconstruction_output",
    "slot_output",
    "vqvae_c4",
    "vqvae_c256",
    *_LAZY,
]
