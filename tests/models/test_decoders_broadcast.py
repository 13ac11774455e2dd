"""Broadcast pixel and MLP decoders, the keep-aware slot alpha and the mask resizing."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.models.decoders import BroadcastPixelDecoderSpec, MLPDecoderSpec
from metaslot.models.masks import alpha_to_masks, attention_to_masks, slot_alpha


def _keep_with_one_live(batch: int, num_slots: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(batch, num_slots, generator=generator) < 0.5
    live = torch.randint(num_slots, (batch,), generator=generator)
    keep[torch.arange(batch), live] = True
    return keep


def _tiny_pixel_decoder(broadcast_size: int = 2, image_size: int = 8):
    torch.manual_seed(0)
    spec = BroadcastPixelDecoderSpec(hidden_channels=4, broadcast_size=broadcast_size, num_convs=1)
    return spec.build(slot_dim=6, image_size=image_size)


def _tiny_mlp_decoder(num_tokens: int = 5):
    torch.manual_seed(0)
    return MLPDecoderSpec(hidden_channels=(8, 8)).build(slot_dim=6, feature_dim=3, num_tokens=num_tokens)


DECODERS = {"pixel": _tiny_pixel_decoder, "mlp": _tiny_mlp_decoder}


@pytest.mark.parametrize("kind", DECODERS)
@given(batch=st.integers(1, 3), num_slots=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_pruned_slots_get_no_alpha_and_do_not_change_reconstruction(
    kind: str, batch: int, num_slots: int, seed: int
) -> None:
    decoder = DECODERS[kind]()
    keep = _keep_with_one_live(batch, num_slots, seed)
    slots = torch.randn(batch, num_slots, 6, generator=torch.Generator().manual_seed(seed))
    output = decoder(slots, keep)
    live_alpha = output.alpha.flatten(2).sum(dim=1)
    torch.testing.assert_close(live_alpha, torch.ones_like(live_alpha))
    pruned = ~keep
    assert (output.alpha[pruned] == 0).all()
    changed = torch.where(pruned[..., None], slots + 10.0 * torch.randn_like(slots), slots)
    torch.testing.assert_close(decoder(changed, keep).reconstruction, output.reconstruction)


@pytest.mark.parametrize("kind", DECODERS)
def test_keep_none_is_all_slots_live(kind: str) -> None:
    decoder = DECODERS[kind]()
    slots = torch.randn(2, 3, 6)
    everything = decoder(slots, torch.ones(2, 3, dtype=torch.bool))
    unmasked = decoder(slots, None)
    torch.testing.assert_close(everything.reconstruction, unmasked.reconstruction)
    torch.testing.assert_close(everything.alpha, unmasked.alpha)


@pytest.mark.parametrize("kind", DECODERS)
def test_slot_permutation_permutes_alpha_and_keeps_reconstruction(kind: str) -> None:
    decoder = DECODERS[kind]()
    slots = torch.randn(2, 4, 6)
    keep = torch.tensor([[True, False, True, True], [True, True, True, False]])
    permutation = torch.tensor([2, 0, 3, 1])
    output = decoder(slots, keep)
    permuted = decoder(slots[:, permutation], keep[:, permutation])
    torch.testing.assert_close(permuted.reconstruction, output.reconstruction, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(permuted.alpha, output.alpha[:, permutation], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", DECODERS)
def test_gradients_reach_every_decoder_parameter(kind: str) -> None:
    decoder = DECODERS[kind]()
    slots = torch.randn(2, 3, 6, requires_grad=True)
    decoder(
        slots, torch.tensor([[True, True, False], [True, True, True]])
    ).reconstruction.square().mean().backward()
    for name, parameter in decoder.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert slots.grad[0, 2].abs().sum() == 0  # the pruned slot gets no gradient


def test_pixel_decoder_shapes_for_both_variants() -> None:
    for broadcast_size, image_size in [(2, 8), (8, 8), (4, 16)]:
        decoder = _tiny_pixel_decoder(broadcast_size, image_size)
        output = decoder(torch.randn(2, 3, 6))
        assert output.reconstruction.shape == (2, 3, image_size, image_size)
        assert output.alpha.shape == (2, 3, image_size, image_size)
        assert output.rgb.shape == (2, 3, 3, image_size, image_size)
    full_resolution = _tiny_pixel_decoder(8, 8)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in full_resolution.layers)


def test_pixel_decoder_rejects_sizes_that_are_not_power_of_two_multiples() -> None:
    with pytest.raises(ValueError, match="power of two"):
        BroadcastPixelDecoderSpec(broadcast_size=8).build(slot_dim=4, image_size=24)


def test_mlp_decoder_structure_and_position_embedding() -> None:
    decoder = MLPDecoderSpec(hidden_channels=(16, 16, 16)).build(slot_dim=6, feature_dim=5, num_tokens=9)
    linears = [m for m in decoder.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 16), (16, 16), (16, 16), (16, 6)]
    assert sum(isinstance(m, torch.nn.GELU) for m in decoder.mlp) == 3
    assert decoder.position.shape == (1, 1, 9, 6)
    assert decoder.position.abs().max() <= 2.0 and decoder.position.std() > 0.5  # trunc-normal std 1, ±2
    output = decoder(torch.randn(2, 3, 6))
    assert output.reconstruction.shape == (2, 9, 5) and output.alpha.shape == (2, 3, 9)
    assert MLPDecoderSpec().hidden_channels == (2048, 2048, 2048)


def test_slot_alpha_of_an_image_without_live_slots_is_zero_and_finite() -> None:
    logits = torch.randn(2, 3, 4, requires_grad=True)
    keep = torch.tensor([[False, False, False], [True, False, True]])
    alpha = slot_alpha(logits, keep)
    assert (alpha[0] == 0).all()
    torch.testing.assert_close(alpha[1].sum(dim=0), torch.ones(4))
    alpha.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_attention_to_masks_by_hand() -> None:
    # Slot 0 owns the left column of a 2×2 grid, slot 1 the right one; slot 2 is pruned.
    attention = torch.tensor([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5]]])
    keep = torch.tensor([[True, True, False]])
    masks = attention_to_masks(attention, (2, 2), (4, 4), keep)
    assert masks.shape == (1, 3, 4, 4)
    torch.testing.assert_close(masks[0, 0, :, 0], torch.ones(4))
    torch.testing.assert_close(masks[0, 0, :, 3], torch.zeros(4))
    torch.testing.assert_close(masks[0, 0] + masks[0, 1], torch.ones(4, 4))
    assert (masks[0, 2] == 0).all()
    with pytest.raises(ValueError, match="grid"):
        attention_to_masks(attention, (3, 2), (4, 4), keep)


def test_alpha_to_masks_keeps_size_and_zeroes_pruned() -> None:
    alpha = torch.rand(2, 3, 5, 5)
    keep = torch.tensor([[True, False, True], [True, True, True]])
    masks = alpha_to_masks(alpha, (5, 5), keep)
    assert (masks[0, 1] == 0).all()
    torch.testing.assert_close(masks[1], alpha[1])
