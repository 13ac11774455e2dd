"""Errors a user can cause when loading or sharing a trained model; the CLI prints each in one line."""

from __future__ import annotations

from metaslot.errors import CheckpointError, MetaslotError


class ModelNotFoundError(CheckpointError):
    """The source names no run folder, checkpoint, pretrained folder or reachable Hugging Face repo."""


class HubError(MetaslotError):
    """The Hugging Face hub could not give or take the model (offline, unknown repo, no permission)."""


class OutputFolderError(MetaslotError):
    """``save_pretrained`` would overwrite files it did not write; nothing was written."""
