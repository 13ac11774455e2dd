"""Kept for existing imports: device and precision choice live in `metaslot.runtime.device`."""

from __future__ import annotations

from metaslot.runtime.device import (
    DeviceChoice,
    PrecisionChoice,
    autocast,
    resolve_device,
    resolve_precision,
)

__all__ = ["DeviceChoice", "PrecisionChoice", "autocast", "resolve_device", "resolve_precision"]
