"""Ops fed NaN, infinities, float labels or tensors of the wrong rank fail loudly, naming the argument.

Issue 14, items 8 and 13. With shape checking on (the test suite's default) non-finite inputs to the
quantiser and the slot-attention loop raise; the codebook upkeep never admits non-finite slots. With
shape checking off (the default at run time) wrong ranks and dtypes still get one clear message: those
cases run in a subprocess with ``METASLOT_TYPECHECK=0``, where the jaxtyping/beartype wrappers are absent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from metaslot.models.aggregators import MetaSlot
from metaslot.ops import NonFiniteError, masked_slot_attention, quantize
from tests.support.specs import tiny_metaslot

NON_FINITE = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("bad", NON_FINITE)
def test_quantize_refuses_a_non_finite_slot_instead_of_calling_it_code_0(bad: float) -> None:
    slots = torch.randn(2, 3, 4)
    slots[1, 2, 0] = bad
    with pytest.raises(NonFiniteError, match=r"quantize: slots \(shape \(2, 3, 4\)\) holds NaN or infinite"):
        quantize(slots, torch.randn(6, 4))


def test_metaslot_refuses_nan_features_naming_them() -> None:
    features = torch.randn(2, 7, 5)
    features[0, 3, 1] = float("nan")
    with pytest.raises(NonFiniteError, match="features"):
        MetaSlot(tiny_metaslot())(features)


@pytest.mark.parametrize("codebook_update", ["gradient", "both"])
def test_update_codebook_never_admits_non_finite_slots(codebook_update: str) -> None:
    torch.manual_seed(0)
    module = MetaSlot(tiny_metaslot(codebook_update=codebook_update, dead_code_timeout=1))
    generator = torch.Generator().manual_seed(0)
    finite_kept = 0
    # 8 buffer rows, 2 images per step: the one-off k-means runs at step 3 (6 >= min(6, 8)) and codes
    # unused for one step die, so every upkeep path reads the buffer after NaN slots were offered.
    for step in range(6):
        output = module(torch.randn(2, 7, 5), generator=generator)
        slots = output.slots.detach().clone()
        slots[0, 0] = float("nan")
        slots[1, 1, 2] = float("inf")
        offered = dataclasses.replace(output, slots=slots)
        module.update_codebook(offered, generator=generator)
        finite = torch.isfinite(slots).all(dim=-1)
        finite_kept += int((output.keep & finite).sum())
        state = module.codebook_state
        assert torch.isfinite(state.buffer_vectors).all(), f"step {step}: non-finite slot in the ring buffer"
        assert torch.isfinite(module.codebook).all(), f"step {step}: non-finite prototype"
        assert int(state.buffer_fill) == min(finite_kept, 8), "a non-finite slot was counted as written"
    assert bool(module.codebook_state.kmeans_done)


def test_non_finite_epsilon_is_refused_by_the_spec_and_the_op() -> None:
    for bad in NON_FINITE:
        with pytest.raises(ValueError, match="epsilon"):
            tiny_metaslot(epsilon=bad)
        with pytest.raises(ValueError, match="epsilon"):
            masked_slot_attention(
                torch.randn(1, 2, 4), torch.randn(1, 3, 4), torch.randn(1, 3, 4), epsilon=bad
            )


def test_nan_noise_weight_is_refused_by_the_spec() -> None:
    with pytest.raises(ValueError, match="noise_weight must be >= 0, got nan"):
        tiny_metaslot(noise_weight=float("nan"))


# Each case is a call that must raise ValueError whose message contains every listed fragment.
UNCHECKED_SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    import metaslot
    from metaslot import ops

    assert not metaslot.typechecking_enabled()
    b, k, d, n = 2, 3, 4, 5
    cases = {
        "quantize slots without batch axis": lambda: ops.quantize(torch.randn(k, d), torch.randn(6, d)),
        "quantize codebook of another width": lambda: ops.quantize(torch.randn(b, k, d), torch.randn(6, d + 1)),
        "attention values without batch axis": lambda: ops.masked_slot_attention(
            torch.randn(b, k, d), torch.randn(b, n, d), torch.randn(n, d)
        ),
        "attention integer keys": lambda: ops.masked_slot_attention(
            torch.randn(b, k, d), torch.ones(b, n, d, dtype=torch.long), torch.randn(b, n, d)
        ),
        "prune float codes": lambda: ops.prune_duplicates(torch.tensor([[0.0, 1.0]])),
        "ari flat labels": lambda: ops.adjusted_rand_index(torch.zeros(16, dtype=torch.long), torch.zeros(1, 16, dtype=torch.long)),
        "ari float labels": lambda: ops.adjusted_rand_index(
            torch.tensor([[0.0, 0.3, 0.6, 0.6]]), torch.tensor([[0, 1, 2, 2]])
        ),
        "ring buffer rows of another width": lambda: ops.write_ring_buffer(
            ops.empty_ring_buffer(4, d), torch.randn(3, d + 1), torch.ones(3, dtype=torch.bool)
        ),
        "masks to labels without slot axis": lambda: ops.masks_to_labels(torch.rand(b, 8, 8)),
    }
    results = {}
    for name, call in cases.items():
        try:
            call()
        except Exception as error:
            results[name] = [type(error).__name__, isinstance(error, ValueError), str(error)]
        else:
            results[name] = ["no error", False, ""]
    print("RESULTS " + json.dumps(results))
    """
)

UNCHECKED_CASES = {
    "quantize slots without batch axis": ["quantize", "slots", "(3, 4)", "3 axes"],
    "quantize codebook of another width": ["quantize", "codebook", "(6, 5)", "d=4 from slots"],
    "attention values without batch axis": ["masked_slot_attention", "values", "(5, 4)"],
    "attention integer keys": ["masked_slot_attention", "keys", "torch.int64", "floating-point"],
    "prune float codes": ["prune_duplicates", "codes", "torch.float32", "integer"],
    "ari flat labels": ["pred", "(16,)", "2 axes"],
    "ari float labels": ["pred", "torch.float32", "integers", ".long()"],
    "ring buffer rows of another width": ["write_ring_buffer", "vectors", "(3, 5)", "d=4"],
    "masks to labels without slot axis": ["masks_to_labels", "masks", "(2, 8, 8)", "4 axes"],
}


@pytest.fixture(scope="module")
def unchecked_results() -> dict[str, list]:
    environment = {**os.environ, "METASLOT_TYPECHECK": "0", "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        [sys.executable, "-c", UNCHECKED_SCRIPT], env=environment, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    line = next(line for line in finished.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line[len("RESULTS ") :])


@pytest.mark.parametrize("case", sorted(UNCHECKED_CASES))
def test_wrong_rank_or_dtype_names_the_argument_with_shape_checking_off(
    unchecked_results: dict[str, list], case: str
) -> None:
    error_type, is_value_error, message = unchecked_results[case]
    assert error_type == "ShapeError" and is_value_error, f"{case}: {error_type}: {message}"
    for fragment in UNCHECKED_CASES[case]:
        assert fragment in message, f"{case}: {fragment!r} missing from {message!r}"
