"""Where training metrics and pictures go: the run folder (``metrics.jsonl``), TensorBoard, Weights & Biases.

Every destination is a :class:`Logger`; :func:`open_loggers` builds the ones a run asked for, as one
:class:`LoggerGroup` that fans each call out (and that is empty on ranks other than 0). TensorBoard
and W&B are optional extras imported only when asked for; a missing package is a ConfigError naming
the ``pip install`` line. W&B honours its own environment (``WANDB_MODE=offline`` keeps everything
under ``<run>/wandb/`` for a later ``wandb sync``); the W&B run id is kept in ``<run>/wandb-run-id.txt``
so a resumed run continues the same W&B run.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, runtime_checkable

import attrs
import numpy
from jaxtyping import UInt8

from metaslot.errors import ConfigError
from metaslot.runtime import files
from metaslot.train.logging import METRICS_FILE, append_row, keep_rows_up_to, metrics_row

WANDB_ID_FILE = "wandb-run-id.txt"


@runtime_checkable
class Logger(Protocol):
    """What the training loop needs from a destination of metrics and pictures."""

    shows_images: bool
    """False where ``log_image`` is a no-op (so nobody draws a picture for nothing)."""

    def log_scalars(self, step: int, split: str, values: Mapping[str, float]) -> None:
        """``values`` of ``split`` ("train", "val", "eval") at optimiser step ``step``."""
        ...

    def log_image(self, step: int, name: str, image: UInt8[numpy.ndarray, "h w 3"]) -> None:
        """An RGB picture (e.g. the validation segmentation grid) under ``name`` at ``step``."""
        ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Run folder


class JsonlLogger:
    """``<run>/metrics.jsonl``, in the format every run has always written; pictures are not kept here
    (the evaluation at the end writes its PNGs into the run folder). Written and rewound by
    `metaslot.train.logging` (append-only lines, atomic rewind, torn last line skipped)."""

    shows_images = False

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / METRICS_FILE

    def log_scalars(self, step: int, split: str, values: Mapping[str, float]) -> None:
        append_row(self.path, metrics_row(step, split, values))

    def log_image(self, step: int, name: str, image: UInt8[numpy.ndarray, "h w 3"]) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        """Drop rows newer than ``step`` (written after the checkpoint a run resumes from)."""
        keep_rows_up_to(self.path, step)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# TensorBoard


class TensorBoardLogger:
    """Event files under ``log_dir`` (``<run>/tensorboard``): scalars as ``split/name``, images by name."""

    shows_images = True

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is an optional extra
        except ImportError as error:
            raise ConfigError(
                "--tensorboard needs the tensorboard package: pip install 'metaslot[tensorboard]'"
            ) from error
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_scalars(self, step: int, split: str, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{split}/{name}", float(value), step)

    def log_image(self, step: int, name: str, image: UInt8[numpy.ndarray, "h w 3"]) -> None:
        self.writer.add_image(name, image, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------------------------------------
# Weights & Biases


@attrs.frozen
class WandbSettings:
    """``--wandb-project`` and ``--wandb-name`` (default: the run's name)."""

    project: str = "metaslot"
    name: str | None = None


def import_wandb() -> ModuleType:
    try:
        import wandb
    except ImportError as error:
        raise ConfigError("--wandb needs the wandb package: pip install 'metaslot[wandb]'") from error
    return wandb


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run folder, created on first use (8 hex digits) and kept for resumes."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)
    files.atomic_write_bytes(path, f"{run_id}\n".encode())
    return run_id


class WandbLogger:
    """One W&B run per run folder; scalars as ``split/name``, images as ``wandb.Image``.

    W&B refuses values at a step below one it has seen (with a warning), so after ``--resume`` it keeps
    the values first logged between the checkpoint and the interruption, where metrics.jsonl is
    truncated and rewritten.
    """

    shows_images = True

    def __init__(
        self,
        run_dir: Path,
        settings: WandbSettings,
        *,
        run_name: str,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.wandb = import_wandb()
        try:
            self.run = self.wandb.init(
                project=settings.project,
                name=settings.name or run_name,
                id=wandb_run_id(run_dir),
                resume="allow",
                dir=str(run_dir),
                config=dict(config or {}),
            )
        except self.wandb.errors.Error as error:  # no API key, no network: one line, not a traceback
            raise ConfigError(
                f"W&B could not start a run ({error}); run `wandb login`, or set WANDB_MODE=offline to log "
                f"under {run_dir / 'wandb'} and upload later with `wandb sync`"
            ) from error

    def log_scalars(self, step: int, split: str, values: Mapping[str, float]) -> None:
        self.run.log({f"{split}/{name}": float(value) for name, value in values.items()}, step=step)

    def log_image(self, step: int, name: str, image: UInt8[numpy.ndarray, "h w 3"]) -> None:
        self.run.log({name: self.wandb.Image(image)}, step=step)

    def close(self) -> None:
        self.run.finish()


# ---------------------------------------------------------------------------------------------
# All of them


@attrs.frozen
class LoggerGroup:
    """Sends every call to each logger in turn; ``close`` closes them all.

    ``metrics_file`` (one of ``loggers``) is the run folder's log, the one ``truncate_after`` rewinds.
    """

    loggers: tuple[Logger, ...]
    metrics_file: JsonlLogger | None = None

    def log_scalars(self, step: int, split: str, values: Mapping[str, float]) -> None:
        for logger in self.loggers:
            logger.log_scalars(step, split, values)

    def log_image(self, step: int, name: str, image: UInt8[numpy.ndarray, "h w 3"]) -> None:
        for logger in self.loggers:
            logger.log_image(step, name, image)

    def truncate_after(self, step: int) -> None:
        if self.metrics_file is not None:
            self.metrics_file.truncate_after(step)

    def close(self) -> None:
        errors = []
        for logger in self.loggers:
            try:
                logger.close()
            except Exception as error:  # noqa: BLE001 - close the others first, then report
                errors.append(error)
        if errors:
            raise errors[0]

    @property
    def wants_images(self) -> bool:
        """Whether any logger shows pictures (so the loop should draw the validation grid)."""
        return any(logger.shows_images for logger in self.loggers)


def open_loggers(
    run_dir: Path,
    *,
    enabled: bool,
    run_name: str,
    tensorboard: bool = False,
    wandb: WandbSettings | None = None,
    config: Mapping[str, Any] | None = None,
) -> LoggerGroup:
    """The run's loggers: metrics.jsonl always, TensorBoard and W&B when asked; none where not ``enabled``."""
    if not enabled:
        return LoggerGroup(())
    metrics_file = JsonlLogger(run_dir)
    loggers: list[Logger] = [metrics_file]
    if tensorboard:
        loggers.append(TensorBoardLogger(run_dir / "tensorboard"))
    if wandb is not None:
        loggers.append(WandbLogger(run_dir, wandb, run_name=run_name, config=config))
    return LoggerGroup(tuple(loggers), metrics_file)
