"""The noisy read-out of MetaSlot's stage 1 draws b·n·k + b·k·c normals instead of b·n·c, with the same
joint distribution of updates and attention as adding b·n·c unit noise to the features.

Checked on one small image repeated 40 000 times (one draw each): means and covariances of every
output value agree with the full draw within sampling error, and the same comparison tells a 15 %
larger noise scale apart (so it can fail).
"""

from __future__ import annotations

import math

import pytest
import torch

from metaslot.ops.attention import feature_space_slot_attention, noisy_feature_space_slot_attention

SAMPLES, SLOTS, TOKENS, CHANNELS, WIDTH = 40_000, 3, 5, 4, 4


def _case():
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(1, SLOTS, WIDTH, generator=generator).expand(SAMPLES, -1, -1)
    features = torch.randn(1, TOKENS, CHANNELS, generator=generator).expand(SAMPLES, -1, -1)
    key_weight = torch.randn(WIDTH, CHANNELS, generator=generator)
    value_weight = torch.randn(WIDTH, CHANNELS, generator=generator)
    keep = torch.tensor([[True, False, True]]).expand(SAMPLES, -1)
    return queries, features, key_weight, value_weight, keep


def _moments(updates: torch.Tensor, attention: torch.Tensor):
    values = torch.cat([updates.flatten(1), attention.flatten(1)], dim=1).double()
    return values.mean(dim=0), torch.cov(values.T), values.std(dim=0)


def _full_draw(sigma: float, seed: int):
    queries, features, key_weight, value_weight, keep = _case()
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(features.shape, generator=generator)
    return feature_space_slot_attention(queries, features + sigma * noise, key_weight, value_weight, keep)


def _agree(first, second) -> bool:
    mean_1, covariance_1, spread = _moments(*first)
    mean_2, covariance_2, _ = _moments(*second)
    standard_error = spread * math.sqrt(2.0 / SAMPLES) + 1e-12
    means_agree = bool(((mean_1 - mean_2).abs() / standard_error).max() < 5.0)
    covariances_agree = bool((covariance_1 - covariance_2).abs().max() < 0.05 * covariance_1.abs().max())
    return means_agree and covariances_agree


def test_reduced_draws_have_the_distribution_of_full_feature_noise() -> None:
    queries, features, key_weight, value_weight, keep = _case()
    with torch.no_grad():
        full = _full_draw(0.7, seed=1)
        reduced = noisy_feature_space_slot_attention(
            queries, features, key_weight, value_weight, 0.7, keep, generator=torch.Generator().manual_seed(2)
        )
        louder = _full_draw(0.8, seed=3)
    assert (reduced[1][:, 1] == 0).all()  # the pruned slot still gets no attention
    assert _agree(full, reduced)
    assert not _agree(full, louder)


def test_refuses_to_run_where_a_gradient_would_be_taken() -> None:
    queries, features, key_weight, value_weight, keep = _case()
    with pytest.raises(ValueError, match="without autograd"):
        noisy_feature_space_slot_attention(
            queries[:2].requires_grad_(True), features[:2], key_weight, value_weight, 0.5, keep[:2]
        )
