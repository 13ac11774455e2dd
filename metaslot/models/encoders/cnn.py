"""The original Slot Attention CNN encoder: conv stack, soft position embedding, LayerNorm + MLP.

Trainable; used on the synthetic shapes dataset and anywhere a small encoder is enough (tests, CPU runs).
"""

from __future__ import annotations

import attrs
import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor, nn

from metaslot.validators import odd_positive, positive_ints, same_length_as


def _default_strides(instance: CNNEncoderSpec) -> tuple[int, ...]:
    return (1,) * len(instance.channels)


@attrs.frozen(kw_only=True)
class CNNEncoderSpec:
    """Conv(k×k) + ReLU layers, soft position embedding, flatten, LayerNorm, MLP (Locatello et al. 2020).

    The paper's encoder is ``channels=(64, 64, 64, 64)``, ``kernel_size=5``, all strides 1; a stride
    above 1 downsamples (fewer tokens, cheaper aggregation on CPU).
    """

    channels: tuple[int, ...] = attrs.field(default=(64, 64, 64, 64), validator=positive_ints)
    """Output channels of each conv layer; the last one is also the token width c."""
    kernel_size: int = attrs.field(default=5, validator=odd_positive)
    strides: tuple[int, ...] = attrs.field(
        default=attrs.Factory(_default_strides, takes_self=True),
        validator=[positive_ints, same_length_as("channels", "conv layer")],
    )
    """Stride of each conv layer (same length as ``channels``)."""

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    def build(self) -> CNNEncoder:
        return CNNEncoder(self)


def position_grid(height: int, width: int, device: torch.device | None = None) -> Float[Tensor, "h w 4"]:
    """The 4-channel grid [y, x, 1−y, 1−x] with coordinates in [0, 1] (Slot Attention's soft embedding)."""
    ys = torch.linspace(0.0, 1.0, height, device=device)
    xs = torch.linspace(0.0, 1.0, width, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([y, x, 1.0 - y, 1.0 - x], dim=-1)


class SoftPositionEmbedding(nn.Module):
    """Adds ``Linear(4, c)`` of the coordinate grid to a channels-last feature map."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.project = nn.Linear(4, channels)

    def forward(self, features: Float[Tensor, "b h w c"]) -> Float[Tensor, "b h w c"]:
        grid = position_grid(features.shape[1], features.shape[2], device=features.device)
        return features + self.project(grid.to(features.dtype))


class CNNEncoder(nn.Module):
    """``forward(image b 3 h w) -> tokens b n c`` with n = h'·w' from ``grid_size(h, w)``."""

    frozen = False

    def __init__(self, spec: CNNEncoderSpec) -> None:
        super().__init__()
        self.spec = spec
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, stride in zip(spec.channels, spec.strides, strict=True):
            layers += [
                nn.Conv2d(
                    in_channels, out_channels, spec.kernel_size, stride=stride, padding=spec.kernel_size // 2
                ),
                nn.ReLU(),
            ]
            in_channels = out_channels
        self.convolutions = nn.Sequential(*layers)
        self.position = SoftPositionEmbedding(spec.out_channels)
        self.norm = nn.LayerNorm(spec.out_channels)
        self.mlp = nn.Sequential(
            nn.Linear(spec.out_channels, spec.out_channels),
            nn.ReLU(),
            nn.Linear(spec.out_channels, spec.out_channels),
        )

    @property
    def out_channels(self) -> int:
        return self.spec.out_channels

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (h', w') for an input of ``height``×``width`` (each stride-s 'same' conv gives ceil(x/s))."""
        for stride in self.spec.strides:
            height, width = -(-height // stride), -(-width // stride)
        return height, width

    def forward(self, image: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b n c"]:
        features = rearrange(self.convolutions(image), "b c h w -> b h w c")
        features = rearrange(self.position(features), "b h w c -> b (h w) c")
        return self.mlp(self.norm(features))
