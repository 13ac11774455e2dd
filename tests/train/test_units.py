"""Schedule, data order and checkpoint pointer: small hand-checked cases and properties."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.train.checkpoint import LoopState, latest_checkpoint, prune_checkpoints, save_checkpoint
from metaslot.train.data_order import DataOrder, evaluation_batches
from metaslot.train.errors import ConfigError
from metaslot.train.schedules import warmup_cosine


def test_warmup_then_cosine_by_hand() -> None:
    schedule = dict(peak=1.0, total_steps=100, warmup_steps=10, final=0.0)
    assert warmup_cosine(0, **schedule) == pytest.approx(0.1)
    assert warmup_cosine(9, **schedule) == pytest.approx(1.0)
    assert warmup_cosine(10, **schedule) == pytest.approx(1.0)
    assert warmup_cosine(55, **schedule) == pytest.approx(0.5)
    assert warmup_cosine(100, **schedule) == pytest.approx(0.0)


@given(st.integers(0, 200), st.integers(0, 50), st.floats(0, 1e-3))
def test_schedule_is_bounded_and_non_increasing_after_warmup(step: int, warmup: int, final: float) -> None:
    schedule = dict(peak=2e-3, total_steps=200, warmup_steps=warmup, final=final)
    value = warmup_cosine(step, **schedule)
    assert 0 < value <= 2e-3 + 1e-12 or (value == final == 0)
    if step >= warmup:
        assert warmup_cosine(step + 1, **schedule) <= value + 1e-15


@given(st.integers(1, 3), st.integers(1, 2), st.integers(1, 4), st.integers(0, 3))
def test_ranks_and_micro_batches_cover_each_global_batch_once(
    world: int, accumulate: int, micro: int, epoch: int
) -> None:
    batch = world * accumulate * micro
    size = batch * 3 + 1
    orders = [DataOrder(size, batch, accumulate, world, rank, seed=5) for rank in range(world)]
    streams = [list(order.micro_batches(epoch)) for order in orders]
    permutation = orders[0].permutation(epoch).tolist()
    for step in range(orders[0].steps_per_epoch):
        seen = []
        for rank in range(world):
            for index in range(accumulate):
                seen += [key.index for key in streams[rank][step * accumulate + index]]
        assert sorted(seen) == sorted(permutation[step * batch : (step + 1) * batch])
    # resuming mid-epoch continues with the same keys
    assert list(orders[0].micro_batches(epoch, start=1)) == streams[0][accumulate:]


def test_epochs_differ_and_keys_carry_the_epoch() -> None:
    order = DataOrder(32, 4, seed=1)
    assert not torch.equal(order.permutation(0), order.permutation(1))
    assert {key.epoch for batch in order.micro_batches(3) for key in batch} == {3}
    assert order.position(17) == (2, 1)


def test_batch_not_divisible_or_too_large_is_an_error() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        DataOrder(100, 6, accumulate=4)
    with pytest.raises(ConfigError, match="fewer than --loop.batch-size"):
        DataOrder(3, 4)


def test_evaluation_batches_count_every_sample_once() -> None:
    batches = [batch for rank in range(3) for batch in evaluation_batches(10, 2, 3, rank)]
    assert sorted(index for batch in batches for index in batch) == list(range(10))


def test_latest_pointer_and_pruning(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(model.parameters())
    for step in (1, 2, 3):
        save_checkpoint(
            tmp_path,
            f"step-{step:07d}",
            model=model,
            optimizer=optimizer,
            scaler=None,
            state=LoopState(step=step),
            data_position={"epoch": 0, "step_in_epoch": step},
        )
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(path.name for path in tmp_path.glob("step-*.json")) == [
        "step-0000002.json",
        "step-0000003.json",
    ]
    assert latest_checkpoint(tmp_path).name == "step-0000003.json"
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
    assert math.isfinite(LoopState().step)
