"""One-line errors for every entry point: what went wrong and how to fix it, then a non-zero exit.

Exactly the user errors, the `metaslot.errors.MetaslotError` family that every layer raises, are
printed as ``<program>: error: <message>``; ``METASLOT_TRACEBACK=1`` re-raises them for debugging.
Anything else is a bug and keeps its traceback. A signal that ends the job (SIGTERM, SIGHUP, SIGUSR1/2,
Ctrl-C) ends the command with one line and exit status 128 + signal (`metaslot.train.signals`).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Iterator

from metaslot.errors import MetaslotError, TrainingInterrupted
from metaslot.train.signals import Stopped, signal_name, stop_at_once

# PyTorch re-raises a loader worker's error with the worker's traceback as its message.
_WORKER_ERROR = re.compile(r"^Caught \w+ (in DataLoader worker process \d+)\.\nOriginal Traceback")


def worker_message(error: BaseException, message: str) -> str:
    """A loader worker's error as the worker's own message plus where it happened (not its traceback)."""
    match = _WORKER_ERROR.match(message)
    if match is None:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    prefix = f"{type(error).__module__}.{type(error).__qualname__}: "
    own = last.removeprefix(prefix) if last.startswith(prefix) else last.partition(": ")[2] or last
    return f"{own} ({match.group(1)})"


def one_line(error: BaseException) -> str:
    """The error's message on one line (with the file name a ``FileNotFoundError`` carries; a loader
    worker's error without the worker's traceback)."""
    message = worker_message(error, str(error))
    if isinstance(error, FileNotFoundError) and error.filename and str(error.filename) not in message:
        message = f"{message}: {error.filename}"
    return " ".join(message.split()) or type(error).__name__


@contextlib.contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Turn user errors into one line on stderr and ``SystemExit`` (1, or 128+signal for an interrupt)."""
    try:
        with stop_at_once():
            yield
    except (Stopped, KeyboardInterrupt) as stopped:
        number = stopped.signal_number if isinstance(stopped, Stopped) else signal.SIGINT
        print(
            f"{program}: stopped by {signal_name(number)}{' (Ctrl-C)' if number == signal.SIGINT else ''}; "
            "nothing half-written was left; run the same command again to go on",
            file=sys.stderr,
        )
        raise SystemExit(128 + number) from None
    except TrainingInterrupted as interrupt:
        # Every torchrun rank stops with the same message; rank 0 alone says where the checkpoint is.
        from metaslot.runtime.distributed import context_from_environment

        if context_from_environment().is_main:
            print(f"{program}: {one_line(interrupt)}", file=sys.stderr)
        raise SystemExit(128 + interrupt.signal_number) from None
    except MetaslotError as error:
        if os.environ.get("METASLOT_TRACEBACK", "0") not in ("", "0"):
            raise
        print(f"{program}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(1) from None
