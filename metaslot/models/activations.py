"""The hidden activations a spec may name: GELU (metaslot's and the MetaSlot reference's MLPs) or ReLU
(FT-DINOSAUR's, from OCLF). One stable registered name per choice, so it travels in ``config.json``."""

from __future__ import annotations

from typing import Literal

import attrs
from torch import nn

from metaslot.errors import ConfigError

Activation = Literal["gelu", "relu"]
ACTIVATIONS: tuple[Activation, ...] = ("gelu", "relu")


def check_activation(instance: object, attribute: attrs.Attribute, value: str) -> None:
    """attrs validator: the field names one of `ACTIVATIONS`."""
    if value not in ACTIVATIONS:
        raise ConfigError(
            f"unknown {attribute.name} {value!r}: choose one of {', '.join(repr(name) for name in ACTIVATIONS)}"
        )


def activation_layer(name: Activation) -> nn.Module:
    """A fresh module for ``name`` (no parameters, so it never changes a state dict's keys)."""
    return nn.ReLU() if name == "relu" else nn.GELU()
