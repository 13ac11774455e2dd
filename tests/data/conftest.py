"""Writers for test fixtures in the *published* record layout (pickled dict records, reference.md §3.1)."""

from __future__ import annotations

import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import numpy
import pytest


def as_numpy1_pickle(data: bytes) -> bytes:
    """Rewrite a numpy-2 pickle so it names ``numpy.core.*`` as files written under numpy 1.x do.

    Frames are dropped (they are optional) so the changed string lengths need no frame bookkeeping.
    """
    operations = list(pickletools.genops(data))
    out = bytearray()
    for position, (opcode, argument, start) in enumerate(operations):
        end = operations[position + 1][2] if position + 1 < len(operations) else len(data)
        raw = data[start:end]
        if opcode.name == "FRAME":
            continue
        if opcode.name == "SHORT_BINUNICODE" and argument.startswith("numpy._core"):
            text = argument.replace("numpy._core", "numpy.core", 1).encode()
            raw = b"\x8c" + bytes([len(text)]) + text
        elif opcode.name == "GLOBAL" and argument.startswith("numpy._core"):
            raw = raw.replace(b"numpy._core", b"numpy.core", 1)
        out += raw
    assert b"numpy._core" not in out
    return bytes(out)


def write_published_lmdb(
    path: Path,
    records: list[dict[str, Any]],
    *,
    protocol: int = 4,
    numpy1: bool = False,
    raw_values: dict[bytes, bytes] | None = None,
) -> Path:
    """Single-file LMDB with ``%06d`` keys, pickled ``__keys__`` and pickled dict records."""
    environment = lmdb.open(str(path), subdir=False, map_size=1 << 30)
    keys = [b"%06d" % index for index in range(len(records))]
    with environment.begin(write=True) as transaction:
        for key, record in zip(keys, records, strict=True):
            value = pickle.dumps(record, protocol=protocol)
            transaction.put(key, as_numpy1_pickle(value) if numpy1 else value)
        transaction.put(b"__keys__", pickle.dumps(keys, protocol=protocol))
        for key, value in (raw_values or {}).items():
            transaction.put(key, value)
    environment.close()
    return path


def random_instances(generator: numpy.random.Generator, height: int, width: int, count: int) -> numpy.ndarray:
    """A label map with ``count`` rectangles on background 0 (labels 1..count, all visible)."""
    labels = numpy.zeros((height, width), numpy.uint8)
    for label in range(1, count + 1):
        top, left = generator.integers(0, height - 4), generator.integers(0, width - 4)
        labels[top : top + 4 + generator.integers(0, 6), left : left + 4 + generator.integers(0, 6)] = label
    return labels


@pytest.fixture
def published_writer() -> Callable[..., Path]:
    return write_published_lmdb


@pytest.fixture
def numpy1_pickle() -> Callable[[bytes], bytes]:
    return as_numpy1_pickle


@pytest.fixture
def instances() -> Callable[..., numpy.ndarray]:
    return random_instances
