"""The loader: typed batches, order from (seed, epoch) only, exact resume, rank shards, workers."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.data import loader
from metaslot.data.decoding import encode_image, encode_index_map_png
from metaslot.data.lmdb_io import write_records
from metaslot.data.loader import available_cpus, make_loader, worker_count
from metaslot.data.published import LmdbImageDataset
from metaslot.data.records import Batch
from metaslot.data.sampling import ItemKey, ResumableSampler
from metaslot.data.shapes import ShapesSpec


def _indices(sampler: ResumableSampler) -> list[int]:
    return [key.index for key in sampler]


@given(
    length=st.integers(1, 40),
    world_size=st.integers(1, 4),
    drop_last=st.booleans(),
    seed=st.integers(0, 100),
)
def test_ranks_partition_the_epoch(length: int, world_size: int, drop_last: bool, seed: int) -> None:
    shards = [
        _indices(
            ResumableSampler(
                length, seed=seed, epoch=1, rank=rank, world_size=world_size, drop_last=drop_last
            )
        )
        for rank in range(world_size)
    ]
    assert len({len(shard) for shard in shards}) == 1
    together = [index for shard in shards for index in shard]
    if drop_last:
        assert len(set(together)) == len(together) == (length // world_size) * world_size
    else:
        assert set(together) == set(range(length))


@given(length=st.integers(1, 30), start=st.integers(0, 30), epoch=st.integers(0, 5))
def test_resume_skips_exactly_the_seen_samples(length: int, start: int, epoch: int) -> None:
    full = list(ResumableSampler(length, seed=3, epoch=epoch))
    resumed = list(ResumableSampler(length, seed=3, epoch=epoch, start_index=start))
    assert resumed == full[start:]
    assert all(key.epoch == epoch for key in resumed)


def test_order_depends_on_seed_and_epoch_only() -> None:
    torch.manual_seed(0)
    first = _indices(ResumableSampler(50, seed=1, epoch=0))
    torch.manual_seed(123)
    assert _indices(ResumableSampler(50, seed=1, epoch=0)) == first
    assert _indices(ResumableSampler(50, seed=1, epoch=1)) != first
    assert _indices(ResumableSampler(50, seed=2, epoch=0)) != first
    assert _indices(ResumableSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
    sampler = ResumableSampler(50, seed=1, epoch=0)
    sampler.set_epoch(1)
    assert _indices(sampler) == _indices(ResumableSampler(50, seed=1, epoch=1))


def test_loader_gives_batches_and_resumes() -> None:
    dataset = ShapesSpec(resolution=32, train_size=10).build("train")
    loader = make_loader(dataset, 4, shuffle=True, seed=5, epoch=2)
    batches = list(loader)
    assert all(isinstance(batch, Batch) for batch in batches)
    assert [batch.image.shape[0] for batch in batches] == [4, 4, 2]
    resumed = list(make_loader(dataset, 4, shuffle=True, seed=5, epoch=2, start_index=4))
    assert len(resumed) == 2
    assert torch.equal(resumed[0].segment, batches[1].segment)
    assert len(list(make_loader(dataset, 4, drop_last=True))) == 2


def test_worker_count_is_the_request_capped_at_the_cpus() -> None:
    assert worker_count(4, 2) == 2  # a 128-px shapes preset (4 workers) on a 2-core machine
    assert worker_count(4, 16) == 4
    assert worker_count(0, 2) == 0
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def test_loader_starts_no_more_workers_than_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "available_cpus", lambda: 2)
    dataset = ShapesSpec(resolution=32, val_size=4).build("val")
    assert make_loader(dataset, 2, num_workers=4).num_workers == 2  # built, not iterated: no processes
    assert make_loader(dataset, 2, num_workers=1).num_workers == 1


@pytest.mark.distributed  # DataLoader worker processes
def test_workers_match_single_process(tmp_path) -> None:
    generator = torch.Generator().manual_seed(0)
    records = []
    for _ in range(6):
        image = torch.randint(0, 256, (20, 28, 3), dtype=torch.uint8, generator=generator).numpy()
        labels = torch.randint(0, 4, (20, 28), dtype=torch.uint8, generator=generator).numpy()
        records.append({"image": encode_image(image), "segment": encode_index_map_png(labels)})
    write_records(tmp_path / "tiny.lmdb", records)
    dataset = LmdbImageDataset(tmp_path / "tiny.lmdb", dataset="voc", resolution=16, train=True, seed=4)
    dataset[ItemKey(0, 0)]  # the parent holds an open handle before the workers fork
    single = list(make_loader(dataset, 3, seed=9, epoch=1, num_workers=0))
    parallel = list(make_loader(dataset, 3, seed=9, epoch=1, num_workers=2, persistent_workers=True))
    for first, second in zip(single, parallel, strict=True):
        assert torch.equal(first.image, second.image) and torch.equal(first.segment, second.segment)
    other_epoch = list(make_loader(dataset, 6, seed=9, epoch=1, shuffle=False))[0]
    next_epoch = list(make_loader(dataset, 6, seed=9, epoch=2, shuffle=False))[0]
    assert not torch.equal(other_epoch.image, next_epoch.image)  # augmentation changes with the epoch


@pytest.mark.distributed
def test_distributed_loader_uses_the_process_group(tmp_path) -> None:
    import torch.distributed as dist

    dataset = ShapesSpec(resolution=32, train_size=6).build("train")
    with pytest.raises(RuntimeError, match="init_process_group"):
        make_loader(dataset, 2, distributed=True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        loader = make_loader(dataset, 2, distributed=True, seed=1, epoch=0)
        assert isinstance(loader.sampler, ResumableSampler) and loader.sampler.world_size == 1
        assert sum(batch.image.shape[0] for batch in loader) == 6
    finally:
        dist.destroy_process_group()
