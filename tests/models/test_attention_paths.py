"""Both aggregators give the same slots, attention and gradients whichever way they read the features."""

from __future__ import annotations

import attrs
import pytest
import torch

from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec

SHAPES = dict(num_slots=4, slot_dim=8, feature_dim=6, num_iterations=3)
SPECS = {
    "slot_attention": SlotAttentionSpec(**SHAPES),
    "bilevel": SlotAttentionSpec(**SHAPES, bilevel=True),
    "metaslot": MetaSlotSpec(**SHAPES, codebook_size=8, buffer_capacity=16, prune_start=1.0),
}


def run(spec, path: str, training: bool):
    torch.manual_seed(0)
    module = attrs.evolve(spec, attention_path=path).build().train(training)
    features = torch.randn(2, 10, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    output = module(features, generator=torch.Generator().manual_seed(2))
    (output.slots.square().sum() + output.attention.sin().sum()).backward()
    gradients = {name: parameter.grad for name, parameter in module.named_parameters()}
    return output, features.grad, gradients


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("training", [False, True])
def test_projected_and_feature_space_paths_agree(name: str, training: bool) -> None:
    projected, projected_input_grad, projected_grads = run(SPECS[name], "projected", training)
    direct, direct_input_grad, direct_grads = run(SPECS[name], "feature_space", training)
    assert torch.equal(projected.keep, direct.keep) and torch.equal(projected.codes, direct.codes)
    torch.testing.assert_close(direct.slots, projected.slots, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(direct.attention, projected.attention, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(direct_input_grad, projected_input_grad, rtol=1e-3, atol=1e-4)
    assert projected_grads.keys() == direct_grads.keys()
    for parameter, gradient in projected_grads.items():
        if gradient is None:
            assert direct_grads[parameter] is None, parameter
        else:
            torch.testing.assert_close(direct_grads[parameter], gradient, rtol=1e-3, atol=1e-4, msg=parameter)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_auto_projects_only_for_few_tokens(name: str) -> None:
    module = SPECS[name].build()
    total = 2 * SHAPES["num_iterations"] if name == "metaslot" else SHAPES["num_iterations"]
    few = module.norm_features(torch.randn(2, 3, 6))
    many = module.norm_features(torch.randn(2, 400, 6))
    keys, values = module.key_value_source(few, SHAPES["num_slots"], total).keys_values
    torch.testing.assert_close(keys, module.project_keys(few))
    torch.testing.assert_close(values, module.project_values(few))
    assert module.key_value_source(many, SHAPES["num_slots"], total).keys_values is None
    forced = attrs.evolve(SPECS[name], attention_path="feature_space").build()
    assert forced.key_value_source(few, SHAPES["num_slots"], total).keys_values is None
    projected = attrs.evolve(SPECS[name], attention_path="projected").build()
    assert projected.key_value_source(many, SHAPES["num_slots"], total).keys_values is not None


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("training", [False, True])
def test_the_path_is_decided_once_per_forward(name: str, training: bool, monkeypatch) -> None:
    """Every aggregate call of a forward (both MetaSlot stages, both bilevel parts) gets that one decision."""
    from metaslot.models.aggregators import slot_attention as module_file
    from metaslot.ops import slot_attention as ops_file

    decisions, received = [], []
    decide, run_aggregate = ops_file.key_value_source, ops_file.aggregate

    def counting_decision(*args, **kwargs):
        decisions.append(decide(*args, **kwargs))
        return decisions[-1]

    def recording_aggregate(*args, **kwargs):
        received.append(kwargs.get("source"))
        return run_aggregate(*args, **kwargs)

    monkeypatch.setattr(module_file, "key_value_source", counting_decision)
    monkeypatch.setattr(module_file, "aggregate", recording_aggregate)
    if name == "metaslot":
        from metaslot.models.aggregators import metaslot as metaslot_file

        monkeypatch.setattr(metaslot_file, "aggregate", recording_aggregate)
    SPECS[name].build().train(training)(torch.randn(2, 10, 6))
    assert len(decisions) == 1
    assert len(received) == (1 if name == "slot_attention" else 2)
    assert all(source is decisions[0] for source in received)
