"""`ResumableSampler` with ``global_batch_size``: epochs cut to whole optimiser steps, shards still disjoint."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metaslot.data.sampling import ResumableSampler, epoch_order, evaluation_batches


@given(
    length=st.integers(1, 60),
    world_size=st.integers(1, 4),
    per_rank_batch=st.integers(1, 4),
    seed=st.integers(0, 50),
)
def test_epoch_is_cut_to_whole_global_batches(
    length: int, world_size: int, per_rank_batch: int, seed: int
) -> None:
    global_batch = world_size * per_rank_batch
    shards = [
        [
            key.index
            for key in ResumableSampler(
                length,
                seed=seed,
                epoch=2,
                rank=rank,
                world_size=world_size,
                drop_last=True,
                global_batch_size=global_batch,
            )
        ]
        for rank in range(world_size)
    ]
    kept = length // global_batch * global_batch
    assert all(len(shard) == kept // world_size for shard in shards)
    order = epoch_order(length, seed=seed, epoch=2, shuffle=True).tolist()
    assert sorted(index for shard in shards for index in shard) == sorted(order[:kept])


def test_default_global_batch_keeps_the_old_drop_last() -> None:
    assert len(ResumableSampler(10, world_size=3, rank=1, drop_last=True)) == 3
    assert len(ResumableSampler(10, drop_last=True, global_batch_size=4)) == 8
    assert len(ResumableSampler(10, drop_last=True, global_batch_size=4, start_index=4)) == 4


@pytest.mark.parametrize("global_batch", [0, 3])
def test_global_batch_must_be_a_multiple_of_the_ranks(global_batch: int) -> None:
    with pytest.raises(ValueError, match=f"global_batch_size \\({global_batch}\\)"):
        ResumableSampler(10, world_size=2, global_batch_size=global_batch)


def test_evaluation_batches_have_no_padding_and_refuse_bad_ranks() -> None:
    assert evaluation_batches(5, 2) == [[0, 1], [2, 3], [4]]
    assert evaluation_batches(5, 2, world_size=2, rank=1) == [[1, 3]]
    with pytest.raises(ValueError, match="rank"):
        evaluation_batches(5, 2, world_size=2, rank=2)
