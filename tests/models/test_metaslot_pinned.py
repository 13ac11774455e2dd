"""MetaSlot on one small fixed example, pinned to stored numbers so its behaviour cannot drift.

The numbers below were computed at commit 07873d1 and checked, at that commit, equal (to rounding) to
the paper-era reference module (``MetaSlot.forward`` of c602fa4, ``spec/reference.md`` §1.4.2) given the
same weights, with its feature noise off and its exact quantiser: slots, attention, keep mask, codes and
every parameter's gradient, at evaluation and in training on both paths, on both attention paths. A
change that alters any of them changes what "MetaSlot" means: check it against the reference again
before updating these numbers.

Every weight is set explicitly (not drawn), so initialiser changes do not move the example.
"""

from __future__ import annotations

import pytest
import torch

from metaslot.models.aggregators import MetaSlot, MetaSlotSpec

EVAL_SLOTS = [
    -5.111681, 3.06232, 0.517479, -4.694267, -6.475791, 3.298944, 0.341913, -3.888732,
    -5.871792, 3.236161, 0.486799, -4.058682, -3.990792, 3.909162, -0.380219, -8.289827,
    -6.475791, 3.298944, 0.341913, -3.888732, -4.793738, 3.097123, 0.468984, -4.619572,
]  # fmt: skip
EVAL_ATTENTION = [
    0.499753, 0.500937, 0.49878, 0.493178, 0.0, 0.0, 0.0, 0.0,
    0.500247, 0.499063, 0.50122, 0.506822, 0.390604, 0.399947, 0.477483, 0.485352,
    0.0, 0.0, 0.0, 0.0, 0.609396, 0.600053, 0.522517, 0.514648,
]  # fmt: skip
EVAL_KEEP = [[True, False, True], [True, False, True]]
EVAL_CODES = [[0, -1, 1], [0, -1, 1]]

UNPRUNED_SLOTS = [
    -5.097063, 3.060783, 0.510657, -4.705193, -5.097064, 3.060783, 0.510657, -4.705193,
    -5.863673, 3.236015, 0.488308, -4.060458, -3.990799, 3.906401, -0.383351, -8.272756,
    -3.990799, 3.906401, -0.383351, -8.272756, -4.796839, 3.097121, 0.468288, -4.617728,
]  # fmt: skip
UNPRUNED_ATTENTION = [
    0.333058, 0.333292, 0.332675, 0.330177, 0.333058, 0.333292, 0.332675, 0.330177,
    0.333885, 0.333415, 0.33465, 0.339646, 0.281646, 0.286369, 0.323276, 0.326826,
    0.281646, 0.286369, 0.323276, 0.326826, 0.436707, 0.427262, 0.353449, 0.346348,
]  # fmt: skip
UNPRUNED_CODES = [[0, 0, 1], [0, 0, 1]]

# Norm of each parameter's gradient of `_loss` (initial slots = the initialiser's mean, so its log-std
# gets none; the query layer norm's bias gets none up to rounding, by symmetry, and is left out).
PRUNED_GRADIENT_NORMS = {
    "initializer.mean": 3.994641,
    "norm_queries.weight": 3.08805,
    "project_queries.weight": 2.238644,
    "norm_features.weight": 1.209205,
    "norm_features.bias": 1.260671,
    "project_keys.weight": 0.743236,
    "project_values.weight": 3.225951,
    "gru.weight_ih": 8.715585,
    "gru.weight_hh": 12.118012,
    "gru.bias_ih": 3.555041,
    "gru.bias_hh": 4.412116,
    "norm_mlp.weight": 4.455482,
    "norm_mlp.bias": 3.151119,
    "mlp.0.weight": 16.177107,
    "mlp.0.bias": 2.809,
    "mlp.2.weight": 4.111859,
    "mlp.2.bias": 1.067601,
    "codebook_state.codebook": 11.300052,
}
UNPRUNED_GRADIENT_NORMS = {
    "initializer.mean": 4.490024,
    "norm_queries.weight": 2.467826,
    "project_queries.weight": 2.492033,
    "norm_features.weight": 1.505688,
    "norm_features.bias": 7.37946,
    "project_keys.weight": 0.67546,
    "project_values.weight": 8.412565,
    "gru.weight_ih": 8.903903,
    "gru.weight_hh": 12.475513,
    "gru.bias_ih": 3.778051,
    "gru.bias_hh": 5.375568,
    "norm_mlp.weight": 11.278581,
    "norm_mlp.bias": 3.073482,
    "mlp.0.weight": 20.057434,
    "mlp.0.bias": 3.37415,
    "mlp.2.weight": 8.388433,
    "mlp.2.bias": 1.565802,
    "codebook_state.codebook": 12.954545,
}

