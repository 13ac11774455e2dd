"""Epoch-aware, resumable sample order: it depends only on (seed, epoch), never on global RNG state.

The sampler yields ``ItemKey(index, epoch)`` so a dataset can draw its augmentation from
``sample_generator(seed, epoch, index)``: crops differ across epochs and workers, yet are identical
when a run resumes mid-epoch (``start_index`` skips what this rank already consumed).
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
    is padded by wrapping around so every rank gets the same count. ``start_index`` skips this rank's
    first samples (``batches_done * batch_size``) to resume mid-epoch.
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
    ) -> None:
        if length <= 0:
            raise ValueError(f"cannot sample from an empty dataset (length {length})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank ({rank}) must be in [0, world_size={world_size})")
        if start_index < 0:
            raise ValueError(f"start_index ({start_index}) must be non-negative")
        self.length, self.seed, self.epoch, self.shuffle = length, seed, epoch, shuffle
        self.rank, self.world_size, self.drop_last, self.start_index = (
            rank,
            world_size,
            drop_last,
            start_index,
        )

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Move to another epoch (works with persistent workers: the epoch travels in each key)."""
        self.epoch, self.start_index = epoch, start_index

    def per_rank(self) -> int:
        if self.drop_last:
            return self.length // self.world_size
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
