"""Writing files so that a failure or a kill never leaves half a file behind.

`atomic_write_bytes` writes to a temporary name beside the target (``.<name>.tmp-<pid>``), syncs it
and moves it into place with ``os.replace``: readers see the old file or the new one, never a mix. A
failed write (disk full, read-only folder, no permission) removes the temporary file and raises a
`WriteError` that names the file and says why; `stage_bytes` + `commit` do the same for several files
that must appear together (a checkpoint). A kill leaves at most a temporary file, which
`remove_temporaries` clears once the writer's successor holds the folder.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import BinaryIO

from metaslot.errors import WriteError

TEMPORARY_MARK = ".tmp-"

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.EFBIG: "the file is larger than this file system or process allows",
}


def write_error(path: Path, error: OSError) -> WriteError:
    """The one-line `WriteError` for ``error`` while writing ``path``."""
    if isinstance(error, WriteError):
        return error
    reason = _REASONS.get(error.errno or 0, error.strerror or type(error).__name__)
    return WriteError(
        f"cannot write {path}: {reason} ({error.strerror or error}); nothing half-written was left; "
        "free some space or make the folder writable, then run the command again"
    )


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is moved into place (hidden, named after the writing process)."""
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")


def _write_all(handle: BinaryIO, payload: bytes) -> None:
    handle.write(payload)


def stage_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path``'s temporary name and sync it; `commit` moves it into place."""
    temporary = temporary_path(path)
    try:
        with open(temporary, "wb") as handle:
            _write_all(handle, payload)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as error:
        discard(temporary)
        if isinstance(error, OSError):
            raise write_error(path, error) from error
        raise
    return temporary


def commit(temporary: Path, path: Path) -> None:
    """Move a staged file into place (atomic within one folder)."""
    try:
        os.replace(temporary, path)
    except OSError as error:
        discard(temporary)
        raise write_error(path, error) from error


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Replace ``path`` by ``payload`` all at once; on failure the old file (if any) is left as it was."""
    commit(stage_bytes(path, payload), path)


def discard(path: Path) -> None:
    """Remove a temporary file if it is there (a read-only folder may refuse even that: ignored)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files writers left in ``folder`` (not below it) when they were killed."""
    if not folder.is_dir():
        return []
    leftovers = [path for path in folder.glob(f".*{TEMPORARY_MARK}*") if path.is_file()]
    for path in leftovers:
        discard(path)
    return leftovers
