"""Sample order as a function of (seed, epoch): resumable mid-epoch and sharded over processes.

Each optimiser step consumes ``batch_size`` consecutive indices of the epoch's permutation; they are
split into ``world_size × accumulate`` micro-batches, so a run's samples per step do not depend on
the number of processes. The last incomplete global batch of an epoch is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import torch

from metaslot.data.sampling import ItemKey
from metaslot.train.errors import ConfigError


@attrs.frozen
class DataOrder:
    dataset_size: int
    batch_size: int
    accumulate: int = 1
    world_size: int = 1
    rank: int = 0
    seed: int = 0

    def __attrs_post_init__(self) -> None:
        parts = self.world_size * self.accumulate
        if self.batch_size % parts != 0:
            raise ConfigError(
                f"--loop.batch-size {self.batch_size} is not divisible by processes × accumulation ({parts}); "
                f"use a multiple of {parts}"
            )
        if self.dataset_size < self.batch_size:
            raise ConfigError(
                f"the training split has {self.dataset_size} samples, fewer than --loop.batch-size {self.batch_size}; "
                "lower the batch size or use a bigger split"
            )

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // (self.world_size * self.accumulate)

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset_size // self.batch_size

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step within the epoch) at which optimiser step ``step`` (0-based) reads its data."""
        return divmod(step, self.steps_per_epoch)

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.dataset_size, generator=generator)

    def micro_batches(self, epoch: int, start: int = 0) -> Iterator[list[ItemKey]]:
        """This process's micro-batches of one epoch, from step-in-epoch ``start`` on.

        Keys carry the epoch so datasets draw augmentations from (seed, epoch, index): independent of
        workers and of where a run was resumed.
        """
        order = self.permutation(epoch)
        micro = self.micro_batch_size
        for step in range(start, self.steps_per_epoch):
            base = step * self.batch_size
            for accumulation_index in range(self.accumulate):
                offset = base + (accumulation_index * self.world_size + self.rank) * micro
                yield [ItemKey(index, epoch) for index in order[offset : offset + micro].tolist()]


class EpochBatches(torch.utils.data.Sampler):
    """A DataLoader ``batch_sampler`` over one epoch of a `DataOrder` from a given step."""

    def __init__(self, order: DataOrder, epoch: int, start: int) -> None:
        self.order, self.epoch, self.start = order, epoch, start

    def __iter__(self) -> Iterator[list[ItemKey]]:
        return self.order.micro_batches(self.epoch, self.start)

    def __len__(self) -> int:
        return (self.order.steps_per_epoch - self.start) * self.order.accumulate


def evaluation_batches(
    dataset_size: int, batch_size: int, world_size: int = 1, rank: int = 0
) -> list[list[int]]:
    """Fixed order, no padding: process r evaluates samples r, r+W, ...; every sample counted exactly once."""
    indices = list(range(rank, dataset_size, world_size))
    return [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]
