"""DataLoader factory: typed batches, resumable epoch order, rank sharding under DDP."""

from __future__ import annotations

import torch
import torch.distributed
from torch.utils.data import DataLoader, Dataset

from metaslot.data.records import Batch, Sample, collate
from metaslot.data.sampling import ResumableSampler


def _quiet_worker(worker_id: int) -> None:
    # Each worker decodes/augments on one thread; many threads per worker only fight for cores.
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset[Sample],
    batch_size: int,
    *,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    distributed: bool = False,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    start_index: int = 0,
) -> DataLoader[Batch]:
    """A DataLoader of ``Batch`` records whose order depends only on (seed, epoch).

    With ``distributed`` (and an initialised process group) each rank reads its own shard.
    ``start_index`` skips this rank's first samples of the epoch, so a resumed run continues where it
    stopped. Augmentation randomness is per (seed, epoch, index), so it differs across workers and
    epochs and does not depend on ``num_workers``. Call ``loader.sampler.set_epoch(e)`` or build a new
    loader per epoch.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    rank, world_size = 0, 1
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise RuntimeError(
                "make_loader(distributed=True) needs an initialised process group: call "
                "torch.distributed.init_process_group first (torchrun) or pass distributed=False"
            )
        rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    sampler = ResumableSampler(
        len(dataset),  # type: ignore[arg-type]
        seed=seed,
        epoch=epoch,
        shuffle=shuffle,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        start_index=start_index,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=_quiet_worker if num_workers > 0 else None,
    )
