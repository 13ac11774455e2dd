"""SPOT's nine patch orders (Kakogeorgiou et al., CVPR 2024): the sequences in which its autoregressive
decoder visits the tokens of an h×w grid.

An order is a permutation of the raster indices 0..h·w−1: ``tokens[:, order]`` puts the grid in that
order and ``sequence[:, inverse_order(order)]`` puts a sequence decoded in that order back in raster
order. The nine are, in SPOT's (and the MetaSlot reference's ``AR9TransformerDecoder``) numbering:
raster; column-major from the top left; column-major from the top right; row-major with the columns
reversed; column-major from the bottom right; row-major from the bottom right; column-major from the
bottom left; row-major from the bottom left; and a spiral that ends in the top-right corner.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from metaslot.errors import ConfigError

ORDER_NAMES = (
    "raster",
    "top-left, column-major",
    "top-right, column-major",
    "top-right, row-major",
    "bottom-right, column-major",
    "bottom-right, row-major",
    "bottom-left, column-major",
    "bottom-left, row-major",
    "spiral",
)
"""One name per order, in SPOT's numbering (order 0 is the one SPOT and the reference evaluate with)."""


def _spiral(grid: Int[Tensor, "h w"]) -> Int[Tensor, " n"]:
    """SPOT's ``spiral_pattern(how='top_right')`` reversed: peel the first row of the grid rotated a
    quarter turn anticlockwise, turn the rest a quarter anticlockwise, repeat; then reverse the sequence."""
    rest = torch.rot90(grid, 1, dims=(0, 1))
    pieces = []
    while rest.numel():
        pieces.append(rest[0])
        rest = torch.rot90(rest[1:], 1, dims=(0, 1))
    return torch.cat(pieces).flip(0)


def spot_orders(height: int, width: int) -> Int[Tensor, "9 n"]:
    """The nine patch orders of an ``height``×``width`` token grid (row ``i`` is order ``i``)."""
    if height < 1 or width < 1:
        raise ConfigError(f"the token grid must be at least 1×1, got {height}×{width}")
    grid = torch.arange(height * width).reshape(height, width)
    rows_reversed = grid.flip(0)
    columns_reversed = grid.flip(1)
    orders = [
        grid.flatten(),
        grid.t().flatten(),
        columns_reversed.t().flatten(),
        columns_reversed.flatten(),
        grid.flip(0, 1).t().flatten(),
        grid.flip(0, 1).flatten(),
        rows_reversed.t().flatten(),
        rows_reversed.flatten(),
        _spiral(grid),
    ]
    return torch.stack(orders)


def inverse_order(order: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
    """The permutation that undoes ``order``: ``sequence[order][inverse_order(order)] == sequence``."""
    return order.argsort()
