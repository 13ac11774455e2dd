"""Faults injected where files are written: a write that fails (disk full) or a process that dies mid-write.

`break_writes` makes every file whose name contains a given piece, opened for writing through
``open``/``io.open`` (what ``Path.write_text`` uses too), write half of what it is given and then
raise: an ``OSError`` with an errno (``ENOSPC``: the disk filled up), or `Killed`, a BaseException
that stands for the process dying there (no ``except Exception`` can catch it, so what is on disk
afterwards is what a kill would leave, bar the cleanup of ``finally`` blocks).
"""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path
from typing import Any

import pytest


class Killed(BaseException):
    """The process died in the middle of a write."""


class HalfWrites:
    """A file object whose first write stores half its data, flushes and then raises ``fault``."""

    def __init__(self, handle: Any, fault: BaseException) -> None:
        self._handle, self._fault = handle, fault

    def write(self, data: Any) -> int:
        self._handle.write(data[: len(data) // 2])
        self._handle.flush()
        raise self._fault

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> HalfWrites:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()


def break_writes(monkeypatch: pytest.MonkeyPatch, name_part: str, fault: BaseException) -> list[str]:
    """From now on, writing a file whose name contains ``name_part`` fails with ``fault``; returns the
    names of the files it struck."""
    real_open = builtins.open
    struck: list[str] = []

    def faulty_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        writing = any(flag in mode for flag in "wax+")
        if writing and isinstance(file, (str, os.PathLike)) and name_part in Path(file).name:
            struck.append(Path(file).name)
            return HalfWrites(handle, fault)
        return handle

    monkeypatch.setattr(builtins, "open", faulty_open)
    monkeypatch.setattr(io, "open", faulty_open)
    return struck


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def temporaries(folder: Path) -> list[Path]:
    """Temporary files (``.<name>.tmp-<pid>``) anywhere below ``folder``."""
    return sorted(path for path in folder.rglob(".*.tmp-*"))
