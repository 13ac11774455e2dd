"""Data loading throughput: shapes generation and LMDB JPEG decoding with the eval/train transforms.

``python -m metaslot.bench.data --quick`` prints images/s for 0 and 2 DataLoader workers. Timing starts
after the first batch so worker start-up is not counted. Numbers depend on the machine and on its load.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy
import torch
from torch.utils.data import Dataset

from metaslot.data.decoding import encode_image, encode_index_map_png
from metaslot.data.lmdb_io import write_records
from metaslot.data.loader import make_loader
from metaslot.data.published import LmdbImageDataset
from metaslot.data.records import Sample
from metaslot.data.shapes import ShapesSpec

BATCH_SIZE = 32


def _loader_throughput(dataset: Dataset[Sample], num_workers: int) -> tuple[int, float]:
    loader = make_loader(dataset, BATCH_SIZE, shuffle=True, num_workers=num_workers, seed=0, epoch=0)
    iterator = iter(loader)
    next(iterator)  # excludes worker start-up
    start, images = time.perf_counter(), 0
    for batch in iterator:
        images += batch.image.shape[0]
    return images, time.perf_counter() - start


def _jpeg_lmdb(path: Path, count: int, size: int = 256) -> None:
    generator = numpy.random.default_rng(0)

    def records():
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


def benchmark_data(quick: bool) -> list[dict]:
    """Throughput rows: {name, workers, images, seconds, images_per_second}."""
    torch.set_num_threads(1)
    shapes_count, lmdb_count = (320, 160) if quick else (4096, 1024)
    rows: list[dict] = []

    shapes = ShapesSpec(resolution=64, train_size=shapes_count).build("train")
    start = time.perf_counter()
    for index in range(min(shapes_count, 256)):
        shapes.draw(index)
    elapsed = time.perf_counter() - start
    rows.append(_row("shapes-64 draw only (numpy)", 0, min(shapes_count, 256), elapsed))
    for workers in (0, 2):
        rows.append(_row("shapes-64 loader", workers, *_loader_throughput(shapes, workers)))

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "jpeg256.lmdb"
        _jpeg_lmdb(path, lmdb_count)
        for train in (False, True):
            dataset = LmdbImageDataset(path, dataset="bench", resolution=256, train=train, seed=0)
            name = f"lmdb-jpeg-256 {'train' if train else 'eval'} transform"
            for workers in (0, 2):
                rows.append(_row(name, workers, *_loader_throughput(dataset, workers)))
    return rows


def _row(name: str, workers: int, images: int, seconds: float) -> dict:
    return {
        "name": name,
        "workers": workers,
        "images": images,
        "seconds": round(seconds, 3),
        "images_per_second": round(images / max(seconds, 1e-9), 1),
    }


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few images (seconds instead of minutes)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    options = parser.parse_args(args)
    rows = benchmark_data(options.quick)
    if options.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(
            f"{row['name']:<36} workers={row['workers']}  {row['images_per_second']:>8.1f} images/s  ({row['images']} in {row['seconds']} s)"
        )


if __name__ == "__main__":
    main()
