"""Build a pipeline whose every weight will come from a checkpoint: nothing downloaded, no weight file read.

A run's config names where its frozen parts first came from (DINOv2 from the hub or a local file,
TAESD layers from a diffusers folder, the stage-1 VQ-VAE from ``--vqvae``). The checkpoint holds all of
them already: ``state_dict()`` keeps frozen parameters, so the backbone trained with is the one saved.
Here those sources are switched off, the pipeline is built with random weights and the checkpoint's
tensors are loaded over every one of them (strictly: a missing or extra key is an error).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch

from metaslot.models.encoders import DinoViTSpec
from metaslot.models.pipelines.vqvae import VQVAESpec
from metaslot.train.checkpoint import load_model_state

LOSS_ONLY_PREFIXES = ("perceptual.",)
"""State of modules that only compute a training loss (the VQ-VAE's LPIPS network): an inference build
has none, so a checkpoint's copy is left out."""


def without_downloads(spec: Any) -> Any:
    """``spec`` with every pretrained-weight source switched off, at any depth of the spec tree.

    DINO/DINOv2 encoders become ``pretrained=False`` (random, no hub, no file); VQ-VAEs lose their TAESD
    folder and their LPIPS loss. Everything that shapes the modules stays as trained.
    """
    if isinstance(spec, DinoViTSpec):
        return attrs.evolve(spec, pretrained=False, weights=None)
    if isinstance(spec, VQVAESpec):
        return attrs.evolve(spec, pretrained=None, lpips_weight=0.0)
    if not attrs.has(type(spec)):
        return spec
    changes = {
        field.alias: without_downloads(getattr(spec, field.name))
        for field in attrs.fields(type(spec))
        if field.init
    }
    return attrs.evolve(spec, **changes)


def build_for_weights(model_spec: Any) -> torch.nn.Module:
    """The pipeline of ``model_spec`` with random weights, built without downloads or weight files.

    The caller's random streams are untouched (initialisation draws happen in a forked RNG).
    """
    with torch.random.fork_rng(devices=[]):
        return without_downloads(model_spec).build()


def load_weights(pipeline: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Load every tensor of ``pipeline`` from ``tensors`` (loss-only modules' state dropped first).

    A checkpoint of another model (other keys or shapes) is a ``CheckpointError`` naming ``source``.
    """
    own = pipeline.state_dict()
    kept = {
        name: tensor
        for name, tensor in tensors.items()
        if name in own or not name.startswith(LOSS_ONLY_PREFIXES)
    }
    load_model_state(pipeline, kept, source)
