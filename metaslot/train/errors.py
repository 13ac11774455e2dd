"""Errors a user can cause in training and evaluation; the CLI prints each as one line."""

from __future__ import annotations


class MetaslotError(Exception):
    """Base of every error whose message already says what went wrong and how to fix it."""


class ConfigError(MetaslotError, ValueError):
    """An option value or a combination of options that cannot work."""


class DeviceError(MetaslotError):
    """The requested device is not available on this machine."""


class CheckpointError(MetaslotError):
    """A checkpoint or run folder is missing, truncated, corrupt or from another model."""


class NonFiniteLossError(MetaslotError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(MetaslotError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number
