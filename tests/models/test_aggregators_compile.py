"""MetaSlot and Slot Attention compile whole (``torch.compile(fullgraph=True)``) on the CPU: no graph
break, no data-dependent Python branch, no host read — what CUDA graphs and a compiled GPU step need.
So does a decoder at the fixed shape (``pack_kept_slots=False``); the packed decode's kept count is
data, so it cannot.

The ``aot_eager`` backend traces the forward and its backward as a GPU compile does (dynamo, then
AOTAutograd on fake tensors) without inductor's minutes of C++ compilation on this CPU. Shape checking
cannot be traced, so the script runs in a subprocess with it off.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

COMPILE_SCRIPT = textwrap.dedent(
    """
    import itertools
    import torch
    torch.set_num_threads(1)
    from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
    from metaslot.models.decoders import MLPDecoderSpec
    specs = {
        "metaslot": lambda path: MetaSlotSpec(
            num_slots=3, slot_dim=8, feature_dim=5, codebook_size=16, buffer_capacity=12, attention_path=path
        ),
        "slot-attention": lambda path: SlotAttentionSpec(num_slots=3, slot_dim=8, feature_dim=5, attention_path=path),
    }
    for (name, spec), path in itertools.product(specs.items(), ("projected", "feature_space")):
        torch.manual_seed(0)
        module = spec(path).build()
        compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
        features = torch.randn(2, 6, 5)
        output = compiled(features)
        output.slots.sum().backward()
        assert module.project_keys.weight.grad is not None
        module.update_codebook(output)
        module.eval()
        with torch.no_grad():
            compiled_eval, eager_eval = compiled(features), module(features)
        torch.testing.assert_close(compiled_eval.slots, eager_eval.slots)
        assert torch.equal(compiled_eval.keep, eager_eval.keep)
        print("compiled ok", name, path)
    decoder = MLPDecoderSpec(hidden_channels=(8,), pack_kept_slots=False).build(8, 4, 6)
    keep = torch.tensor([[True, False, True], [True, True, False]])
    slots = torch.randn(2, 3, 8)
    compiled = torch.compile(decoder, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(slots, keep).reconstruction, decoder(slots, keep).reconstruction)
    print("compiled ok fixed-shape decoder")
    """
)


@pytest.mark.slow
def test_the_aggregators_and_a_fixed_shape_decoder_compile_with_fullgraph() -> None:
    """Shape checking cannot be traced, so this runs in a subprocess with it switched off."""
    environment = {**os.environ, "METASLOT_TYPECHECK": "0", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_SCRIPT], capture_output=True, text=True, env=environment, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for aggregator in ("metaslot", "slot-attention"):
        for path in ("projected", "feature_space"):
            assert f"compiled ok {aggregator} {path}" in result.stdout
    assert "compiled ok fixed-shape decoder" in result.stdout
