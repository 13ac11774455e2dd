"""The hidden activations a spec may name: GELU (metaslot's and the MetaSlot reference's MLPs) or ReLU
(FT-DINOSAUR's, from OCLF). One stable registered name per choice, so it travels in ``config.json``."""

from __future__ import annotations

from typing import Literal

from torch import nn

from metaslot.validators import one_of

Activation = Literal["gelu", "relu"]
ACTIVATIONS: tuple[Activation, ...] = ("gelu", "relu")


check_activation = one_of(*ACTIVATIONS)
"""attrs validator: the field names one of `ACTIVATIONS`."""


def activation_layer(name: Activation) -> nn.Module:
    """A fresh module for ``name`` (no parameters, so it never changes a state dict's keys)."""
    return nn.ReLU() if name == "relu" else nn.GELU()
