"""Nearest-prototype quantisation: exactness, gradient routing, Gumbel draws, float32 distances."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.ops import quantize, squared_distances

sizes = st.integers(1, 5)


def brute_force_distances(slots: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return (slots[..., None, :].double() - codebook.double()).square().sum(dim=-1)  # b k m


@given(seed=st.integers(0, 2**31), batch=sizes, slots=sizes, width=sizes, codes=st.integers(1, 9))
def test_equals_brute_force_argmin(seed, batch, slots, width, codes):
    generator = torch.Generator().manual_seed(seed)
    slot_tensor = torch.randn(batch, slots, width, generator=generator)
    codebook = torch.randn(codes, width, generator=generator)
    result = quantize(slot_tensor, codebook)
    distances = brute_force_distances(slot_tensor, codebook)
    chosen = distances.gather(-1, result.codes[..., None]).squeeze(-1)
    # Exact up to float32 rounding of the expanded form (ties are measure-zero for random data).
    torch.testing.assert_close(chosen, distances.min(dim=-1).values, atol=1e-5, rtol=1e-5)
    assert torch.equal(result.prototypes, codebook[result.codes])
    assert result.codes.dtype == torch.long and result.codes.shape == (batch, slots)


def test_gradient_reaches_used_codebook_rows_and_not_slots():
    generator = torch.Generator().manual_seed(0)
    codebook = torch.randn(8, 3, generator=generator, requires_grad=True)
    slots = torch.randn(2, 3, 3, generator=generator, requires_grad=True)
    result = quantize(slots, codebook)
    (result.prototypes * torch.randn(2, 3, 3, generator=generator)).sum().backward()
    assert slots.grad is None
    used = torch.zeros(8, dtype=torch.bool)
    used[result.codes.flatten()] = True
    assert torch.all(codebook.grad[~used] == 0)
    assert torch.all(codebook.grad[used].abs().sum(dim=-1) > 0)


def test_gumbel_is_reproducible_with_a_seeded_generator_and_random_without_gaps():
    slots = torch.zeros(4, 8, 2)
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # all equally far
    first = quantize(slots, codebook, gumbel=True, generator=torch.Generator().manual_seed(7)).codes
    second = quantize(slots, codebook, gumbel=True, generator=torch.Generator().manual_seed(7)).codes
    other = quantize(slots, codebook, gumbel=True, generator=torch.Generator().manual_seed(8)).codes
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert len(set(first.flatten().tolist())) > 1  # ties are broken at random, not always code 0


def test_gumbel_equals_argmin_when_gaps_are_large():
    generator = torch.Generator().manual_seed(1)
    codebook = 100.0 * torch.randn(6, 4, generator=generator)
    slots = codebook[torch.tensor([[0, 5, 2], [3, 3, 1]])] + 0.01 * torch.randn(2, 3, 4, generator=generator)
    gumbel = quantize(slots, codebook, gumbel=True, generator=generator).codes
    assert torch.equal(gumbel, quantize(slots, codebook).codes)
    assert torch.equal(gumbel, torch.tensor([[0, 5, 2], [3, 3, 1]]))


def test_squared_distances_are_float32_and_non_negative_under_autocast():
    generator = torch.Generator().manual_seed(2)
    vectors = torch.randn(5, 16, generator=generator)
    codebook = torch.cat([vectors[:2], torch.randn(3, 16, generator=generator)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        distances = squared_distances(vectors, codebook)
    assert distances.dtype == torch.float32
    assert torch.all(distances >= 0)
    expected = brute_force_distances(vectors[None], codebook)[0].float()
    torch.testing.assert_close(distances, expected, atol=1e-4, rtol=1e-5)
