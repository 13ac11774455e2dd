"""Schedule, data order and checkpoint pointer: small hand-checked cases and properties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.data.records import Sample
from metaslot.data.sampling import ItemKey, ResumableSampler, epoch_order, evaluation_batches, item_index
from metaslot.errors import ConfigError
from metaslot.train.batches import BatchLayout, fewer_workers_note, training_batches
from metaslot.train.checkpoint import LoopState, latest_checkpoint, prune_checkpoints, save_checkpoint
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


def _micro_batches(layout: BatchLayout, rank: int, epoch: int, start_step: int = 0) -> list[list[int]]:
    """What the loop's loader gives one rank: its sampler's keys in micro-batches."""
    sampler = ResumableSampler(
        layout.dataset_size,
        seed=5,
        epoch=epoch,
        rank=rank,
        world_size=layout.world_size,
        drop_last=True,
        start_index=layout.samples_before(start_step),
        global_batch_size=layout.batch_size,
    )
    indices = [key.index for key in sampler]
    micro = layout.micro_batch_size
    return [indices[start : start + micro] for start in range(0, len(indices), micro)]


@given(st.integers(1, 3), st.integers(1, 2), st.integers(1, 4), st.integers(0, 3), st.integers(0, 5))
def test_ranks_and_micro_batches_cover_each_global_batch_once(
    world: int, accumulate: int, micro: int, epoch: int, extra: int
) -> None:
    batch = world * accumulate * micro
    layout = BatchLayout(batch * 3 + extra, batch, accumulate, world)
    streams = [_micro_batches(layout, rank, epoch) for rank in range(world)]
    assert all(len(stream) == layout.steps_per_epoch * accumulate for stream in streams)
    order = epoch_order(layout.dataset_size, seed=5, epoch=epoch, shuffle=True).tolist()
    for step in range(layout.steps_per_epoch):
        seen = []
        for rank in range(world):
            for index in range(accumulate):
                seen += streams[rank][step * accumulate + index]
        # the same consecutive block of the epoch order whatever the number of processes
        assert sorted(seen) == sorted(order[step * batch : (step + 1) * batch])
    # resuming mid-epoch continues with the same micro-batches
    assert _micro_batches(layout, 0, epoch, start_step=1) == streams[0][accumulate:]


class _IndexImages(torch.utils.data.Dataset):
    """Image i is filled with i; the label map records the epoch of the key."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key: ItemKey) -> Sample:
        index = item_index(key)
        return Sample(
            image=torch.full((3, 2, 2), float(index)),
            segment=torch.full((2, 2), key.epoch, dtype=torch.long),
            num_objects=index,
        )


def test_training_batches_resume_at_any_step_and_cross_epochs() -> None:
    layout = BatchLayout(10, 4, accumulate=2)  # 2 steps per epoch, 2 samples dropped per epoch
    options = dict(seed=3, num_workers=0, distributed=False, pin_memory=False)
    stream = training_batches(_IndexImages(), layout, start_step=0, **options)
    straight = [next(stream) for _ in range(8)]  # 4 steps × 2 micro-batches = 2 epochs
    assert [batch.segment[0, 0, 0].item() for batch in straight] == [0] * 4 + [1] * 4
    for start_step in (1, 2, 3):
        resumed = training_batches(_IndexImages(), layout, start_step=start_step, **options)
        for expected in straight[2 * start_step :]:
            assert torch.equal(next(resumed).num_objects, expected.num_objects)
    first_epoch = torch.cat([batch.num_objects for batch in straight[:4]]).tolist()
    assert len(set(first_epoch)) == 8  # no sample twice within an epoch


def test_epochs_differ_and_keys_carry_the_epoch() -> None:
    assert not numpy.array_equal(
        epoch_order(32, seed=1, epoch=0, shuffle=True), epoch_order(32, seed=1, epoch=1, shuffle=True)
    )
    sampler = ResumableSampler(32, seed=1, epoch=3, drop_last=True, global_batch_size=4)
    assert {key.epoch for key in sampler} == {3}
    assert BatchLayout(32, 4).position(17) == (2, 1)


def test_batch_not_divisible_or_too_large_is_an_error() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        BatchLayout(100, 6, accumulate=4)
    with pytest.raises(ConfigError, match="fewer than --loop.batch-size"):
        BatchLayout(3, 4)


def test_fewer_workers_note_names_the_flag_and_both_counts() -> None:
    note = fewer_workers_note(4, 2)
    assert "\n" not in note and "2 workers" in note and "--loop.num-workers 4" in note
    assert "1 worker " in fewer_workers_note(4, 1)


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
