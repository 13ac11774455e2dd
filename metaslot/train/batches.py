"""How a run's samples reach the optimiser steps: one global batch per step, split over processes and
accumulation micro-steps, in an order that depends only on (seed, epoch) so a resumed run reads on.

Each optimiser step consumes ``batch_size`` consecutive samples of the epoch order (the project's one
`ResumableSampler`, through `metaslot.data.loader.make_loader`), sharded over processes and split into
``world_size × accumulate`` micro-batches, so a run's samples per step do not depend on the number of
processes. The last incomplete global batch of an epoch is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import torch

from metaslot.data.loader import make_loader
from metaslot.data.records import Batch
from metaslot.errors import ConfigError


@attrs.frozen
class BatchLayout:
    """How one optimiser step's ``batch_size`` samples split over processes and accumulation steps."""

    dataset_size: int
    batch_size: int
    accumulate: int = 1
    world_size: int = 1

    def __attrs_post_init__(self) -> None:
        parts = self.world_size * self.accumulate
        if self.batch_size % parts != 0:
            raise ConfigError(
                f"--loop.batch-size {self.batch_size} is not divisible by processes × accumulation ({parts}); "
                f"use a multiple of {parts}"
            )
        if self.dataset_size < self.batch_size:
            raise ConfigError(
                f"the training split has {self.dataset_size} samples, fewer than --loop.batch-size "
                f"{self.batch_size}; lower the batch size or use a bigger split"
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

    def samples_before(self, step_in_epoch: int) -> int:
        """How many samples of the epoch this process has consumed before ``step_in_epoch``."""
        return step_in_epoch * self.accumulate * self.micro_batch_size


def training_batches(
    dataset: torch.utils.data.Dataset,
    layout: BatchLayout,
    *,
    start_step: int,
    seed: int,
    num_workers: int,
    distributed: bool,
    pin_memory: bool,
) -> Iterator[Batch]:
    """This process's micro-batches from optimiser step ``start_step`` on, epoch after epoch."""
    epoch, within = layout.position(start_step)
    while True:
        yield from make_loader(
            dataset,
            layout.micro_batch_size,
            shuffle=True,
            num_workers=num_workers,
            seed=seed,
            epoch=epoch,
            distributed=distributed,
            drop_last=True,
            pin_memory=pin_memory,
            start_index=layout.samples_before(within),
            global_batch_size=layout.batch_size,
        )
        epoch, within = epoch + 1, 0


def fewer_workers_note(requested: int, used: int) -> str:
    """The one line that says the loader starts fewer workers than ``--loop.num-workers`` asked for."""
    return (
        f"data loader: {used} worker{'s' if used != 1 else ''} instead of --loop.num-workers {requested}, "
        f"one per available CPU"
    )
