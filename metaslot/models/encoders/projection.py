"""The projection MLP between encoder tokens and the aggregator (reference ``encode_project``)."""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Float
from torch import Tensor, nn

from metaslot.models.activations import Activation, activation_layer, check_activation
from metaslot.validators import at_least_one


@attrs.frozen(kw_only=True)
class ProjectionSpec:
    """LayerNorm(c) → Linear(c, hidden_multiplier·c) → GELU (or ReLU) → Linear(·, out), biases zeroed at init.

    The widths come from the neighbours at ``build``: c from the encoder, out from the aggregator's
    ``feature_dim``, so the three can never disagree. Reference: ``MLP(384, [768, 256], ln="pre")``.
    """

    hidden_multiplier: int = attrs.field(default=2, validator=at_least_one)
    layer_norm: bool = True
    activation: Activation = attrs.field(default="gelu", validator=check_activation)
    """'gelu' (the MetaSlot reference) or 'relu' (FT-DINOSAUR's feature transform)."""

    def build(self, in_channels: int, out_channels: int) -> Projection:
        return Projection(
            in_channels,
            self.hidden_multiplier * in_channels,
            out_channels,
            self.layer_norm,
            self.activation,
        )


class Projection(nn.Module):
    """``forward(tokens b n c) -> tokens b n d``."""

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: int,
        layer_norm: bool = True,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mlp = nn.Sequential(
            nn.LayerNorm(in_channels) if layer_norm else nn.Identity(),
            nn.Linear(in_channels, hidden_channels),
            activation_layer(activation),
            nn.Linear(hidden_channels, out_channels),
        )
        # The reference's reset_parameters zeroes the biases of encode_project.
        with torch.no_grad():
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    layer.bias.zero_()

    def forward(self, tokens: Float[Tensor, "b n c"]) -> Float[Tensor, "b n d"]:
        return self.mlp(tokens)
