"""The attention-colour decoder: each slot paints one colour through its attention mask."""

from __future__ import annotations

import torch

from metaslot.models.decoders import AttentionColourDecoderSpec


def _decoder_with_identity_colours():
    decoder = AttentionColourDecoderSpec().build(slot_dim=3, image_size=2)
    with torch.no_grad():
        decoder.colour.weight.copy_(torch.eye(3))
        decoder.colour.bias.zero_()
    return decoder


def test_reconstruction_by_hand() -> None:
    # Slot 0 (red) owns the left column, slot 1 (blue) the right one; the top-right pixel is shared.
    decoder = _decoder_with_identity_colours()
    slots = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    attention = torch.tensor([[[[1.0, 0.5], [1.0, 0.0]], [[0.0, 0.5], [0.0, 1.0]]]])
    output = decoder.paint(slots, attention)
    expected = torch.tensor([[[[1.0, 0.5], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.0, 0.5], [0.0, 1.0]]]])
    torch.testing.assert_close(output.reconstruction, expected)
    torch.testing.assert_close(output.alpha, attention)
    torch.testing.assert_close(output.rgb[0, 1, :, 1, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_pruned_slot_paints_nothing_and_gets_no_gradient() -> None:
    decoder = _decoder_with_identity_colours()
    slots = torch.randn(1, 2, 3, requires_grad=True)
    attention = torch.full((1, 2, 2, 2), 0.5, requires_grad=True)
    keep = torch.tensor([[True, False]])
    output = decoder.paint(slots, attention, keep)
    assert (output.alpha[0, 1] == 0).all()
    torch.testing.assert_close(output.reconstruction[0], 0.5 * slots[0, 0, :, None, None].expand(3, 2, 2))
    output.reconstruction.sum().backward()
    assert slots.grad[0, 1].abs().sum() == 0 and slots.grad[0, 0].abs().sum() > 0
    assert attention.grad[0, 0].abs().sum() > 0  # the loss reaches the attention directly
