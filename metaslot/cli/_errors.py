"""One-line errors for every entry point: what went wrong and how to fix it, then a non-zero exit.

Known user-caused failures (our `MetaslotError`s, missing files, attrs validators' ValueErrors, the
encoders' missing-weights error, the mapping's checkpoint mismatch, LPIPS/TAESD weight errors) are
printed as ``<program>: error: <message>``. ``METASLOT_TRACEBACK=1`` re-raises them for debugging.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from metaslot.train.errors import MetaslotError, TrainingInterrupted

# Matched by class name so this module need not import every model family (and stays cheap for --help).
_KNOWN_ERROR_NAMES = frozenset(
    {
        "WeightsNotFoundError",
        "CheckpointMismatchError",
        "TAESDWeightsError",
        "LPIPSUnavailableError",
        "UnsafeRecordError",
        "SafetensorError",
        "DownloadError",
    }
)
_KNOWN_ERROR_TYPES = (
    MetaslotError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
    ValueError,
    KeyError,
)


def _is_known(error: BaseException) -> bool:
    return isinstance(error, _KNOWN_ERROR_TYPES) or any(
        cls.__name__ in _KNOWN_ERROR_NAMES for cls in type(error).__mro__
    )


def one_line(error: BaseException) -> str:
    message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if isinstance(error, FileNotFoundError) and error.filename and str(error.filename) not in message:
        message = f"{message}: {error.filename}"
    return " ".join(message.split()) or type(error).__name__


@contextlib.contextmanager
def user_errors(program: str) -> Iterator[None]:
    """Turn known errors into one line on stderr and ``SystemExit`` (1, or 128+signal for an interrupt)."""
    try:
        yield
    except TrainingInterrupted as interrupt:
        # Every torchrun rank stops with the same message; rank 0 alone says where the checkpoint is.
        from metaslot.train.distributed import context_from_environment

        if context_from_environment().is_main:
            print(f"{program}: {one_line(interrupt)}", file=sys.stderr)
        raise SystemExit(128 + interrupt.signal_number) from None
    except BaseException as error:  # noqa: BLE001 - re-raised below unless it is a known user error
        if isinstance(error, (SystemExit, KeyboardInterrupt)) or not _is_known(error):
            raise
        if os.environ.get("METASLOT_TRACEBACK", "0") not in ("", "0"):
            raise
        print(f"{program}: error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(1) from None
