"""Masked slot attention: masking, normalisation, slot-count invariance, equivariance, numerics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.ops import feature_space_is_cheaper, feature_space_slot_attention, masked_slot_attention

sizes = st.integers(min_value=1, max_value=4)


def random_inputs(seed: int, batch: int, slots: int, tokens: int, width: int):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(batch, slots, width, generator=generator)
    keys = torch.randn(batch, tokens, width, generator=generator)
    values = torch.randn(batch, tokens, width, generator=generator)
    keep = torch.rand(batch, slots, generator=generator) < 0.6
    return queries, keys, values, keep


@given(seed=st.integers(0, 2**31), batch=sizes, slots=st.integers(1, 6), tokens=sizes, width=sizes)
def test_pruned_slots_get_nothing_and_kept_slots_share_every_token(seed, batch, slots, tokens, width):
    queries, keys, values, keep = random_inputs(seed, batch, slots, tokens, width)
    updates, attention = masked_slot_attention(queries, keys, values, keep)
    assert torch.all(attention[~keep] == 0)
    assert torch.all(updates[~keep] == 0)
    column_sums = attention.sum(dim=1)  # b n
    expected = keep.any(dim=1, keepdim=True).float().expand_as(column_sums)
    torch.testing.assert_close(column_sums, expected)
    assert torch.isfinite(updates).all() and torch.isfinite(attention).all()


@given(
    seed=st.integers(0, 2**31),
    batch=sizes,
    slots=st.integers(1, 4),
    tokens=sizes,
    width=sizes,
    extra=st.integers(1, 4),
)
def test_appending_pruned_slots_changes_nothing_for_the_others(seed, batch, slots, tokens, width, extra):
    queries, keys, values, keep = random_inputs(seed, batch, slots, tokens, width)
    updates, attention = masked_slot_attention(queries, keys, values, keep)
    junk = 100.0 * torch.randn(batch, extra, width, generator=torch.Generator().manual_seed(seed + 1))
    more_queries = torch.cat([queries, junk], dim=1)
    more_keep = torch.cat([keep, torch.zeros(batch, extra, dtype=torch.bool)], dim=1)
    more_updates, more_attention = masked_slot_attention(more_queries, keys, values, more_keep)
    torch.testing.assert_close(more_updates[:, :slots], updates)
    torch.testing.assert_close(more_attention[:, :slots], attention)
    assert torch.all(more_attention[:, slots:] == 0) and torch.all(more_updates[:, slots:] == 0)


@given(seed=st.integers(0, 2**31), batch=sizes, slots=st.integers(1, 6), tokens=sizes, width=sizes)
def test_permuting_slots_permutes_outputs(seed, batch, slots, tokens, width):
    queries, keys, values, keep = random_inputs(seed, batch, slots, tokens, width)
    permutation = torch.randperm(slots, generator=torch.Generator().manual_seed(seed))
    updates, attention = masked_slot_attention(queries, keys, values, keep)
    permuted_updates, permuted_attention = masked_slot_attention(
        queries[:, permutation], keys, values, keep[:, permutation]
    )
    torch.testing.assert_close(permuted_updates, updates[:, permutation])
    torch.testing.assert_close(permuted_attention, attention[:, permutation])


def test_without_keep_equals_all_kept():
    queries, keys, values, _ = random_inputs(3, 2, 3, 5, 4)
    all_kept = torch.ones(2, 3, dtype=torch.bool)
    for unmasked, masked in zip(
        masked_slot_attention(queries, keys, values),
        masked_slot_attention(queries, keys, values, all_kept),
        strict=True,
    ):
        torch.testing.assert_close(unmasked, masked)


def test_all_pruned_row_gives_zeros_and_finite_gradients():
    queries, keys, values, _ = random_inputs(0, 2, 3, 4, 5)
    queries.requires_grad_(True)
    keep = torch.tensor([[False, False, False], [True, False, True]])
    updates, attention = masked_slot_attention(queries, keys, values, keep)
    assert torch.all(attention[0] == 0) and torch.all(updates[0] == 0)
    (updates.sum() + attention.sum()).backward()
    assert torch.isfinite(queries.grad).all()
    assert torch.all(queries.grad[0] == 0)


def test_hand_computed_one_token_two_slots():
    # d = 4, so logits are q·k / 2: slot 0 → 2·1/2 = 1, slot 1 → 0.
    queries = torch.tensor([[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    keys = torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    values = torch.tensor([[[3.0, -1.0, 0.0, 2.0]]])
    updates, attention = masked_slot_attention(queries, keys, values, epsilon=1e-5)
    first = math.e / (math.e + 1.0)
    torch.testing.assert_close(attention, torch.tensor([[[first], [1.0 - first]]]))
    # One token: each slot's weight is a/(a + ε), nearly 1, times the only value.
    weights = torch.tensor([first / (first + 1e-5), (1 - first) / (1 - first + 1e-5)])
    torch.testing.assert_close(updates, weights[None, :, None] * values)


def test_float32_logits_under_bfloat16_autocast():
    queries, keys, values, keep = random_inputs(1, 2, 3, 6, 8)
    keep[:, 0] = True
    reference_updates, reference_attention = masked_slot_attention(queries, keys, values, keep)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        updates, attention = masked_slot_attention(queries, keys, values.bfloat16(), keep)
    assert attention.dtype == torch.float32
    assert updates.dtype == torch.bfloat16
    torch.testing.assert_close(attention, reference_attention)  # full float32 precision, not bf16
    torch.testing.assert_close(updates.float(), reference_updates, atol=2e-2, rtol=2e-2)


def test_rejects_non_positive_epsilon():
    queries, keys, values, _ = random_inputs(0, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="epsilon"):
        masked_slot_attention(queries, keys, values, epsilon=0.0)


@given(
    seed=st.integers(0, 2**31),
    batch=sizes,
    slots=st.integers(1, 5),
    tokens=sizes,
    width=sizes,
    channels=sizes,
)
def test_feature_space_read_out_equals_projecting_the_features(seed, batch, slots, tokens, width, channels):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(batch, slots, width, generator=generator, requires_grad=True)
    features = torch.randn(batch, tokens, channels, generator=generator, requires_grad=True)
    key_weight = torch.randn(width, channels, generator=generator, requires_grad=True)
    value_weight = torch.randn(width, channels, generator=generator, requires_grad=True)
    keep = torch.rand(batch, slots, generator=generator) < 0.6
    inputs = (queries, features, key_weight, value_weight)

    def gradients(updates, attention):
        loss = (
            updates * torch.linspace(-1, 1, updates.numel()).view_as(updates)
        ).sum() + attention.sin().sum()
        return torch.autograd.grad(loss, inputs)

    expected = masked_slot_attention(queries, features @ key_weight.T, features @ value_weight.T, keep)
    updates, attention = feature_space_slot_attention(queries, features, key_weight, value_weight, keep)
    torch.testing.assert_close(attention, expected[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(updates, expected[0], rtol=1e-4, atol=1e-4)
    for got, want in zip(gradients(updates, attention), gradients(*expected), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)


def test_feature_space_is_cheaper_when_slot_read_outs_are_few_next_to_tokens():
    # With c = d the comparison is T·k < n.
    assert feature_space_is_cheaper(tokens=256, feature_dim=256, slot_dim=256, num_slots=6, num_iterations=6)
    assert not feature_space_is_cheaper(tokens=30, feature_dim=64, slot_dim=64, num_slots=6, num_iterations=6)
    assert not feature_space_is_cheaper(tokens=36, feature_dim=64, slot_dim=64, num_slots=6, num_iterations=6)
    assert feature_space_is_cheaper(tokens=37, feature_dim=64, slot_dim=64, num_slots=6, num_iterations=6)
    # Wide features make every feature-space read-out dearer; more read-outs tip the balance.
    assert feature_space_is_cheaper(tokens=196, feature_dim=768, slot_dim=256, num_slots=7, num_iterations=6)
    assert not feature_space_is_cheaper(
        tokens=196, feature_dim=768, slot_dim=256, num_slots=7, num_iterations=60
    )
