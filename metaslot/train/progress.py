"""Training progress on a terminal (a tqdm bar) or in a log file (one plain line per log step).

A carriage-return bar written to a file (SLURM, nohup, CI) becomes one unreadable line of thousands
of redraws, so :func:`make_progress` draws the bar only when the stream it writes to is a terminal
and prints ``<run> step 120/2000 (6%) loss=0.0123 lr=1.00e-03 3.2 steps/s eta 9m46s`` lines
otherwise. Both take the same calls: ``advance(step, values)`` after every optimiser step,
``write(line)`` for a message (validation results), ``close()``. As before, the progress goes to
stderr and the messages to stdout; the style is chosen from the stream the progress goes to.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Literal, Protocol, runtime_checkable

from tqdm import tqdm

ProgressStyle = Literal["bar", "lines", "off"]


@runtime_checkable
class TextStream(Protocol):
    """What progress output needs from a stream (sys.stderr, a file, io.StringIO)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...

    def isatty(self) -> bool: ...


@runtime_checkable
class Progress(Protocol):
    def advance(self, step: int, values: Mapping[str, str]) -> None:
        """``step`` optimiser steps are done; ``values`` (already formatted) describe the last one."""
        ...

    def write(self, line: str) -> None:
        """Print a message (to the messages stream) without garbling the progress display."""
        ...

    def close(self) -> None: ...


def progress_style(stream: TextStream, enabled: bool) -> ProgressStyle:
    """ "bar" on a terminal, "lines" on anything else (file, pipe), "off" when progress is not wanted."""
    if not enabled:
        return "off"
    return "bar" if stream.isatty() else "lines"


def format_duration(seconds: float) -> str:
    """9 → "9s", 586 → "9m46s", 3720 → "1h02m"."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_progress_line(
    description: str, step: int, total: int, values: Mapping[str, str], steps_per_second: float | None
) -> str:
    """One plain progress line (no carriage return)."""
    parts = [f"{description} step {step}/{total} ({100 * step // max(total, 1)}%)"]
    parts += [f"{name}={value}" for name, value in values.items()]
    if steps_per_second is not None and steps_per_second > 0:
        parts.append(f"{steps_per_second:.3g} steps/s")
        parts.append(f"eta {format_duration((total - step) / steps_per_second)}")
    return " ".join(parts)


class LineProgress:
    """Prints one line at every ``every``-th step and at the last one; the rate is over the last interval."""

    def __init__(
        self,
        total: int,
        *,
        initial: int,
        description: str,
        every: int,
        stream: TextStream,
        messages: TextStream,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.description = description
        self.every = max(1, every)
        self.stream = stream
        self.messages = messages
        self.clock = clock
        self._last_step = initial
        self._last_time = clock()

    def advance(self, step: int, values: Mapping[str, str]) -> None:
        if step % self.every and step != self.total:
            return
        now = self.clock()
        elapsed = now - self._last_time
        rate = (step - self._last_step) / elapsed if elapsed > 0 and step > self._last_step else None
        self._last_step, self._last_time = step, now
        print(
            format_progress_line(self.description, step, self.total, values, rate),
            file=self.stream,
            flush=True,
        )

    def write(self, line: str) -> None:
        print(line, file=self.messages, flush=True)

    def close(self) -> None:
        pass


class BarProgress:
    """The tqdm bar the loop has always drawn on a terminal."""

    def __init__(
        self, total: int, *, initial: int, description: str, stream: TextStream, messages: TextStream
    ) -> None:
        self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, desc=description, file=stream)
        self.messages = messages

    def advance(self, step: int, values: Mapping[str, str]) -> None:
        self.bar.update(step - self.bar.n)
        self.bar.set_postfix(values, refresh=False)

    def write(self, line: str) -> None:
        self.bar.write(line, file=self.messages)

    def close(self) -> None:
        self.bar.close()


class QuietProgress:
    """No progress display (``--no-progress``, ranks other than 0); messages are still printed."""

    def __init__(self, messages: TextStream) -> None:
        self.messages = messages

    def advance(self, step: int, values: Mapping[str, str]) -> None:
        pass

    def write(self, line: str) -> None:
        print(line, file=self.messages, flush=True)

    def close(self) -> None:
        pass


def make_progress(
    total: int,
    *,
    initial: int,
    description: str,
    every: int,
    enabled: bool,
    stream: TextStream | None = None,
    messages: TextStream | None = None,
) -> Progress:
    """The progress display for ``stream`` (default: stderr, where the bar has always gone); messages
    go to ``messages`` (default: stdout, where the validation lines have always gone)."""
    stream = sys.stderr if stream is None else stream
    messages = sys.stdout if messages is None else messages
    style = progress_style(stream, enabled)
    if style == "bar":
        return BarProgress(total, initial=initial, description=description, stream=stream, messages=messages)
    if style == "lines":
        return LineProgress(
            total, initial=initial, description=description, every=every, stream=stream, messages=messages
        )
    return QuietProgress(messages)
