"""MetaSlot module: semantics of the two stages, pruning, gradients, randomness, declared state."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import metaslot
from metaslot.models.aggregators import MetaSlot, MetaSlotSpec
from metaslot.ops import aggregate, prune_duplicates, quantize


def tiny_spec(**overrides: object) -> MetaSlotSpec:
    fields = dict(
        num_slots=4, slot_dim=8, feature_dim=5, num_iterations=3, codebook_size=16, buffer_capacity=12
    )
    fields.update(overrides)
    return MetaSlotSpec(**fields)


def test_public_import_and_the_spec_builds_the_module() -> None:
    spec = metaslot.MetaSlotSpec(num_slots=4, slot_dim=8, feature_dim=5, codebook_size=16, buffer_capacity=12)
    torch.manual_seed(0)
    from_class = metaslot.MetaSlot(spec)
    torch.manual_seed(0)
    from_spec = spec.build()
    assert from_class.spec == from_spec.spec == spec
    for name, tensor in from_spec.state_dict().items():
        assert torch.equal(tensor, from_class.state_dict()[name]), name


def test_state_is_declared_and_initialised_without_filler() -> None:
    module = MetaSlot(tiny_spec(dead_code_timeout=48))
    state = module.state_dict()
    for name in (
        "usage_counters",
        "buffer_vectors",
        "buffer_pointer",
        "buffer_fill",
        "step_counter",
        "kmeans_done",
        "path_seed",
    ):
        assert f"codebook_state.{name}" in state, name
    assert module.codebook.shape == (16, 8) and module.codebook.abs().max() <= 1 / 16
    assert isinstance(module.codebook, torch.nn.Parameter)
    # 48 vectors · 16 codes / 12 rows = 64 steps. Counters start at 0 (no code used yet): dead as soon as
    # the buffer holds real slots, as the reference's (1, then decremented) but never from filler.
    assert module.codebook_state.timeout_steps == 64
    assert (module.codebook_state.usage_counters == 0).all()
    assert not module.codebook_state.buffer_vectors.any()
    assert module.codebook_state.buffer_fill == 0 and module.codebook_state.step_counter == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"codebook_size": 0}, "codebook_size"),
        ({"num_iterations": 0}, "num_iterations"),
        ({"quantizer": "nearest"}, "quantizer"),
        ({"noise_stages": "first"}, "noise_stages"),
        ({"codebook_update": "adam"}, "codebook_update"),
        ({"buffer_capacity": 3}, "buffer_capacity"),
        ({"prune_start": 0.0}, "prune_start"),
        ({"prune_growth": 0.9}, "prune_growth"),
        ({"replacement_rate": 1.5}, "replacement_rate"),
        ({"kmeans_decay": -0.1}, "kmeans_decay"),
        ({"attention_path": "fused"}, "attention_path"),
    ],
)
def test_bad_spec_values_explain_themselves(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_spec(**overrides)


@given(batch=st.integers(1, 3), tokens=st.integers(1, 6), training=st.booleans(), seed=st.integers(0, 2**16))
def test_output_record_is_consistent(batch: int, tokens: int, training: bool, seed: int) -> None:
    torch.manual_seed(seed)
    module = MetaSlot(tiny_spec(prune_start=1.0)).train(training)
    output = module(torch.randn(batch, tokens, 5), generator=torch.Generator().manual_seed(seed))
    assert output.slots.shape == (batch, 4, 8) and output.attention.shape == (batch, 4, tokens)
    # Always the prune path here (p = 1): kept slots are exactly the first of each distinct code.
    assert (output.codes >= 0).eq(output.keep).all()
    assert torch.equal(prune_duplicates(output.codes), output.keep)
    for image in range(batch):
        kept_codes = output.codes[image][output.keep[image]]
        assert len(set(kept_codes.tolist())) == int(output.keep[image].sum())
    assert output.keep[:, 0].all()  # the first slot always survives
    # Pruned slots get no attention; every token's attention sums to one over the kept slots.
    assert (output.attention * ~output.keep[:, :, None]).abs().max() == 0
    torch.testing.assert_close(output.attention.sum(dim=1), torch.ones(batch, tokens))


def test_training_without_the_prune_path_keeps_every_slot() -> None:
    module = MetaSlot(tiny_spec(prune_start=1e-9))
    output = module(torch.randn(3, 6, 5), generator=torch.Generator().manual_seed(0))
    assert output.keep.all() and (output.codes >= 0).all()


def _stage_one(module: MetaSlot, features: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return aggregate(
            initial, module.norm_features(features), module.layers(), module.spec.num_iterations
        ).slots


@pytest.mark.parametrize("attention_path", ["projected", "feature_space"])
@given(seed=st.integers(0, 2**16), duplicated=st.integers(0, 3))
def test_slot_count_invariance_at_evaluation(attention_path: str, seed: int, duplicated: int) -> None:
    torch.manual_seed(seed)
    module = MetaSlot(tiny_spec(attention_path=attention_path)).eval()
    features = torch.randn(2, 6, 5)
    initial = torch.randn(2, 4, 8)
    initial[:, 3] = initial[:, 0]  # one duplicate already: the original run prunes slot 3
    with_copy = torch.cat([initial, initial[:, duplicated : duplicated + 1]], dim=1)
    # Prototypes well apart and one per distinct stage-1 slot, so the codes do not hinge on near-ties.
    with torch.no_grad():
        module.codebook[:8] = _stage_one(module, features, initial).reshape(8, 8)
        module.codebook[8:] += 100.0

    original = module(features, initial)
    copied = module(features, with_copy)

    assert torch.equal(copied.codes[:, :4], original.codes)
    assert not copied.keep[:, 4].any()  # the copy falls on its twin's prototype and is pruned
    for output in (original, copied):
        distinct = [len(set(row[row >= 0].tolist())) for row in output.codes]
        assert output.keep.sum(dim=1).tolist() == distinct
    kept = original.keep
    torch.testing.assert_close(copied.slots[:, :4][kept], original.slots[kept])
    torch.testing.assert_close(copied.attention[:, :4], original.attention)
    assert copied.attention[:, 4].abs().max() == 0


@given(seed=st.integers(0, 2**16))
def test_kept_outputs_do_not_depend_on_pruned_values(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    module = MetaSlot(tiny_spec())
    features = module.norm_features(torch.randn(2, 6, 5, generator=generator))
    keep = torch.tensor([[True, False, True, False], [True, True, False, False]])
    slots = torch.randn(2, 4, 8, generator=generator)
    scrambled = torch.where(keep[:, :, None], slots, 50 * torch.randn(2, 4, 8, generator=generator))
    first = aggregate(slots, features, module.layers(), 3, keep=keep)
    second = aggregate(scrambled, features, module.layers(), 3, keep=keep)
    torch.testing.assert_close(first.slots[keep], second.slots[keep])
    torch.testing.assert_close(first.attention, second.attention)
    assert (first.attention * ~keep[:, :, None]).abs().max() == 0


def test_evaluation_is_deterministic_and_noise_free() -> None:
    module = MetaSlot(tiny_spec()).eval()
    features = torch.randn(2, 6, 5)
    state = torch.random.get_rng_state()
    first, second = module(features), module(features)
    assert torch.equal(first.slots, second.slots) and torch.equal(first.keep, second.keep)
    assert torch.equal(torch.random.get_rng_state(), state)  # nothing drawn at evaluation
    noisy = MetaSlot(tiny_spec(noise_at_eval=True)).eval()
    noisy.load_state_dict(module.state_dict())
    assert not torch.equal(noisy(features).slots, first.slots)


@pytest.mark.parametrize("quantizer", ["argmin", "gumbel"])
def test_training_draws_only_from_the_given_generator(quantizer: str) -> None:
    module = MetaSlot(tiny_spec(quantizer=quantizer, prune_start=0.5))
    features = torch.randn(3, 6, 5)
    global_state = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(7)
        output = module(features, generator=generator)
        runs.append((output, generator.get_state()))
    assert torch.equal(torch.random.get_rng_state(), global_state)
    (first, first_state), (second, second_state) = runs
    assert torch.equal(first.slots, second.slots) and torch.equal(first.codes, second.codes)
    assert torch.equal(first_state, second_state)
    other = module(features, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other.slots, first.slots)


def test_prune_path_follows_the_step_schedule() -> None:
    """p(step) = min(1, p0·g^step) with the step counter as the only schedule state."""
    module = MetaSlot(tiny_spec(prune_start=0.5, prune_growth=2.0))
    features = torch.randn(1, 6, 5)
    # Make every slot share one code so the two paths are distinguishable by the keep mask.
    with torch.no_grad():
        module.codebook.zero_()
        module.codebook[1:] += 1000.0
    pruned_at_step0 = []
    for seed in range(40):
        module.codebook_state.path_seed.fill_(seed)
        pruned = not bool(module(features, generator=torch.Generator().manual_seed(0)).keep.all())
        assert pruned == bool(module.prune_path())
        pruned_at_step0.append(pruned)
    assert 5 < sum(pruned_at_step0) < 35
    module.codebook_state.step_counter.fill_(1)  # p = 1
    for seed in range(10):
        module.codebook_state.path_seed.fill_(seed)
        assert not bool(module(features).keep.all())


def test_one_path_decision_per_step_whatever_the_random_streams() -> None:
    """The draw is a function of (path_seed, step): neither the generator nor the global RNG moves it."""
    module = MetaSlot(tiny_spec(prune_start=0.5, prune_growth=1.0))
    state = module.codebook_state
    decisions = []
    for step in range(64):
        state.step_counter.fill_(step)
        torch.manual_seed(step)
        first = bool(module.prune_path())
        torch.manual_seed(1000 + step)
        torch.rand(5)
        assert bool(module.prune_path()) == first
        decisions.append(first)
    assert 16 < sum(decisions) < 48  # p = 0.5 at every step: both paths, in some order
    assert bool(module.eval().prune_path())  # evaluation always prunes


def test_checkpoints_from_before_the_path_seed_still_load() -> None:
    module = MetaSlot(tiny_spec())
    state = {
        name: tensor for name, tensor in module.state_dict().items() if name != "codebook_state.path_seed"
    }
    fresh = MetaSlot(tiny_spec())
    seed = fresh.codebook_state.path_seed.clone()
    fresh.load_state_dict(state, strict=True)
    assert torch.equal(fresh.codebook_state.path_seed, seed)
    assert torch.equal(fresh.codebook, module.codebook)


@pytest.mark.parametrize(
    ("codebook_update", "codebook_gets_gradient"), [("gradient", True), ("both", True), ("kmeans", False)]
)
@pytest.mark.parametrize("prune_start", [1e-9, 1.0])
def test_gradient_flow(codebook_update: str, codebook_gets_gradient: bool, prune_start: float) -> None:
    torch.manual_seed(0)
    module = MetaSlot(tiny_spec(codebook_update=codebook_update, prune_start=prune_start))
    output = module(torch.randn(3, 6, 5), generator=torch.Generator().manual_seed(0))
    (output.slots.square().sum() + output.attention.square().sum()).backward()
    for name, parameter in module.named_parameters():
        if name == "codebook_state.codebook":
            has_gradient = parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)
            assert has_gradient == codebook_gets_gradient
            continue
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_no_straight_through_means_no_gradient_to_the_initialiser() -> None:
    module = MetaSlot(tiny_spec(straight_through=False))
    module(torch.randn(2, 6, 5)).slots.sum().backward()
    assert module.initializer.mean.grad is None
    # Frozen, so DDP without find_unused_parameters does not wait for a gradient that never comes.
    assert not module.initializer.mean.requires_grad


def test_kmeans_only_codebook_is_frozen_for_the_optimiser() -> None:
    assert not MetaSlot(tiny_spec(codebook_update="kmeans")).codebook.requires_grad
    assert MetaSlot(tiny_spec(codebook_update="both")).codebook.requires_grad


def test_small_buffer_upkeep_and_one_off_kmeans() -> None:
    """Buffer smaller than the codebook works; k-means runs once the buffer is surely full."""
    spec = tiny_spec(codebook_size=16, buffer_capacity=6, dead_code_timeout=4)
    module = MetaSlot(spec)
    state = module.codebook_state
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 6, 5)
    for step in range(4):
        before = module.codebook.detach().clone()
        output = module(features, generator=generator)
        module.update_codebook(output, generator=generator)
        kept = int(output.keep.sum())
        assert int(state.buffer_fill) <= 6 and int(state.step_counter) == step + 1
        # Two images per step, each keeps at least one slot: after 3 steps the 6-row buffer is surely full.
        assert bool(state.kmeans_done) == (step >= 2)
        if step == 2:
            assert not torch.equal(before, module.codebook.detach())
        assert kept >= 2
    assert int(state.buffer_fill) == 6
    # Replacement vectors come from real rows only: every live code is finite and not the zero row.
    assert torch.isfinite(module.codebook).all()


def test_dead_codes_are_replaced_from_the_buffer() -> None:
    spec = tiny_spec(codebook_size=16, buffer_capacity=8, dead_code_timeout=1, kmeans_init=False)
    module = MetaSlot(spec)
    state = module.codebook_state
    assert state.timeout_steps == 2
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 6, 5)
    initial_codebook = module.codebook.detach().clone()
    for _ in range(3):
        module.update_codebook(module(features, generator=generator), generator=generator)
    changed = (module.codebook.detach() - initial_codebook).abs().sum(dim=1) > 0
    assert changed.sum() >= 8  # at most 8 codes can be in use by 8 slots: the rest died and moved
    assert (state.usage_counters >= 1).all()


def test_kmeans_codebook_update_moves_used_codes_without_gradient() -> None:
    # Replacement rate 0: dead codes (every code at the first upkeep) stay put, only the k-means step moves.
    spec = tiny_spec(codebook_update="kmeans", kmeans_init=False, kmeans_decay=0.5, replacement_rate=0.0)
    module = MetaSlot(spec)
    output = module(torch.randn(2, 6, 5), generator=torch.Generator().manual_seed(0))
    before = module.codebook.detach().clone()
    module.update_codebook(output)
    moved = (module.codebook.detach() - before).abs().sum(dim=1) > 0
    # The upkeep re-quantises the final slots (not stage 1's codes in output.codes); pruned ones are ignored.
    final_codes = quantize(output.slots.detach(), before).codes[output.keep]
    used = torch.zeros(16, dtype=torch.bool)
    used[final_codes] = True
    assert moved.any() and not (moved & ~used).any() and module.codebook.grad is None


def test_update_codebook_in_evaluation_of_slot_attention_is_a_no_op() -> None:
    module = metaslot.SlotAttentionSpec(num_slots=2, slot_dim=4, feature_dim=3).build()
    before = {name: tensor.clone() for name, tensor in module.state_dict().items()}
    module.update_codebook(module(torch.randn(1, 5, 3)))
    assert all(torch.equal(before[name], tensor) for name, tensor in module.state_dict().items())


def test_codes_unused_by_the_first_batch_are_replaced_at_once() -> None:
    """Counters start at 0 (no code used yet), so the first upkeep moves every unused code onto real slots
    (with the timeout of 4096 vectors they would otherwise idle for 4096·16/12 = 5462 steps)."""
    module = MetaSlot(tiny_spec(codebook_size=16, buffer_capacity=12, kmeans_init=False))
    generator = torch.Generator().manual_seed(0)
    output = module(torch.randn(2, 6, 5), generator=generator)
    before = module.codebook.detach().clone()
    module.update_codebook(output, generator=generator)
    used = quantize(output.slots.detach(), before).codes[output.keep].unique()
    moved = (module.codebook.detach() - before).abs().sum(dim=1) > 0
    assert int(moved.sum()) >= 16 - len(used)
    assert not moved[used].any()


@pytest.mark.parametrize("seed", range(5))
def test_one_off_kmeans_starts_from_buffered_slots_and_leaves_no_code_idle(seed: int) -> None:
    """Slots far from the origin and close to each other (as early in training): k-means from the
    near-zero codebook put them all in one cluster (1 code in use); seeded from the buffer, all 8 tight
    clusters get codes, and codes left with an empty cluster are dead at once (replaced by slots)."""
    module = MetaSlot(tiny_spec(codebook_size=8, buffer_capacity=16))
    state = module.codebook_state
    noise = 0.1 * torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    slots = 10.0 + 3.0 * torch.eye(8).repeat_interleave(2, dim=0) + noise  # 8 clusters of 2 slots
    state.upkeep(
        slots, torch.ones(16, dtype=torch.bool), num_images=8, generator=torch.Generator().manual_seed(seed)
    )
    assert bool(state.kmeans_done)
    statistics = module.codebook_statistics()
    assert int(statistics.codes_in_use) >= 6
    assert 1.0 <= float(statistics.perplexity) <= float(statistics.codes_in_use) + 1e-6
    # Codes that own buffered slots restart the timeout; none is left with an inherited one.
    owners = quantize(slots[None], module.codebook.detach()).codes[0].unique()
    assert bool((state.usage_counters[owners] >= state.timeout_steps - 1).all())


def test_codebook_statistics_count_the_buffered_slots_and_need_no_codebook_for_slot_attention() -> None:
    module = MetaSlot(tiny_spec(codebook_size=4, buffer_capacity=6, kmeans_init=False))
    with torch.no_grad():
        module.codebook.copy_(torch.eye(4, 8) * 5)
    state = module.codebook_state
    assert int(module.codebook_statistics().codes_in_use) == 0  # empty buffer
    assert math.isnan(float(module.codebook_statistics().perplexity))
    state.buffer_vectors[:3] = torch.eye(4, 8)[[0, 0, 1]] * 4
    state.buffer_fill.fill_(3)
    state.buffer_pointer.fill_(3)
    statistics = module.codebook_statistics()
    assert int(statistics.codes_in_use) == 2
    # Usage 2:1 → exp(entropy) = 3 / 2^(2/3).
    assert float(statistics.perplexity) == pytest.approx(3 / 2 ** (2 / 3), rel=1e-6)
    assert statistics.as_metrics() == {
        "codebook/codes_in_use": 2.0,
        "codebook/perplexity": pytest.approx(3 / 2 ** (2 / 3), rel=1e-6),
    }
    assert (
        metaslot.SlotAttentionSpec(num_slots=2, slot_dim=4, feature_dim=3).build().codebook_statistics()
        is None
    )
