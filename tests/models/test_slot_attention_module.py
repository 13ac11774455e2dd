"""Plain Slot Attention module: construction, output record, initialisers, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import metaslot
from metaslot.models.aggregators import SlotAttention, SlotAttentionSpec
from metaslot.models.aggregators.initializers import PerSlotGaussian, SharedGaussian
from metaslot.models.records import AggregatorOutput


def tiny_spec(**overrides: object) -> SlotAttentionSpec:
    fields = dict(num_slots=3, slot_dim=8, feature_dim=5, num_iterations=2)
    fields.update(overrides)
    return SlotAttentionSpec(**fields)


def test_public_import_and_the_spec_builds_the_module() -> None:
    spec = tiny_spec()
    torch.manual_seed(0)
    from_spec = spec.build()
    torch.manual_seed(0)
    from_class = metaslot.SlotAttention(spec)
    assert from_spec.spec == from_class.spec == spec
    for (name, left), (_, right) in zip(
        from_spec.state_dict().items(), from_class.state_dict().items(), strict=True
    ):
        assert torch.equal(left, right), name


def test_reference_weights_and_zero_biases() -> None:
    module = tiny_spec(mlp_hidden_dim=11).build()
    assert module.project_queries.bias is None
    assert module.project_keys.bias is None and module.project_values.bias is None
    assert module.project_keys.in_features == 5 and module.project_keys.out_features == 8
    assert module.mlp[0].out_features == 11
    assert torch.count_nonzero(module.gru.bias_ih) == 0 and torch.count_nonzero(module.gru.bias_hh) == 0
    assert torch.count_nonzero(module.mlp[0].bias) == 0 and torch.count_nonzero(module.mlp[2].bias) == 0
    assert tiny_spec().mlp_hidden_dim == 32  # 4·d by default


@given(batch=st.integers(1, 3), tokens=st.integers(1, 6), slots=st.integers(1, 4))
def test_output_record(batch: int, tokens: int, slots: int) -> None:
    torch.manual_seed(0)
    module = tiny_spec(num_slots=slots).build()
    output = module(torch.randn(batch, tokens, 5))
    assert isinstance(output, AggregatorOutput)
    assert output.slots.shape == (batch, slots, 8)
    assert output.attention.shape == (batch, slots, tokens)
    assert output.keep.all() and output.keep.shape == (batch, slots)
    assert (output.codes == -1).all()
    torch.testing.assert_close(output.attention.sum(dim=1), torch.ones(batch, tokens))
    assert module.update_codebook(output) is None


def test_given_initial_slots_are_used_and_checked() -> None:
    module = tiny_spec().build()
    features = torch.randn(2, 4, 5)
    initial = torch.randn(2, 5, 8)  # a different slot count than the spec: allowed, as a drop-in
    assert module(features, initial).slots.shape == (2, 5, 8)
    # Shape checking (tests run with it) or the module's own check, whichever comes first, rejects these.
    with pytest.raises((ValueError, TypeError), match="initial_slots"):
        module(features, torch.randn(3, 5, 8))
    with pytest.raises(ValueError, match="feature_dim"):
        module(torch.randn(2, 4, 6))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_slots": 0}, "num_slots"),
        ({"num_iterations": 0}, "num_iterations"),
        ({"initializer": "uniform"}, "initializer"),
        ({"mlp_dropout": 1.0}, "mlp_dropout"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"attention_path": "fused"}, "attention_path"),
    ],
)
def test_bad_spec_values_explain_themselves(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_spec(**overrides)


def test_spec_epsilon_changes_the_read_out() -> None:
    torch.manual_seed(0)
    default = tiny_spec().build().eval()
    torch.manual_seed(0)
    loose = tiny_spec(epsilon=5.0).build().eval()
    features = torch.randn(2, 4, 5)
    assert not torch.allclose(default(features).slots, loose(features).slots)


def test_per_slot_initialiser_samples_in_training_and_returns_mean_at_eval() -> None:
    initializer = PerSlotGaussian(num_slots=3, slot_dim=16)
    torch.testing.assert_close(initializer.log_std.exp(), torch.full((1, 3, 16), 16**-0.5))
    generator = torch.Generator().manual_seed(1)
    first = initializer(2, generator)
    assert not torch.equal(first[0], first[1])
    again = initializer(2, torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    initializer.eval()
    assert torch.equal(initializer(2), initializer.mean.expand(2, -1, -1))


@pytest.mark.parametrize(("num_slots", "slot_dim"), [(6, 256), (11, 256), (3, 16)])
def test_per_slot_mean_is_xavier_on_the_slot_by_width_matrix(num_slots: int, slot_dim: int) -> None:
    """The reference initialises ``mean[0]``, a (k, d) matrix: uniform in ±sqrt(6 / (k + d)) (VOC: 0.151)."""
    torch.manual_seed(0)
    mean = PerSlotGaussian(num_slots=num_slots, slot_dim=slot_dim).mean.detach()
    bound = math.sqrt(6.0 / (num_slots + slot_dim))
    assert mean.abs().max() <= bound
    # k·d draws from U(-bound, bound) come close to the bound, with a std of bound/√3.
    assert mean.abs().max() >= 0.9 * bound
    assert mean.std().item() == pytest.approx(bound / math.sqrt(3.0), rel=0.2)


@pytest.mark.parametrize("slot_dim", [256, 16])
def test_shared_mean_and_log_std_are_xavier_on_one_by_width(slot_dim: int) -> None:
    """The reference's NormalShared initialises its (1, 1, d) tensors: bound sqrt(6 / 2d) (0.108 for 256)."""
    torch.manual_seed(0)
    shared = SharedGaussian(num_slots=7, slot_dim=slot_dim)
    bound = math.sqrt(6.0 / (2 * slot_dim))
    for tensor in (shared.mean.detach(), shared.log_std.detach()):
        assert tensor.abs().max() <= bound
        assert tensor.abs().max() >= 0.75 * bound


