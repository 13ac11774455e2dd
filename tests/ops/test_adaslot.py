"""AdaSlot's selection ops: hand-computed cases and properties of the keep mask, the lower bound, the
temperature schedule, the sparsity penalty and the keep-weighted alpha in its three mask modes."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metaslot.ops.adaslot import (
    argmax_keep,
    gumbel_keep,
    keep_weighted_alpha,
    keep_weighted_probabilities,
    lower_bound_keep,
    sparsity_penalty,
    temperature,
)

MODES = ("mask_normalized", "logit", "mask")


@given(batch=st.integers(1, 3), slots=st.integers(1, 6), seed=st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_gumbel_keep_is_hard_and_repeatable_with_a_generator(batch: int, slots: int, seed: int) -> None:
    logits = torch.randn(batch, slots, 2, generator=torch.Generator().manual_seed(seed))
    first = gumbel_keep(logits, 1.0, torch.Generator().manual_seed(seed + 1))
    second = gumbel_keep(logits, 1.0, torch.Generator().manual_seed(seed + 1))
    assert first.shape == (batch, slots)
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(first, second)


def test_gumbel_keep_follows_the_logits_and_passes_the_soft_gradient() -> None:
    # Keep logit 20 above the drop logit: the Gumbel noise (scale ~1) practically never flips it.
    logits = torch.tensor([[[0.0, 20.0], [20.0, 0.0]]], requires_grad=True)
    keep = gumbel_keep(logits, 1.0, torch.Generator().manual_seed(0))
    assert keep.tolist() == [[1.0, 0.0]]
    keep.sum().backward()
    # Straight-through: the gradient is the soft sample's, non-zero although the value is hard.
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gumbel_keep_samples_with_the_softmax_probability() -> None:
    # P(keep) = softmax(logits)[1] = sigmoid(1) ≈ 0.731 for logits (0, 1), at any temperature 1 sample.
    logits = torch.tensor([0.0, 1.0]).expand(1, 20_000, 2)
    keep = gumbel_keep(logits, 1.0, torch.Generator().manual_seed(3))
    assert abs(float(keep.mean()) - 1 / (1 + math.exp(-1))) < 0.015
    with pytest.raises(ValueError, match="positive"):
        gumbel_keep(logits, 0.0)


def test_argmax_keep_by_hand() -> None:
    logits = torch.tensor([[[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]]])
    assert argmax_keep(logits).tolist() == [[1.0, 0.0, 0.0]]  # a tie drops, as argmax picks index 0


def test_lower_bound_switches_on_dropped_slots_only_until_the_bound() -> None:
    keep = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    bounded = lower_bound_keep(keep, 2, torch.Generator().manual_seed(0))
    assert bounded.sum(dim=1).tolist() == [2.0, 2.0, 3.0]
    assert torch.all(bounded >= keep)  # kept slots stay kept
    assert torch.equal(lower_bound_keep(keep, 0), keep)
    # The added slots carry no gradient: the straight-through gradient of the sample is untouched.
    weight = keep.clone().requires_grad_(True)
    lower_bound_keep(weight, 2).sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(keep))


def test_temperature_constant_and_cosine() -> None:
    assert temperature(500, "constant", 1.0, 0.5, 100) == 1.0
    assert temperature(0, "cosine", 1.0, 0.5, 100) == pytest.approx(1.0)
    assert temperature(50, "cosine", 1.0, 0.5, 100) == pytest.approx(0.75)
    assert temperature(100, "cosine", 1.0, 0.5, 100) == pytest.approx(0.5)
    assert temperature(1_000, "cosine", 1.0, 0.5, 100) == pytest.approx(0.5)
    as_tensor = temperature(torch.tensor(50), "cosine", 1.0, 0.5, 100)
    assert isinstance(as_tensor, torch.Tensor) and float(as_tensor) == pytest.approx(0.75)


def test_sparsity_penalty_by_hand() -> None:
    keep = torch.tensor([[1.0, 0.0, 1.0, 1.0]])  # mean 0.75
    assert float(sparsity_penalty(keep, 0.1)) == pytest.approx(0.075)
    assert float(sparsity_penalty(keep, 0.1, quadratic=2.0, bias=0.5)) == pytest.approx(0.075 + 2 * 0.0625)


def test_keep_weighted_alpha_by_hand() -> None:
    # Two slots, one pixel; softmax of (0, ln 3) is (0.25, 0.75).
    logits = torch.tensor([[[0.0], [math.log(3.0)], [0.0]]])
    keep = torch.tensor([[1.0, 0.0, 1.0]])
    # Softmax over three: (1/5, 3/5, 1/5); dropping the middle leaves (1/5, 0, 1/5).
    masked = keep_weighted_alpha(logits, keep, "mask")
    assert masked[0, :, 0].tolist() == pytest.approx([0.2, 0.0, 0.2])
    normalised = keep_weighted_alpha(logits, keep, "mask_normalized")
    assert normalised[0, :, 0].tolist() == pytest.approx([0.5, 0.0, 0.5], abs=1e-4)
    logit = keep_weighted_alpha(logits, keep, "logit")
    assert logit[0, :, 0].tolist() == pytest.approx([0.5, 0.0, 0.5])


@pytest.mark.parametrize("mode", MODES)
@given(seed=st.integers(0, 2**16))
@settings(max_examples=15, deadline=None)
def test_dropped_slots_get_zero_alpha_and_the_gradient_reaches_keep(mode: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, 3, 3, generator=generator)
    keep = (torch.rand(2, 5, generator=generator) < 0.5).float()
    keep[0, :2] = 1.0  # at least two kept slots in the first image (see the logit mode's docstring)
    keep[1] = 0.0  # none in the second
    weight = keep.clone().requires_grad_(True)
    alpha = keep_weighted_alpha(logits, weight, mode)
    assert torch.all(alpha[keep == 0] == 0)  # every dropped slot, every pixel
    assert torch.all(alpha[1] == 0)  # nothing kept: nothing owns a pixel
    if mode != "mask":  # mask_normalized divides by the kept mass + 1e-5, so only nearly one
        assert torch.allclose(alpha[0].sum(dim=0), torch.ones(3, 3), atol=1e-2)
    (alpha * torch.randn(alpha.shape, generator=generator)).sum().backward()
    assert weight.grad is not None and weight.grad[0].abs().sum() > 0


@pytest.mark.parametrize("mode", MODES)
def test_probabilities_variant_matches_the_logit_one(mode: str) -> None:
    logits = torch.randn(2, 4, 5)
    keep = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    from_logits = keep_weighted_alpha(logits, keep, mode)
    from_probabilities = keep_weighted_probabilities(logits.softmax(dim=1), keep, mode)
    assert torch.allclose(from_logits, from_probabilities, atol=1e-4)
