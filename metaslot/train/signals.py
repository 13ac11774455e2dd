"""The signals that end a job, and what each program does with them.

A cluster ends a job with SIGTERM (and SLURM warns with SIGUSR1 before the time limit, if asked), a
closed terminal sends SIGHUP, a user Ctrl-C (SIGINT). Python's default for all but SIGINT is to die
without a word. Two behaviours, both leaving one line:

- `StopRequest` (around the training steps): each of `ENDING_SIGNALS` sets a flag that the loop checks
  between optimiser steps, so it can checkpoint the step and exit. A second signal of the same kind
  restores the default behaviour (press Ctrl-C twice to abort at once).
- `stop_at_once` (around every command, `metaslot.cli._errors.user_errors`): the signal raises `Stopped`
  where the program is, so its ``finally`` blocks run (no half-written file stays) and the command ends
  with one line and exit status 128 + signal. SIGINT stays Python's ``KeyboardInterrupt``, handled the
  same way. Forked children (loader workers) ignore the raising handler: their parent stops them.

Outside the main thread (where handlers cannot be installed) both do nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
"""What ends a job: Ctrl-C, the scheduler's kill, a closed terminal, SLURM's pre-timeout warning (USR1)."""


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Stopped(BaseException):
    """A signal of `ENDING_SIGNALS` arrived under `stop_at_once` (a BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` swallows it)."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(f"stopped by {signal_name(signal_number)}")
        self.signal_number = signal_number


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_at_once() -> Iterator[None]:
    """While active, SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 raise `Stopped` in this process (not in its forked children)."""
    if not _in_main_thread():
        yield
        return
    owner = os.getpid()

    def handle(signal_number: int, frame: FrameType | None) -> None:
        if os.getpid() == owner:
            raise Stopped(signal_number)

    previous = {number: signal.signal(number, handle) for number in ENDING_SIGNALS if number != signal.SIGINT}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class StopRequest:
    """Context manager: while active, each of `ENDING_SIGNALS` sets ``signal_number`` instead of ending
    the process; the training loop checkpoints and stops after the current step."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.signal_number is not None:
            signal.signal(signal_number, signal.SIG_DFL)
        self.signal_number = signal_number

    def __enter__(self) -> StopRequest:
        if _in_main_thread():
            for number in ENDING_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)  # type: ignore[arg-type]
        self._previous.clear()
