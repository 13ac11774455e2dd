"""SPOT's nine patch orders: permutations of the grid, undone by their inverses, hand-checked on 3×3."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.ops.patch_orders import ORDER_NAMES, inverse_order, spot_orders


@given(height=st.integers(1, 9), width=st.integers(1, 9))
def test_every_order_is_a_permutation_of_the_grid_and_its_inverse_restores_raster_order(
    height: int, width: int
) -> None:
    orders = spot_orders(height, width)
    assert orders.shape == (len(ORDER_NAMES), height * width)
    raster = torch.arange(height * width)
    tokens = torch.randn(2, height * width, 3)
    for order in orders:
        assert torch.equal(order.sort().values, raster)
        assert torch.equal(order[inverse_order(order)], raster)
        assert torch.equal(tokens[:, order][:, inverse_order(order)], tokens)


def test_the_nine_orders_of_a_3x3_grid() -> None:
    """Worked out by hand on the grid 0 1 2 / 3 4 5 / 6 7 8."""
    expected = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8],  # raster
        [0, 3, 6, 1, 4, 7, 2, 5, 8],  # top-left, down the columns
        [2, 5, 8, 1, 4, 7, 0, 3, 6],  # top-right, down the columns right to left
        [2, 1, 0, 5, 4, 3, 8, 7, 6],  # rows, each right to left
        [8, 5, 2, 7, 4, 1, 6, 3, 0],  # bottom-right, up the columns right to left
        [8, 7, 6, 5, 4, 3, 2, 1, 0],  # raster reversed
        [6, 3, 0, 7, 4, 1, 8, 5, 2],  # bottom-left, up the columns
        [6, 7, 8, 3, 4, 5, 0, 1, 2],  # rows bottom to top, each left to right
        [4, 1, 0, 3, 6, 7, 8, 5, 2],  # spiral from the centre out, ending top right
    ]
    assert spot_orders(3, 3).tolist() == expected


def test_the_orders_differ_on_a_grid_larger_than_one_token() -> None:
    orders = spot_orders(4, 4)
    assert len({tuple(order.tolist()) for order in orders}) == 9
