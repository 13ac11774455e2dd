"""SIGINT/SIGTERM become a flag the loop checks between optimiser steps, so it can checkpoint and exit."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopRequest:
    """Context manager: while active, SIGINT/SIGTERM set ``signal_number`` instead of killing the process.

    A second signal of the same kind restores the default behaviour (press Ctrl-C twice to abort at once).
    Outside the main thread (where handlers cannot be installed) it does nothing.
    """

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.signal_number is not None:
            signal.signal(signal_number, signal.SIG_DFL)
        self.signal_number = signal_number

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, previous)  # type: ignore[arg-type]
        self._previous.clear()
