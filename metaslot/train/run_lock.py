"""One training per run folder: an exclusive lock in ``<run>/train.lock`` holding the trainer's PID and host.

The lock is an ``flock`` on that file (the kernel drops it when the process dies, also by ``kill -9``)
plus what the file says: ``{"pid", "host", "started"}``, for the refusal message and for file systems
without ``flock``. A second trainer is refused in one line naming the holder. A lock left by a trainer
that is gone is taken over: on this host when the kernel lock is free (or, without ``flock``, when
the PID is no longer running). A lock written on another host is refused, because from here nobody
can tell whether that trainer still runs; the message says which file to delete if it does not.

Forked children (loader workers) do not keep the lock: the descriptor is closed in every child right
after ``fork`` (and is close-on-exec), so after ``kill -9`` of a trainer its orphaned workers do not
hold up a requeued job. Should something on this host still hold the kernel lock of a file whose
holder is dead (a worker of an older version), the file is replaced and the lock taken over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from metaslot.errors import RunInUseError
from metaslot.runtime import files

LOCK_FILE = "train.lock"
_HELD: set[int] = set()
"""Descriptors of the locks this process holds, closed in forked children (`_forget_in_child`)."""


def _forget_in_child() -> None:
    """In a forked child: close the inherited lock descriptors, so the child never keeps the lock."""
    for descriptor in _HELD:
        try:
            os.close(descriptor)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


@attrs.frozen
class Holder:
    """Who wrote a lock file."""

    pid: int
    host: str
    started: str = "?"

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, since {self.started}"


def this_process() -> Holder:
    return Holder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"))


class RunLock:
    """A held lock on a run folder; `release` (or leaving the `hold` block) gives it back."""

    def __init__(self, path: Path, descriptor: int, previous: Holder | None) -> None:
        self.path = path
        self.descriptor: int | None = descriptor
        self.previous = previous
        """The holder of a stale lock this one took over (None when the folder was free)."""

    def release(self) -> None:
        if self.descriptor is None:
            return
        try:
            if _same_file(self.descriptor, self.path):
                self.path.unlink()
        except OSError:
            pass  # a read-only folder: the kernel lock goes with the descriptor all the same
        finally:
            _HELD.discard(self.descriptor)
            os.close(self.descriptor)
            self.descriptor = None


def acquire(run_dir: Path) -> RunLock:
    """Lock ``run_dir`` for this process; `RunInUseError` when another live trainer holds it."""
    path = run_dir / LOCK_FILE
    taken_over: Holder | None = None
    for _ in range(5):  # the file may be replaced between open and lock by a releasing holder
        descriptor = _open(path)
        try:
            try:
                kernel_lock = _lock(descriptor, path)
            except RunInUseError:
                taken_over = _replace_if_holder_dead(descriptor, path)
                os.close(descriptor)
                continue
            if not _same_file(descriptor, path):
                os.close(descriptor)
                continue
            previous = read_holder(descriptor) or taken_over
            refuse_live_holder(previous, kernel_lock, path)
            _write_holder(descriptor, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(descriptor)
            raise
        _HELD.add(descriptor)
        return RunLock(path, descriptor, previous)
    raise RunInUseError(
        f"could not take the lock {path}: it keeps being replaced; is another training starting?"
    )


@contextlib.contextmanager
def hold(run_dir: Path) -> Iterator[RunLock]:
    lock = acquire(run_dir)
    try:
        yield lock
    finally:
        lock.release()


def _open(path: Path) -> int:
    """Open (or create) the lock file, never through a symbolic link (a planted link is refused)."""
    return files.open_no_follow(path, os.O_RDWR | os.O_CREAT)


def _replace_if_holder_dead(descriptor: int, path: Path) -> Holder:
    """The kernel lock is held: when the file names a holder on this host that is gone, whoever keeps
    the lock is a remnant of it (an orphaned worker); delete the file so the next try makes a new one.
    Otherwise refuse. The holder is read twice, apart, so a trainer that has just taken the lock and
    not yet written its name is not mistaken for the dead one."""
    holder = read_holder(descriptor)
    if holder is None or holder.host != socket.gethostname() or process_alive(holder.pid):
        raise in_use(holder, path)
    time.sleep(0.2)
    if read_holder(descriptor) != holder:
        raise in_use(read_holder(descriptor), path)
    if _same_file(descriptor, path):
        try:
            path.unlink()
        except OSError as error:
            raise files.write_error(path, error) from error
    return holder


def _lock(descriptor: int, path: Path) -> bool:
    """Take the kernel lock: True; False where the file system has no ``flock``; refuse when it is held."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise in_use(read_holder(descriptor), path) from None
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return False
        raise
    return True


def _same_file(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``descriptor`` (a releasing holder deletes it)."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


def read_holder(descriptor: int) -> Holder | None:
    """What the lock file says, or None for an empty or unreadable one."""
    try:
        document: Any = json.loads(os.pread(descriptor, 4096, 0) or b"null")
        return Holder(int(document["pid"]), str(document["host"]), str(document.get("started", "?")))
    except (ValueError, TypeError, KeyError, OSError):
        return None


def refuse_live_holder(holder: Holder | None, kernel_lock: bool, path: Path) -> None:
    """Raise unless the lock file's holder is gone (see the module docstring for how that is decided)."""
    if holder is None:
        return
    if holder.host != socket.gethostname():
        raise in_use(holder, path)
    if not kernel_lock and process_alive(holder.pid) and holder.pid != os.getpid():
        raise in_use(holder, path)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def in_use(holder: Holder | None, path: Path) -> RunInUseError:
    who = holder.describe() if holder else "another process"
    return RunInUseError(
        f"run folder {path.parent} is in use by another training ({who}); wait for it to finish or stop "
        f"it, or train under another --name; if that training is no longer running, delete {path}"
    )


def _write_holder(descriptor: int, path: Path) -> None:
    me = this_process()
    payload = json.dumps({"pid": me.pid, "host": me.host, "started": me.started}).encode()
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, payload, 0)
        os.fsync(descriptor)
    except OSError as error:
        raise files.write_error(path, error) from error
