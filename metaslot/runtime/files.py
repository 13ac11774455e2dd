"""Writing files so that a failure or a kill never leaves half a file behind.

`atomic_write_bytes` writes to a temporary name beside the target (``.<name>.tmp-<pid>``), syncs it
and moves it into place with ``os.replace``: readers see the old file or the new one, never a mix. A
failed write (disk full, read-only folder, no permission) removes the temporary file and raises a
`WriteError` that names the file and says why; `stage_bytes` + `commit` do the same for several files
that must appear together (a checkpoint). A kill leaves at most a temporary file, which
`remove_temporaries` clears once the writer's successor holds the folder.

Nothing is written through a symbolic link: a link where a file is to be written, or a linked
folder inside a run folder (`refuse_links_below`), is refused in one line naming it, and the link's
target is left as it was (a planted ``train.lock`` link once had its target overwritten). The
temporary name is predictable, so it is created exclusively (``O_EXCL | O_NOFOLLOW``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from metaslot.errors import RunInUseError, WriteError

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


def link_error(path: Path) -> WriteError:
    """The one-line refusal to write ``path``, a symbolic link (or a folder reached through one)."""
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return WriteError(
        f"refusing to write {path}: it is a symbolic link{target}, and a run writes only its own files, "
        "never through a link; remove the link (or choose another --name / folder) and run again"
    )


def refuse_link(path: Path) -> None:
    """Raise `link_error` when ``path`` itself is a symbolic link."""
    if os.path.islink(path):
        raise link_error(path)


def refuse_links_below(folder: Path, names: Iterable[str]) -> None:
    """Refuse a symbolic link at ``folder/<name>`` for each of ``names``, or anywhere below such an entry
    that is a folder: the entries a writer owns in ``folder`` (a run's checkpoints, its evaluation)."""
    for name in names:
        entry = folder / name
        refuse_link(entry)
        if not entry.is_dir():
            continue
        for directory, subfolders, file_names in os.walk(entry, followlinks=False):
            for child in (*subfolders, *file_names):
                refuse_link(Path(directory) / child)


def no_follow(path: str | os.PathLike[str], flags: int) -> int:
    """An ``opener`` for ``open``: never opens through a symbolic link (ELOOP), never inherited by exec."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def _new_file(path: str | os.PathLike[str], flags: int) -> int:
    return no_follow(path, flags | os.O_CREAT | os.O_EXCL)


def open_no_follow(path: Path, flags: int) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (`link_error`); other failures `write_error`."""
    try:
        return no_follow(path, flags)
    except OSError as error:
        raise _open_error(path, error) from None


def _open_error(path: Path, error: OSError) -> WriteError:
    if error.errno == errno.ELOOP or os.path.islink(path):
        return link_error(path)
    return write_error(path, error)


def append_text(path: Path, text: str) -> None:
    """Append ``text`` in one write, never through a link; a failure is a `WriteError` naming ``path``."""
    try:
        with open(path, "a", opener=no_follow) as handle:
            handle.write(text)
    except OSError as error:
        raise _open_error(path, error) from error


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is moved into place (hidden, named after the writing process)."""
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")


def _write_all(handle: BinaryIO, payload: bytes) -> None:
    handle.write(payload)


def stage_bytes(path: Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path``'s temporary name and sync it; `commit` moves it into place.

    Refuses a link at ``path``; the temporary file is made anew (a planted one is removed first)."""
    refuse_link(path)
    temporary = temporary_path(path)
    discard(temporary)
    try:
        with open(temporary, "wb", opener=_new_file) as handle:
            _write_all(handle, payload)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as error:
        if not (isinstance(error, FileExistsError) or os.path.islink(temporary)):
            discard(temporary)  # never remove what this call did not create
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


@contextlib.contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold ``folder/.<what>.lock`` (an ``flock``, dropped by the kernel when the process dies) while one
    writer fills ``folder``; a second one is refused in one line (`RunInUseError`)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(folder, error) from error
    path = folder / f".{what}.lock"
    descriptor = open_no_follow(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUseError(
                f"another {what} is writing into {folder} right now; wait for it to finish, or write this "
                "one elsewhere with --output FOLDER"
            ) from None
        yield
    finally:
        os.close(descriptor)
