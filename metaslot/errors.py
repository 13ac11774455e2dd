"""The errors a user can cause, one base class for all of them; every layer raises these.

Each message already says what went wrong, with the offending value, and how to fix it, so the
command-line programs print it as one line (``metaslot.cli._errors``). Any other exception is a bug
and keeps its traceback. This module imports nothing from the package: it sits below every layer.

Where code and tests have long caught a built-in type, the error derives from it too (a
`ConfigError` is a ``ValueError``, a `MissingFileError` a ``FileNotFoundError``).
"""

from __future__ import annotations


class MetaslotError(Exception):
    """Base of every error whose message already says what went wrong and how to fix it."""


class ConfigError(MetaslotError, ValueError):
    """An option value, a spec field or a combination of them that cannot work."""


class DataError(MetaslotError, ValueError):
    """Data that does not fit what the reader or the model expects (size, split, field, labels)."""


class CorruptDataError(DataError):
    """A data file or record is damaged, foreign or unsafe to read."""


class MissingFileError(MetaslotError, FileNotFoundError):
    """A file or folder the user named, or that an option needs, does not exist."""


class WeightsError(MetaslotError, RuntimeError):
    """Pretrained weights are missing, unreadable or do not fit the layers they are loaded into."""


class MissingDependencyError(MetaslotError, ImportError):
    """An optional package (or its weights) that the chosen option needs is not installed."""


class CheckpointError(MetaslotError):
    """A checkpoint or run folder is missing, truncated, corrupt or from another model."""


class CheckpointMismatchError(CheckpointError, RuntimeError):
    """A checkpoint does not fit the model it is loaded into (e.g. a stage-1 VQ-VAE into stage 2)."""


class DeviceError(MetaslotError):
    """The requested device or precision is not available on this machine."""


class NonFiniteLossError(MetaslotError):
    """The training loss, the weights or the optimiser state became NaN or infinite; the last good
    checkpoint is kept (and a non-finite one is never written)."""


class RunInUseError(MetaslotError):
    """Another training holds the run folder's lock (``train.lock``)."""


class WriteError(MetaslotError, OSError):
    """A file could not be written (disk full, read-only folder, no permission); nothing half-written is left."""


class TrainingInterrupted(MetaslotError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "ConfigError",
    "CorruptDataError",
    "DataError",
    "DeviceError",
    "MetaslotError",
    "MissingDependencyError",
    "MissingFileError",
    "NonFiniteLossError",
    "RunInUseError",
    "TrainingInterrupted",
    "WeightsError",
    "WriteError",
]
