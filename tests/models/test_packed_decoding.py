"""Decoding only the kept slots (packed) equals decoding every slot: outputs and gradients.

Each decoder is built twice with the same weights, once packing (the default) and once at the fixed
shape b·k (``pack_kept_slots=False``); both honour the same keep mask.
"""

from __future__ import annotations

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metaslot.models.decoders import AttentionColourDecoderSpec, BroadcastPixelDecoderSpec, MLPDecoderSpec
from metaslot.models.masks import SoftKeep
from metaslot.ops.packing import kept_slot_index, unpack_slots

WIDTH = 6
IMAGE = 8


def _build(kind: str, pack: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "mlp":
        spec = MLPDecoderSpec(hidden_channels=(8, 8), pack_kept_slots=pack)
        return spec.build(slot_dim=WIDTH, feature_dim=3, num_tokens=5)
    if kind == "pixel":
        spec = BroadcastPixelDecoderSpec(
            hidden_channels=4, broadcast_size=2, num_convs=1, pack_kept_slots=pack
        )
        return spec.build(slot_dim=WIDTH, image_size=IMAGE)
    return AttentionColourDecoderSpec(pack_kept_slots=pack).build(slot_dim=WIDTH, image_size=IMAGE)


def _decode(decoder: torch.nn.Module, kind: str, slots, keep, attention):
    if kind == "colour":
        return decoder.paint(slots, attention, keep)
    return decoder(slots, keep)


def _run(kind: str, pack: bool, slots, keep, attention):
    """Output, d(loss)/d(slots) and every parameter's gradient of one decode."""
    decoder = _build(kind, pack)
    slots = slots.clone().requires_grad_(True)
    attention = attention.clone().requires_grad_(True)
    output = _decode(decoder, kind, slots, keep, attention)
    weights = torch.linspace(-1.0, 1.0, output.reconstruction.numel()).reshape(output.reconstruction.shape)
    ((output.reconstruction * weights).sum() + output.alpha.square().sum()).backward()
    gradients = {name: parameter.grad for name, parameter in decoder.named_parameters()}
    return output, slots.grad, attention.grad, gradients


def _inputs(batch: int, num_slots: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    slots = torch.randn(batch, num_slots, WIDTH, generator=generator)
    attention = torch.rand(batch, num_slots, IMAGE, IMAGE, generator=generator).softmax(dim=1)
    return slots, attention


def _check_equal(kind: str, slots, keep, attention) -> None:
    packed, packed_slots_grad, packed_attention_grad, packed_grads = _run(kind, True, slots, keep, attention)
    full, full_slots_grad, full_attention_grad, full_grads = _run(kind, False, slots, keep, attention)
    torch.testing.assert_close(packed.reconstruction, full.reconstruction, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.alpha, full.alpha, atol=1e-6, rtol=1e-5)
    assert (packed.alpha[~keep] == 0).all()  # exactly zero, not merely small
    if hasattr(packed, "rgb"):
        torch.testing.assert_close(packed.rgb[keep], full.rgb[keep], atol=1e-5, rtol=1e-5)
        assert (packed.rgb[~keep] == 0).all()
    torch.testing.assert_close(packed_slots_grad, full_slots_grad, atol=1e-5, rtol=1e-5)
    assert (packed_slots_grad[~keep] == 0).all()
    torch.testing.assert_close(packed_attention_grad, full_attention_grad, atol=1e-5, rtol=1e-5)
    assert packed_grads.keys() == full_grads.keys()
    for name, gradient in packed_grads.items():
        torch.testing.assert_close(gradient, full_grads[name], atol=1e-5, rtol=1e-5, msg=name)


KINDS = ("mlp", "pixel", "colour")


@pytest.mark.parametrize("kind", KINDS)
def test_packed_equals_full_with_one_slot_kept_and_all_kept(kind: str) -> None:
    # Image 0 keeps one slot, image 1 all four, image 2 two.
    keep = torch.tensor([[False, False, True, False], [True, True, True, True], [True, False, False, True]])
    slots, attention = _inputs(3, 4, seed=1)
    _check_equal(kind, slots, keep, attention)


@pytest.mark.parametrize("kind", KINDS)
def test_packed_equals_full_when_every_image_keeps_every_slot(kind: str) -> None:
    slots, attention = _inputs(2, 3, seed=2)
    _check_equal(kind, slots, torch.ones(2, 3, dtype=torch.bool), attention)


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 3), num_slots=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_packed_equals_full_for_any_keep_mask(kind: str, batch: int, num_slots: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(batch, num_slots, generator=generator) < 0.5
    keep[torch.arange(batch), torch.randint(num_slots, (batch,), generator=generator)] = True
    slots, attention = _inputs(batch, num_slots, seed)
    _check_equal(kind, slots, keep, attention)


def _rows_seen_by_first_layer(decoder: torch.nn.Module, kind: str, slots, keep) -> int:
    """How many slots the decoder's first layer decoded (MLP input ``… n d``, conv input ``s d h w``)."""
    first = decoder.mlp[0] if kind == "mlp" else decoder.layers[0]
    seen: list[int] = []
    handle = first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    try:
        decoder(slots, keep)
    finally:
        handle.remove()
    shape = seen[0]
    return shape[:-2].numel() if kind == "mlp" else shape[0]


@pytest.mark.parametrize("kind", ("mlp", "pixel"))
def test_only_kept_slots_reach_the_decoder_and_never_without_a_keep_mask(kind: str) -> None:
    """Packing really skips the pruned slots; keep None (the reference mode, honour_keep_downstream=False)
    and pack_kept_slots=False decode all b·k."""
    slots, _ = _inputs(2, 3, seed=3)
    keep = torch.tensor([[True, False, False], [True, True, False]])
    packed = _build(kind, True)
    assert _rows_seen_by_first_layer(packed, kind, slots, keep) == 3
    assert _rows_seen_by_first_layer(packed, kind, slots, None) == 6
    assert _rows_seen_by_first_layer(_build(kind, False), kind, slots, keep) == 6


@pytest.mark.parametrize("kind", ("mlp", "pixel"))
def test_a_soft_keep_is_never_packed(kind: str) -> None:
    """AdaSlot's straight-through keep weight gets its gradient through the dropped slots' decodes."""
    slots, _ = _inputs(2, 3, seed=4)
    keep = torch.tensor([[True, False, False], [True, True, False]])
    soft = SoftKeep(weight=keep.float().requires_grad_(True), mode="mask_normalized")
    decoder = _build(kind, True)
    first = decoder.mlp[0] if kind == "mlp" else decoder.layers[0]
    seen: list[torch.Size] = []
    handle = first.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape))
    try:
        decoder(slots, keep, soft)
    finally:
        handle.remove()
    assert (seen[0][:-2].numel() if kind == "mlp" else seen[0][0]) == 6


def test_kept_slot_index_and_unpack_by_hand() -> None:
    keep = torch.tensor([[False, True, True], [True, False, False]])
    index = kept_slot_index(keep)
    assert index.tolist() == [1, 2, 3]
    packed = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    full = unpack_slots(packed, index, batch=2, num_slots=3, fill=-7.0)
    expected = [[[-7.0, -7.0], [1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [-7.0, -7.0], [-7.0, -7.0]]]
    assert full.tolist() == expected
    full.sum().backward()
    assert packed.grad.tolist() == [[1.0, 1.0]] * 3


def test_the_flag_reaches_the_built_decoder() -> None:
    spec = MLPDecoderSpec(hidden_channels=(4,))
    assert spec.pack_kept_slots and not attrs.evolve(spec, pack_kept_slots=False).pack_kept_slots
    assert not AttentionColourDecoderSpec(pack_kept_slots=False).build(4, 8).spec.pack_kept_slots