ATTENTION_PATHS = ["projected", "feature_space"]


def _fixed_module(attention_path: str, prune_start: float = 0.02) -> MetaSlot:
    """Batch 2, 4 tokens of width 3, 3 slots of width 4, 2 iterations per stage, 5 codes; no noise."""
    spec = MetaSlotSpec(
        num_slots=3,
        slot_dim=4,
        feature_dim=3,
        num_iterations=2,
        codebook_size=5,
        buffer_capacity=6,
        noise_weight=0.0,
        prune_start=prune_start,
        attention_path=attention_path,  # type: ignore[arg-type]
    )
    module = MetaSlot(spec)
    with torch.no_grad():
        for index, (name, parameter) in enumerate(sorted(module.named_parameters())):
            values = torch.arange(parameter.numel(), dtype=torch.float32)
            # Sharper query/key projections, so attention is far from uniform and slots compete.
            scale = 3.0 if name in ("project_queries.weight", "project_keys.weight") else 1.0
            parameter.copy_((scale * torch.sin(1.3 * values + index)).reshape(parameter.shape))
    return module


def _features() -> torch.Tensor:
    return 2.0 * torch.cos(0.37 * torch.arange(24, dtype=torch.float32) ** 1.5).reshape(2, 4, 3)


def _loss(slots: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    slot_weights = torch.sin(torch.arange(slots.numel(), dtype=torch.float32)).reshape(slots.shape)
    attention_weights = torch.cos(torch.arange(attention.numel(), dtype=torch.float32)).reshape(
        attention.shape
    )
    return (slots * slot_weights).sum() + (attention * attention_weights).sum()


def _close(actual: torch.Tensor, pinned: list[float]) -> None:
    torch.testing.assert_close(actual.detach().flatten(), torch.tensor(pinned), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("attention_path", ATTENTION_PATHS)
def test_evaluation_matches_the_pinned_reference_numbers(attention_path: str) -> None:
    module = _fixed_module(attention_path).eval()
    output = module(_features())
    _close(output.slots, EVAL_SLOTS)
    _close(output.attention, EVAL_ATTENTION)
    assert output.keep.tolist() == EVAL_KEEP
    assert output.codes.tolist() == EVAL_CODES


@pytest.mark.parametrize("attention_path", ATTENTION_PATHS)
@pytest.mark.parametrize("prune", [True, False], ids=["prune-path", "unpruned-path"])
def test_training_without_noise_matches_the_pinned_reference_numbers(
    attention_path: str, prune: bool
) -> None:
    # p(step 0) = 1 takes the prune path for sure; 1e-9 practically never does.
    module = _fixed_module(attention_path, prune_start=1.0 if prune else 1e-9).train()
    initial = module.initializer.mean.expand(2, -1, -1)  # the reference's query (no sampling noise)
    output = module(_features(), initial)
    _close(output.slots, EVAL_SLOTS if prune else UNPRUNED_SLOTS)
    _close(output.attention, EVAL_ATTENTION if prune else UNPRUNED_ATTENTION)
    assert output.keep.tolist() == (EVAL_KEEP if prune else [[True] * 3] * 2)
    assert output.codes.tolist() == (EVAL_CODES if prune else UNPRUNED_CODES)

    _loss(output.slots, output.attention).backward()
    pinned = PRUNED_GRADIENT_NORMS if prune else UNPRUNED_GRADIENT_NORMS
    norms = {
        name: float(parameter.grad.norm()) for name, parameter in module.named_parameters() if name in pinned
    }
    assert norms.keys() == pinned.keys()
    for name, norm in norms.items():
        assert norm == pytest.approx(pinned[name], rel=1e-4, abs=1e-5), name
