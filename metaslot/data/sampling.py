"""Epoch-aware, resumable sample order: it depends only on (seed, epoch), never on global RNG state.

The one sampler of the project: `make_loader` and the training loop both use `ResumableSampler`.
It yields ``ItemKey(index, epoch)`` so a dataset can draw its augmentation from
``sample_generator(seed, epoch, index)``: crops differ across epochs and workers, yet are identical
when a run resumes mid-epoch (``start_index`` skips what this rank already consumed).

Training with ``world_size`` processes and ``accumulate`` micro-steps: each rank takes every
``world_size``-th sample of the epoch order, so the ``global_batch_size`` samples of one optimiser step
are always the same consecutive block of the epoch order, whatever the number of processes.
Evaluation uses `evaluation_batches` instead (fixed order, no padding, every sample once).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy
from torch.utils.data import Sampler


class ItemKey(NamedTuple):
    """What the sampler hands to ``Dataset.__getitem__``: the sample index and the current epoch."""

    index: int
    epoch: int


def item_index(key: int | ItemKey) -> int:
    return key.index if isinstance(key, ItemKey) else int(key)


def item_epoch(key: int | ItemKey) -> int:
    return key.epoch if isinstance(key, ItemKey) else 0


def epoch_order(length: int, *, seed: int, epoch: int, shuffle: bool) -> numpy.ndarray:
    """The full sample order of one epoch (a permutation when shuffling)."""
    if not shuffle:
        return numpy.arange(length)
    return numpy.random.Generator(numpy.random.PCG64([seed, epoch])).permutation(length)


class ResumableSampler(Sampler[ItemKey]):
    """Shuffled (or sequential) order from (seed, epoch), sharded over ranks like DistributedSampler.

    Each rank takes every ``world_size``-th sample of the epoch order; without ``drop_last`` the order
    is padded by wrapping around so every rank gets the same count. With ``drop_last`` the epoch is cut
    to whole global batches of ``global_batch_size`` samples (all ranks and accumulation micro-steps of
    one optimiser step together; default ``world_size``), so every optimiser step of an epoch is full.
    ``start_index`` skips this rank's first samples (``batches_done * batch_size``) to resume mid-epoch.
    """

    def __init__(
        self,
        length: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        start_index: int = 0,
        global_batch_size: int | None = None,
    ) -> None:
        global_batch_size = world_size if global_batch_size is None else global_batch_size
        if length <= 0:
            raise ValueError(f"cannot sample from an empty dataset (length {length})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank ({rank}) must be in [0, world_size={world_size})")
        if start_index < 0:
            raise ValueError(f"start_index ({start_index}) must be non-negative")
        if global_batch_size <= 0 or global_batch_size % world_size:
            raise ValueError(
                f"global_batch_size ({global_batch_size}) must be a positive multiple of world_size ({world_size})"
            )
        self.length, self.seed, self.epoch, self.shuffle = length, seed, epoch, shuffle
        self.rank, self.world_size, self.drop_last, self.start_index = (
            rank,
            world_size,
            drop_last,
            start_index,
        )
        self.global_batch_size = global_batch_size

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Move to another epoch (works with persistent workers: the epoch travels in each key)."""
        self.epoch, self.start_index = epoch, start_index

    def per_rank(self) -> int:
        if self.drop_last:
            whole = self.length // self.global_batch_size * self.global_batch_size
            return whole // self.world_size
        return -(-self.length // self.world_size)

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.start_index)

    def __iter__(self) -> Iterator[ItemKey]:
        order = epoch_order(self.length, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        total = self.per_rank() * self.world_size
        if total > self.length:
            order = numpy.resize(order, total)  # wraps around, like DistributedSampler's padding
        mine = order[:total][self.rank :: self.world_size][self.start_index :]
        epoch = self.epoch
        return iter([ItemKey(int(index), epoch) for index in mine])


def evaluation_batches(
    dataset_size: int, batch_size: int, world_size: int = 1, rank: int = 0
) -> list[list[int]]:
    """Fixed order, no padding: process r evaluates samples r, r+W, ...; every sample counted exactly once."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank ({rank}) must be in [0, world_size={world_size})")
    indices = list(range(rank, dataset_size, world_size))
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
