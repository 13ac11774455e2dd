"""DataLoader factory: typed batches, resumable epoch order, rank sharding under DDP.

Every loader of the project (training, `make_loader` users, evaluation) collates with
`collate_images`: image datasets give a `Batch` of images, video datasets (MOVi-D) give a `Batch`
of frames (``b t ... -> (b t) ...`` by `metaslot.data.video.frames_as_images`), so the pipelines,
the training loop and the metrics only ever see images.
"""

from __future__ import annotations

import os
import random

import numpy
import torch
from torch.utils.data import DataLoader, Dataset

from metaslot.data.records import Batch, Sample, collate
from metaslot.data.sampling import ResumableSampler
from metaslot.data.video import VideoSample, collate_frames
from metaslot.runtime.distributed import has_process_group, process_rank, world_size


def collate_images(samples: list[Sample] | list[VideoSample]) -> Batch:
    """DataLoader ``collate_fn`` for image pipelines: images as they are, video clips as frames."""
    if samples and isinstance(samples[0], VideoSample):
        return collate_frames(samples)  # type: ignore[arg-type]
    return collate(samples)  # type: ignore[arg-type]


def _quiet_worker(worker_id: int) -> None:
    # Each worker decodes/augments on one thread; many threads per worker only fight for cores.
    torch.set_num_threads(1)
    # Distinct per worker and derived from the loader's own generator, never from the model's RNG
    # (datasets draw augmentations from sample_generator; this only covers stray numpy/random use).
    seed = torch.initial_seed() % 2**32
    numpy.random.seed(seed)
    random.seed(seed)


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (Linux), else the machine's count.

    The same measure torch's DataLoader uses when it warns that there are more workers than CPUs.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_count(requested: int, available: int) -> int:
    """Loader worker processes to start: ``requested``, but never more than the ``available`` CPUs.

    Extra workers only compete for the same cores with each other and with the training process
    (and make torch warn). Configs keep the requested number, so a run records what it asked for.
    """
    return min(requested, available)


def loader_generator(seed: int, epoch: int, start_index: int) -> torch.Generator:
    """The generator a loader draws its worker seeds from: a function of (seed, epoch, start) only.

    Without it the DataLoader would draw them from the global RNG, which the model also uses, and a
    resumed run would no longer repeat the uninterrupted one.
    """
    return torch.Generator().manual_seed(seed * 7_919 + epoch * 104_729 + start_index)


def make_loader(
    dataset: Dataset[Sample] | Dataset[VideoSample],
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
    global_batch_size: int | None = None,
) -> DataLoader[Batch]:
    """A DataLoader of ``Batch`` records whose order depends only on (seed, epoch).

    ``batch_size`` is this process's batch (of samples: clips for a video dataset, whose frames
    then all enter the `Batch`). With ``distributed`` (and an initialised process group) each rank
    reads its own shard. ``start_index`` skips this rank's first samples of the epoch, so a resumed
    run continues where it stopped. With ``drop_last``, ``global_batch_size`` (the samples of all
    ranks and accumulation steps of one optimiser step) cuts the epoch to whole optimiser steps.
    Augmentation randomness is per (seed, epoch, index), so it differs across workers and epochs and
    does not depend on ``num_workers``, which is capped at the CPUs available (`worker_count`). Call
    ``loader.sampler.set_epoch(e)`` or build a new loader per epoch.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    num_workers = worker_count(num_workers, available_cpus())
    rank, processes = 0, 1
    if distributed:
        if not has_process_group():
            raise RuntimeError(
                "make_loader(distributed=True) needs an initialised process group: call "
                "torch.distributed.init_process_group first (torchrun) or pass distributed=False"
            )
        rank, processes = process_rank(), world_size()
    sampler = ResumableSampler(
        len(dataset),  # type: ignore[arg-type]
        seed=seed,
        epoch=epoch,
        shuffle=shuffle,
        rank=rank,
        world_size=processes,
        drop_last=drop_last,
        start_index=start_index,
        global_batch_size=global_batch_size,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_images,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=_quiet_worker if num_workers > 0 else None,
        generator=loader_generator(seed, epoch, start_index),
    )
