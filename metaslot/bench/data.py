"""Data loading throughput: shapes generation, and an LMDB file of 256×256 JPEGs with the eval/train transforms.

Each timed repeat is one pass over the dataset through ``make_loader`` (batch 32) with persistent
workers; the warm-up pass starts the workers, so their start-up is not counted. Images/s are
min/median/max over the passes. Numbers depend on the machine and on its load.

Run through the CLI: ``python -m cli.bench data --quick`` (this module's ``python -m`` does the same).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import attrs
import numpy
import torch
from torch.utils.data import Dataset

from metaslot.bench.timing import Timing, time_step
from metaslot.data.decoding import encode_image, encode_index_map_png
from metaslot.data.lmdb_io import write_records
from metaslot.data.loader import make_loader
from metaslot.data.published import LmdbImageDataset
from metaslot.data.records import Sample
from metaslot.data.shapes import ShapesSpec

BATCH_SIZE = 32
WORKERS = (0, 2)
Scale = Literal["smoke", "quick", "full"]


@attrs.frozen
class DataSizes:
    """How many images each dataset holds (one timed repeat reads them all once)."""

    shapes: int
    lmdb: int
    lmdb_resolution: int = 256
    workers: tuple[int, ...] = WORKERS


def sizes(scale: Scale) -> DataSizes:
    if scale == "smoke":
        return DataSizes(shapes=8, lmdb=8, lmdb_resolution=64, workers=(0,))
    if scale == "quick":
        return DataSizes(shapes=128, lmdb=96)
    return DataSizes(shapes=1024, lmdb=512)


def _loader_pass(dataset: Dataset[Sample], num_workers: int) -> Callable[[], None]:
    """One call = one pass over ``dataset``; workers persist across passes (started by the warm-up)."""
    loader = make_loader(
        dataset,
        BATCH_SIZE,
        shuffle=True,
        num_workers=num_workers,
        seed=0,
        epoch=0,
        persistent_workers=True,
    )

    def step() -> None:
        for _ in loader:
            pass

    return step


def _draw_all(dataset: Dataset[Sample]) -> Callable[[], None]:
    """Generate every sample in the main process, without batching (the generator's own cost)."""

    def step() -> None:
        for index in range(len(dataset)):  # type: ignore[arg-type]
            dataset[index]

    return step


def write_jpeg_lmdb(path: Path, count: int, size: int = 256) -> None:
    """``count`` records of a ``size``² JPEG and a PNG label map, as the converters write them."""
    generator = numpy.random.default_rng(0)

    def records() -> Iterator[dict[str, bytes]]:
        for _ in range(count):
            # Smooth random pictures compress like photos (noise would inflate the JPEGs).
            coarse = generator.integers(0, 256, (size // 16, size // 16, 3), dtype=numpy.uint8)
            picture = numpy.kron(coarse, numpy.ones((16, 16, 1), numpy.uint8))
            labels = numpy.kron(
                generator.integers(0, 8, (8, 8)), numpy.ones((size // 8, size // 8), numpy.int64)
            )
            yield {
                "image": encode_image(picture, ".jpg", quality=90),
                "segment": encode_index_map_png(labels.astype(numpy.uint8)),
            }

    write_records(path, records())


def _row(name: str, workers: int | None, images: int, timing: Timing) -> dict:
    return {"name": name, "workers": workers, "images": images, **timing.throughput(images)}


def benchmark_data(scale: Scale, repeats: int, warmup: int) -> list[dict]:
    """Throughput rows ``{name, workers, images, min_per_s, median_per_s, max_per_s, repeats}``."""
    chosen = sizes(scale)
    cpu = torch.device("cpu")
    rows: list[dict] = []
    shapes = ShapesSpec(resolution=64, train_size=chosen.shapes).build("train")
    timing = time_step(_draw_all(shapes), device=cpu, repeats=repeats, warmup=warmup)
    rows.append(_row("shapes-64 samples (main process)", None, chosen.shapes, timing))
    for workers in chosen.workers:
        timing = time_step(_loader_pass(shapes, workers), device=cpu, repeats=repeats, warmup=max(warmup, 1))
        rows.append(_row("shapes-64 loader", workers, chosen.shapes, timing))

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "jpeg.lmdb"
        resolution = chosen.lmdb_resolution
        write_jpeg_lmdb(path, chosen.lmdb, size=resolution)
        for train in (False, True):
            dataset = LmdbImageDataset(path, dataset="bench", resolution=resolution, train=train, seed=0)
            name = f"lmdb-jpeg-{resolution} {'train' if train else 'eval'} transform"
            for workers in chosen.workers:
                step = _loader_pass(dataset, workers)
                timing = time_step(step, device=cpu, repeats=repeats, warmup=max(warmup, 1))
                rows.append(_row(name, workers, chosen.lmdb, timing))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        f"data: images/s median [min–max] over passes, batch {BATCH_SIZE}",
        f"{'source':<36} {'workers':>7} {'images':>6} {'images/s':>26}",
    ]
    for row in rows:
        workers = "-" if row["workers"] is None else str(row["workers"])
        spread = f"{row['median_per_s']:.1f} [{row['min_per_s']:.1f}–{row['max_per_s']:.1f}]"
        lines.append(f"{row['name']:<36} {workers:>7} {row['images']:>6} {spread:>26}")
    return "\n".join(lines)
