"""Noise and pruning-probability schedules."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.ops import counter_uniform, noise_scale, prune_probability


def test_three_iterations_give_half_quarter_zero():
    assert [noise_scale(t, 3) for t in range(3)] == [0.5, 0.25, 0.0]
    assert [noise_scale(t, 3, weight=1.0) for t in range(3)] == [1.0, 0.5, 0.0]


def test_single_iteration_gets_full_weight_and_zero_weight_disables():
    assert noise_scale(0, 1, weight=0.3) == 0.3
    assert all(noise_scale(t, 4, weight=0.0) == 0.0 for t in range(4))


@pytest.mark.parametrize(
    ("iteration", "num_iterations", "weight"), [(3, 3, 0.5), (-1, 3, 0.5), (0, 0, 0.5), (0, 3, -1.0)]
)
def test_noise_scale_rejects_bad_arguments(iteration, num_iterations, weight):
    with pytest.raises(ValueError):
        noise_scale(iteration, num_iterations, weight)


@given(step=st.integers(0, 20_000))
def test_prune_probability_matches_formula_and_is_capped(step):
    expected = min(1.0, 0.02 * 1.001**step)
    value = prune_probability(step)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-9)
    assert 0 < value <= 1


def test_prune_probability_reaches_one_after_3914_steps():
    # ln(50)/ln(1.001) ≈ 3913.9 (paper §2.8)
    assert prune_probability(3913) < 1.0
    assert prune_probability(3914) == 1.0
    assert prune_probability(0) == pytest.approx(0.02)
    assert prune_probability(10**9) == 1.0  # huge steps saturate instead of overflowing


def test_tensor_step_gives_tensor_without_overflow():
    steps = [0, 1000, 3914, 10**6]
    values = [prune_probability(torch.tensor(step)) for step in steps]
    assert all(isinstance(value, torch.Tensor) and value.shape == () for value in values)
    for step, value in zip(steps, values, strict=True):
        assert value.item() == pytest.approx(prune_probability(step), rel=1e-5)
    assert values[-1].item() == 1.0


def test_prune_probability_rejects_bad_start():
    with pytest.raises(ValueError, match="start"):
        prune_probability(0, start=0.0)


def _uniforms(seed: int, count: int) -> torch.Tensor:
    return torch.stack([counter_uniform(torch.tensor(seed), torch.tensor(step)) for step in range(count)])


def test_counter_uniform_is_a_function_of_seed_and_counter_only():
    state = torch.random.get_rng_state()
    first = _uniforms(7, 50)
    assert torch.equal(_uniforms(7, 50), first)
    assert torch.equal(torch.random.get_rng_state(), state)  # no generator read or advanced
    assert not torch.equal(_uniforms(8, 50), first)
    assert first.dtype == torch.float32 and first.shape == (50,)


@pytest.mark.parametrize("seed", [0, 1, 2**31 - 2])
def test_counter_uniform_is_uniform_over_consecutive_counters(seed):
    values = _uniforms(seed, 4000)
    assert bool((values >= 0).all()) and bool((values < 1).all())
    # 10 bins of 400 expected draws each: a binomial std of 19, so ±100 is over 5 sigma.
    counts = torch.histc(values, bins=10, min=0.0, max=1.0)
    assert bool(((counts - 400).abs() < 100).all()), counts.tolist()
    # Consecutive draws are uncorrelated (the path decisions of neighbouring steps are independent).
    correlation = torch.corrcoef(torch.stack([values[:-1], values[1:]]))[0, 1]
    assert abs(float(correlation)) < 0.08
