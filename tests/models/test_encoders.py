"""CNN encoder and projection MLP: shapes, grid arithmetic, position dependence, gradients, spec errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.models.encoders import CNNEncoderSpec, ProjectionSpec
from metaslot.models.encoders.cnn import position_grid


@given(
    height=st.integers(4, 20),
    width=st.integers(4, 20),
    strides=st.lists(st.integers(1, 3), min_size=1, max_size=3),
)
def test_cnn_tokens_match_grid_size(height: int, width: int, strides: list[int]) -> None:
    spec = CNNEncoderSpec(channels=(4,) * len(strides), kernel_size=3, strides=tuple(strides))
    encoder = spec.build()
    tokens = encoder(torch.randn(2, 3, height, width))
    grid_height, grid_width = encoder.grid_size(height, width)
    assert tokens.shape == (2, grid_height * grid_width, 4)
    assert torch.isfinite(tokens).all()


def test_default_cnn_is_the_slot_attention_encoder() -> None:
    encoder = CNNEncoderSpec().build()
    convolutions = [m for m in encoder.convolutions if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convolutions] == [(64, (5, 5), (1, 1))] * 4
    assert encoder.grid_size(64, 48) == (64, 48)
    assert encoder.out_channels == 64


def test_position_grid_corners() -> None:
    grid = position_grid(3, 5)
    assert grid.shape == (3, 5, 4)
    torch.testing.assert_close(grid[0, 0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(grid[-1, -1], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(grid[1, 2], torch.tensor([0.5, 0.5, 0.5, 0.5]))


def test_position_embedding_breaks_translation_symmetry() -> None:
    """A constant image gives different tokens at different places only through the position embedding."""
    encoder = CNNEncoderSpec(channels=(4, 4), kernel_size=3).build()
    tokens = encoder(torch.ones(1, 3, 6, 6))
    assert not torch.allclose(tokens[0, 0], tokens[0, 14])


def test_cnn_gradients_reach_every_parameter() -> None:
    encoder = CNNEncoderSpec(channels=(4, 4), kernel_size=3, strides=(2, 1)).build()
    encoder(torch.randn(2, 3, 8, 8)).square().mean().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(channels=()), "channels"),
        (dict(channels=(4, 0)), "channels"),
        (dict(kernel_size=4), "odd"),
        (dict(channels=(4, 4), strides=(1,)), "one entry per conv layer"),
    ],
)
def test_cnn_spec_rejects_bad_fields(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CNNEncoderSpec(**fields)


def test_projection_is_reference_mlp_with_zero_biases() -> None:
    projection = ProjectionSpec().build(in_channels=6, out_channels=5)
    norm, first, _, last = projection.mlp
    assert isinstance(norm, torch.nn.LayerNorm) and norm.normalized_shape == (6,)
    assert (first.in_features, first.out_features, last.out_features) == (6, 12, 5)
    assert first.bias.abs().sum() == 0 and last.bias.abs().sum() == 0
    tokens = torch.randn(2, 7, 6)
    assert projection(tokens).shape == (2, 7, 5)


def test_projection_without_layer_norm() -> None:
    projection = ProjectionSpec(hidden_multiplier=1, layer_norm=False).build(in_channels=3, out_channels=2)
    assert isinstance(projection.mlp[0], torch.nn.Identity)
    with pytest.raises(ValueError, match="hidden_multiplier"):
        ProjectionSpec(hidden_multiplier=0)
