"""No checkpoint with NaN/inf weights or optimiser state (issue 14, item 4).

A finite loss (6e27 at step 15) followed by NaN weights after the update was saved and pointed to as
the last good checkpoint. Now the weights, buffers and optimiser state are checked after every step
(one fused reduction, read together with the loss) and again before any checkpoint is written.
"""

from __future__ import annotations

import json

import attrs
import pytest
import torch

from metaslot.errors import NonFiniteLossError
from metaslot.train import finite
from metaslot.train.checkpoint import LoopState, latest_checkpoint, read_tensors, save_checkpoint
from metaslot.train.logging import read_metrics
from tests.support.helpers import tiny_config, train
from tests.support.train_fakes import FakePipelineSpec


def test_weights_that_turn_nan_with_a_finite_loss_stop_the_run_before_the_checkpoint(tmp_path) -> None:
    # The update of step 4, a checkpoint step, leaves a NaN weight; its loss was finite.
    config = attrs.evolve(tiny_config(tmp_path, checkpoint_every=2), model=FakePipelineSpec(poison_after=3))
    with pytest.raises(
        NonFiniteLossError, match=r"tensors became NaN/inf \(loss .*\) at step 4.*step-0000002"
    ):
        train(config)
    checkpoints = config.run_dir / "checkpoints"
    assert latest_checkpoint(checkpoints) == checkpoints / "step-0000002.json"
    assert not list(checkpoints.glob("step-0000004*"))
    weights = read_tensors(checkpoints / "step-0000002.safetensors")
    assert all(bool(torch.isfinite(value.float()).all()) for value in weights.values())
    assert max(row["step"] for row in read_metrics(config.run_dir)) == 3  # step 4 is not logged either
    assert not (config.run_dir / "train.lock").exists()


def test_a_checkpoint_with_nan_optimizer_state_is_not_written(tmp_path) -> None:
    model = FakePipelineSpec().build()
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 3, 4, 4)).loss.backward()
    optimizer.step()
    save_checkpoint(tmp_path, "step-0000001", model=model, optimizer=optimizer, scaler=None,
                    state=LoopState(step=1), data_position={})  # fmt: skip
    optimizer.state[model.colour.weight]["exp_avg_sq"][0, 0] = float("inf")
    with pytest.raises(
        NonFiniteLossError, match="not writing checkpoint step-0000002: optimizer exp_avg_sq of colour.weight"
    ):
        save_checkpoint(tmp_path, "step-0000002", model=model, optimizer=optimizer, scaler=None,
                        state=LoopState(step=2), data_position={})  # fmt: skip
    assert json.loads((tmp_path / "latest.json").read_text()) == {"checkpoint": "step-0000001"}
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "latest.json",
        "step-0000001.json",
        "step-0000001.safetensors",
        "step-0000001.train.safetensors",
    ]


def test_nonfinite_count_finds_nan_and_inf_in_one_reduction_without_overflow() -> None:
    finite_tensors = [torch.full((3,), 3e38), torch.ones(2, 2, dtype=torch.bfloat16), torch.zeros(0)]
    count = finite.nonfinite_count(finite_tensors, torch.device("cpu"))
    assert isinstance(count, torch.Tensor) and count.dim() == 0 and float(count) == 0.0
    broken = [
        *finite_tensors,
        torch.tensor([1.0, float("nan")]),
        torch.tensor([float("-inf")], dtype=torch.float16),
    ]
    assert float(finite.nonfinite_count(broken, torch.device("cpu"))) == 2.0
