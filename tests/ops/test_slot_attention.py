"""The aggregate loop: gradient routing (straight-through), noise reproducibility, projection reuse."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metaslot.ops import (
    KeyValueSource,
    SlotAttentionLayers,
    aggregate,
    key_value_source,
    masked_slot_attention,
)

WIDTH, CHANNELS, SLOTS, TOKENS, BATCH = 4, 6, 3, 5, 2


class TinyWeights(nn.Module):
    """Just enough parameters to drive `aggregate` like a real slot-attention module would."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.norm_queries = nn.LayerNorm(WIDTH)
        self.project_q = nn.Linear(WIDTH, WIDTH, bias=False)
        self.project_k = nn.Linear(CHANNELS, WIDTH, bias=False)
        self.project_v = nn.Linear(CHANNELS, WIDTH, bias=False)
        self.gru = nn.GRUCell(WIDTH, WIDTH)
        self.mlp = nn.Sequential(
            nn.LayerNorm(WIDTH), nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH)
        )
        self.mean = nn.Parameter(torch.randn(SLOTS, WIDTH))
        self.keys_values_calls = 0

    def keys_values(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys_values_calls += 1
        return self.project_k(features), self.project_v(features)

    def update(self, slots: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        new = self.gru(updates.reshape(-1, WIDTH), slots.reshape(-1, WIDTH)).reshape(slots.shape)
        return new + self.mlp(new)

    def layers(self, linear: bool = False) -> SlotAttentionLayers:
        return SlotAttentionLayers(
            project_queries=lambda slots: self.project_q(self.norm_queries(slots)),
            project_keys_values=self.keys_values,
            update=self.update,
            key_value_weights=(lambda: (self.project_k.weight, self.project_v.weight)) if linear else None,
        )

    def initial_slots(self) -> torch.Tensor:
        return self.mean.expand(BATCH, SLOTS, WIDTH)


def features(seed: int = 0) -> torch.Tensor:
    return torch.nn.functional.layer_norm(
        torch.randn(BATCH, TOKENS, CHANNELS, generator=torch.Generator().manual_seed(seed)), (CHANNELS,)
    )


@pytest.mark.parametrize("noise_weight", [0.0, 0.5])
def test_initial_slots_get_gradient_only_through_the_straight_through_term(noise_weight):
    weights = TinyWeights()
    initial = weights.initial_slots()
    detached = aggregate(
        initial.detach(),
        features(),
        weights.layers(),
        3,
        noise_weight=noise_weight,
        generator=torch.Generator().manual_seed(1),
    )
    detached.slots.square().sum().backward()
    assert weights.mean.grad is None
    assert weights.project_k.weight.grad.abs().sum() > 0 and weights.project_v.weight.grad.abs().sum() > 0

    weights.zero_grad(set_to_none=True)
    through = aggregate(
        initial.detach(),
        features(),
        weights.layers(),
        3,
        noise_weight=noise_weight,
        generator=torch.Generator().manual_seed(1),
        straight_through=initial,
    )
    through.slots.square().sum().backward()
    assert weights.mean.grad is not None and weights.mean.grad.abs().sum() > 0
    assert weights.project_k.weight.grad.abs().sum() > 0 and weights.project_v.weight.grad.abs().sum() > 0
    # The straight-through term changes gradients, never values.
    torch.testing.assert_close(through.slots, detached.slots)
    torch.testing.assert_close(through.attention, detached.attention)


def test_noise_from_a_seeded_generator_is_reproducible_and_matches_pre_drawn_noise():
    weights = TinyWeights()
    slots = weights.initial_slots().detach()

    def run(seed: int):
        return aggregate(
            slots,
            features(),
            weights.layers(),
            3,
            noise_weight=0.5,
            generator=torch.Generator().manual_seed(seed),
        )

    first, second, other = run(3), run(3), run(4)
    torch.testing.assert_close(first.slots, second.slots, rtol=0, atol=0)
    assert not torch.allclose(first.slots, other.slots)
    # aggregate draws one unit-normal tensor per noisy iteration (σ = 0.5, 0.25; the last is clean).
    generator = torch.Generator().manual_seed(3)
    drawn = [torch.randn(BATCH, TOKENS, CHANNELS, generator=generator) for _ in range(2)]
    pre_drawn = torch.stack([*drawn, torch.full((BATCH, TOKENS, CHANNELS), float("nan"))])
    given = aggregate(slots, features(), weights.layers(), 3, noise_weight=0.5, noise=pre_drawn)
    torch.testing.assert_close(given.slots, first.slots)
    clean = aggregate(slots, features(), weights.layers(), 3)
    assert not torch.allclose(clean.slots, first.slots)


def test_clean_keys_values_are_computed_once_and_reused():
    weights = TinyWeights()
    slots = weights.initial_slots().detach()
    aggregate(slots, features(), weights.layers(), 4)
    assert weights.keys_values_calls == 1
    weights.keys_values_calls = 0
    aggregate(
        slots, features(), weights.layers(), 3, noise_weight=0.5, generator=torch.Generator().manual_seed(0)
    )
    assert weights.keys_values_calls == 3  # two noisy iterations plus one clean
    weights.keys_values_calls = 0
    precomputed = (weights.project_k(features()), weights.project_v(features()))
    reused = aggregate(slots, features(), weights.layers(), 3, source=KeyValueSource(precomputed))
    assert weights.keys_values_calls == 0
    torch.testing.assert_close(reused.slots, aggregate(slots, features(), weights.layers(), 3).slots)


def test_one_iteration_is_one_masked_step_and_pruned_slots_get_no_attention():
    weights = TinyWeights()
    slots = weights.initial_slots().detach()
    keep = torch.tensor([[True, False, True], [False, True, False]])
    result = aggregate(slots, features(), weights.layers(), 1, keep=keep)
    keys, values = weights.keys_values(features())
    updates, attention = masked_slot_attention(
        weights.project_q(weights.norm_queries(slots)), keys, values, keep
    )
    torch.testing.assert_close(result.attention, attention)
    torch.testing.assert_close(result.slots, weights.update(slots, updates))
    many = aggregate(slots, features(), weights.layers(), 3, keep=keep)
    assert torch.all(many.attention[~keep] == 0)
    torch.testing.assert_close(many.attention.sum(dim=1), torch.ones(BATCH, TOKENS))


def test_rejects_noise_with_the_wrong_number_of_iterations_and_bad_counts():
    weights = TinyWeights()
    slots = weights.initial_slots().detach()
    with pytest.raises(ValueError, match="iterations"):
        aggregate(
            slots,
            features(),
            weights.layers(),
            3,
            noise_weight=0.5,
            noise=torch.randn(2, BATCH, TOKENS, CHANNELS),
        )
    with pytest.raises(ValueError, match="num_iterations"):
        aggregate(slots, features(), weights.layers(), 0)
    with pytest.raises(ValueError, match="noise_weight"):
        aggregate(slots, features(), weights.layers(), 2, noise_weight=-0.1)


def forced_source(inputs: torch.Tensor, layers, in_feature_space: bool) -> KeyValueSource:
    """The clean read-outs forced into feature space or onto projected keys and values."""
    path = "feature_space" if in_feature_space else "projected"
    return key_value_source(inputs, layers, num_slots=SLOTS, num_read_outs=3, path=path)


def _values_and_gradients(linear: bool, feature_space: bool | None, noise_weight: float):
    weights = TinyWeights()
    inputs = features().requires_grad_(True)
    initial = weights.initial_slots()
    layers = weights.layers(linear=linear)
    output = aggregate(
        initial.detach(),
        inputs,
        layers,
        3,
        noise_weight=noise_weight,
        generator=torch.Generator().manual_seed(5),
        straight_through=initial,
        source=None if feature_space is None else forced_source(inputs, layers, feature_space),
    )
    (output.slots.square().sum() + output.attention.sin().sum()).backward()
    gradients = {name: parameter.grad for name, parameter in weights.named_parameters()}
    return output, inputs.grad, gradients, weights.keys_values_calls


@pytest.mark.parametrize(
    ("feature_space", "noise_weight", "projections"),
    [(None, 0.5, 1), (True, 0.5, 0), (False, 0.0, 1), (True, 0.0, 0)],
)
def test_reading_features_directly_gives_the_same_values_and_gradients(
    feature_space, noise_weight, projections
):
    """Noisy features read in feature space, and clean ones when asked, equal the projected path."""
    plain, plain_input_grad, plain_grads, plain_calls = _values_and_gradients(False, None, noise_weight)
    assert plain_calls == (3 if noise_weight else 1)  # noisy iterations project their own features
    linear, linear_input_grad, linear_grads, calls = _values_and_gradients(True, feature_space, noise_weight)
    assert calls == projections  # only the clean iteration(s) may share one projection
    torch.testing.assert_close(linear.slots, plain.slots)
    torch.testing.assert_close(linear.attention, plain.attention)
    torch.testing.assert_close(linear_input_grad, plain_input_grad)
    for name, gradient in plain_grads.items():
        torch.testing.assert_close(linear_grads[name], gradient, msg=name)


def test_feature_space_is_chosen_by_cost_and_needs_the_weights():
    weights = TinyWeights()
    slots = weights.initial_slots().detach()
    aggregate(slots, features(), weights.layers(linear=True), 3)
    assert weights.keys_values_calls == 1  # 5 tokens, 3 slots: projecting once is cheaper
    many_tokens = torch.randn(BATCH, 64, CHANNELS)
    aggregate(slots, many_tokens, weights.layers(linear=True), 3)
    assert weights.keys_values_calls == 1  # 64 tokens: read in feature space, nothing more projected
    with pytest.raises(ValueError, match="key_value_weights"):
        aggregate(
            slots, features(), weights.layers(), 3, source=forced_source(features(), weights.layers(), True)
        )


def test_epsilon_reaches_the_attention_average():
    weights = TinyWeights()
    slots = weights.initial_slots().detach()
    small = aggregate(slots, features(), weights.layers(), 2)
    large = aggregate(slots, features(), weights.layers(), 2, epsilon=10.0)
    assert not torch.allclose(small.slots, large.slots)
    with pytest.raises(ValueError, match="epsilon"):
        aggregate(slots, features(), weights.layers(), 2, epsilon=0.0)


@pytest.mark.parametrize(
    ("path", "tokens", "projections", "in_feature_space"),
    [
        ("projected", 64, 1, False),
        ("feature_space", 5, 0, True),
        ("auto", 5, 1, False),
        ("auto", 64, 0, True),
    ],
)
def test_key_value_source_decides_the_clean_read_outs_once(path, tokens, projections, in_feature_space):
    """One decision per forward: projected once, or feature space ('auto': by the multiply-add count)."""
    weights = TinyWeights()
    inputs = torch.randn(BATCH, tokens, CHANNELS)
    source = key_value_source(
        inputs, weights.layers(linear=True), num_slots=SLOTS, num_read_outs=3, path=path
    )
    assert weights.keys_values_calls == projections
    assert source.in_feature_space == in_feature_space
    slots = weights.initial_slots().detach()
    given = aggregate(slots, inputs, weights.layers(linear=True), 3, source=source)
    assert weights.keys_values_calls == projections  # aggregate reuses the source, projects nothing more
    layers = weights.layers(linear=True)
    forced = aggregate(slots, inputs, layers, 3, source=forced_source(inputs, layers, in_feature_space))
    torch.testing.assert_close(given.slots, forced.slots)


def test_a_source_without_weights_cannot_read_in_feature_space():
    weights = TinyWeights()
    with pytest.raises(ValueError, match="key_value_weights"):
        key_value_source(features(), weights.layers(), num_slots=SLOTS, num_read_outs=3, path="feature_space")
    assert not key_value_source(
        features(), weights.layers(), num_slots=SLOTS, num_read_outs=3
    ).in_feature_space
    assert KeyValueSource(None).in_feature_space
