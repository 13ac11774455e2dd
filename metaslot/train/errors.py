"""Kept for existing imports: the error types live in `metaslot.errors`."""

from __future__ import annotations

from metaslot.errors import (
    CheckpointError,
    ConfigError,
    DeviceError,
    MetaslotError,
    NonFiniteLossError,
    TrainingInterrupted,
)

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DeviceError",
    "MetaslotError",
    "NonFiniteLossError",
    "TrainingInterrupted",
]