def test_shared_initialiser_samples_at_eval_unless_told_not_to() -> None:
    shared = SharedGaussian(num_slots=4, slot_dim=16).eval()
    sample = shared(1)
    assert sample.shape == (1, 4, 16)
    assert not torch.equal(sample[0, 0], sample[0, 1])
    bound = math.sqrt(6.0 / 32.0)  # xavier-uniform of a (1, 1, 16) tensor
    assert shared.mean.abs().max() <= bound
    quiet = SharedGaussian(num_slots=4, slot_dim=16, sample_at_eval=False).eval()
    assert torch.equal(quiet(2), quiet.mean.expand(2, 4, -1))


def test_mlp_dropout_acts_in_training_only_and_keeps_the_weight_names() -> None:
    torch.manual_seed(0)
    plain = tiny_spec().build()
    dropped = SlotAttention(tiny_spec(mlp_dropout=0.5))
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    dropped.load_state_dict(plain.state_dict())
    features, initial = torch.randn(2, 6, 5), torch.randn(2, 3, 8)
    plain.eval()
    dropped.eval()
    torch.testing.assert_close(dropped(features, initial).slots, plain(features, initial).slots)
    plain.train()
    dropped.train()
    assert not torch.allclose(dropped(features, initial).slots, plain(features, initial).slots)


def test_evaluation_is_deterministic_with_per_slot_init() -> None:
    module = tiny_spec().build().eval()
    features = torch.randn(2, 6, 5)
    assert torch.equal(module(features).slots, module(features).slots)


@pytest.mark.parametrize("bilevel", [False, True])
def test_gradient_reaches_every_parameter(bilevel: bool) -> None:
    torch.manual_seed(0)
    module = tiny_spec(bilevel=bilevel).build()
    output = module(torch.randn(2, 6, 5), generator=torch.Generator().manual_seed(0))
    (output.slots.square().sum() + output.attention.square().sum()).backward()
    for name, parameter in module.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_bilevel_keeps_values_and_only_the_last_iteration_has_a_graph() -> None:
    torch.manual_seed(0)
    plain = tiny_spec(num_iterations=3).build()
    bilevel = tiny_spec(num_iterations=3, bilevel=True).build()
    bilevel.load_state_dict(plain.state_dict())
    features = torch.randn(2, 6, 5)
    initial = torch.randn(2, 3, 8, requires_grad=True)
    torch.testing.assert_close(bilevel(features, initial).slots, plain(features, initial).slots)
    # The first two iterations are cut from the graph: the bi-level gradient on the initial slots is the
    # gradient of one iteration only, so it differs from full backpropagation through all three.
    (full,) = torch.autograd.grad(plain(features, initial).slots.sum(), initial)
    (truncated,) = torch.autograd.grad(bilevel(features, initial).slots.sum(), initial)
    assert not torch.allclose(full, truncated)
    # It equals the gradient of one iteration taken from the (detached) slots after T−1 iterations.
    two = tiny_spec(num_iterations=2).build()
    one = tiny_spec(num_iterations=1).build()
    two.load_state_dict(plain.state_dict())
    one.load_state_dict(plain.state_dict())
    middle = two(features, initial).slots.detach().requires_grad_(True)
    (one_step,) = torch.autograd.grad(one(features, middle).slots.sum(), middle)
    torch.testing.assert_close(truncated, one_step)
