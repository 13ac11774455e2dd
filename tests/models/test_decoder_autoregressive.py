"""SLATE's AR decoder: causality, pruned slots ignored, slot-order invariance, fully-masked rows."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.models.decoders.autoregressive import ARDecoderSpec, memory_padding


def tiny_decoder(**overrides: object):
    fields = dict(
        num_tokens=9,
        token_dim=6,
        slot_dim=5,
        vocabulary_size=11,
        width=8,
        num_layers=2,
        num_heads=2,
        feedforward=16,
    )
    fields.update(overrides)
    torch.manual_seed(0)
    return ARDecoderSpec(**fields).build().eval()


def test_reference_defaults() -> None:
    spec = ARDecoderSpec()
    assert (spec.width, spec.num_layers, spec.num_heads, spec.feedforward, spec.dropout) == (
        256,
        4,
        4,
        1024,
        0.0,
    )
    decoder = spec.build()
    assert decoder.readout.bias is None and decoder.readout.out_features == 4096
    # Tokens and slots of width 256 go in unprojected, as in the reference.
    assert isinstance(decoder.project_tokens, torch.nn.Identity)
    assert isinstance(decoder.project_slots, torch.nn.Identity)
    assert all(layer.linear1.bias is None for layer in decoder.layers)


def test_layers_start_from_different_weights() -> None:
    decoder = tiny_decoder()
    first, second = decoder.layers[0].linear1.weight, decoder.layers[1].linear1.weight
    assert not torch.equal(first, second)


def test_logits_shape_and_causality() -> None:
    decoder = tiny_decoder()
    tokens, slots = torch.randn(2, 9, 6), torch.randn(2, 3, 5)
    logits = decoder(tokens, slots)
    assert logits.shape == (2, 9, 11)
    changed = tokens.clone()
    changed[:, 4] += 1.0
    other = decoder(changed, slots)
    # Token 4 is input to positions 5.. only (the input sequence is [bos, tokens[:-1]]).
    assert torch.allclose(other[:, :5], logits[:, :5], atol=1e-6)
    assert not torch.allclose(other[:, 5], logits[:, 5])


def test_a_pruned_slot_changes_nothing() -> None:
    decoder = tiny_decoder()
    tokens, slots = torch.randn(2, 9, 6), torch.randn(2, 3, 5)
    keep = torch.tensor([[True, False, True], [True, True, False]])
    logits = decoder(tokens, slots, keep)
    changed = slots.clone()
    changed[0, 1] = 100.0
    changed[1, 2] = -7.0
    assert torch.equal(decoder(tokens, changed, keep), logits)
    # Without the mask the same change does move the logits (the test can fail).
    assert not torch.allclose(decoder(tokens, changed), decoder(tokens, slots))


@given(seed=st.integers(0, 2**16), num_slots=st.integers(1, 5), data=st.data())
def test_slot_order_does_not_matter(seed: int, num_slots: int, data: st.DataObject) -> None:
    decoder = tiny_decoder()
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randn(2, 9, 6, generator=generator)
    slots = torch.randn(2, num_slots, 5, generator=generator)
    keep = torch.rand(2, num_slots, generator=generator) < 0.6
    keep[:, 0] = True
    order = torch.tensor(data.draw(st.permutations(range(num_slots))))
    expected = decoder(tokens, slots, keep)
    assert torch.allclose(decoder(tokens, slots[:, order], keep[:, order]), expected, atol=1e-5)


def test_an_image_with_no_kept_slot_stays_finite() -> None:
    decoder = tiny_decoder()
    keep = torch.tensor([[False, False, False], [True, False, False]])
    assert torch.equal(memory_padding(keep), torch.tensor([[False, False, False], [False, True, True]]))
    logits = decoder(torch.randn(2, 9, 6), torch.randn(2, 3, 5), keep)
    assert torch.isfinite(logits).all()


def test_too_many_tokens_is_an_error_with_the_fix() -> None:
    with pytest.raises(ValueError, match="raise ARDecoderSpec.num_tokens"):
        tiny_decoder()(torch.randn(1, 10, 6), torch.randn(1, 2, 5))


def test_heads_must_divide_width() -> None:
    with pytest.raises(ValueError, match="must be positive and divide width"):
        ARDecoderSpec(width=10, num_heads=4)


def test_greedy_generation_is_self_consistent_and_sampling_is_seeded() -> None:
    decoder = tiny_decoder()
    slots, code_vectors = torch.randn(2, 3, 5), torch.randn(11, 6)
    keep = torch.tensor([[True, True, False], [True, False, True]])
    codes = decoder.generate(slots, code_vectors, keep)
    assert codes.shape == (2, 9) and codes.min() >= 0 and codes.max() < 11
    # Teacher forcing on the generated sequence picks the same codes again.
    logits = decoder(code_vectors[codes], slots, keep)
    assert torch.equal(logits.argmax(dim=-1), codes)
    first = decoder.generate(slots, code_vectors, keep, 1.0, torch.Generator().manual_seed(5))
    again = decoder.generate(slots, code_vectors, keep, 1.0, torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        decoder.generate(slots, code_vectors, keep, -1.0)
