"""Run-folder logging: `metrics.jsonl` (one JSON object per line), optional TensorBoard, rank 0 only."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from metaslot.errors import ConfigError


def _jsonable_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


class MetricsLog:
    """Appends ``{"step": ..., "split": ..., name: value}`` rows; a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self._writer: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is an optional extra
            except ImportError as error:
                raise ConfigError(
                    "--tensorboard needs the tensorboard package: pip install 'metaslot[tensorboard]'"
                ) from error
            self._writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {
            "step": step,
            "split": split,
            **{name: _jsonable_number(float(v)) for name, v in values.items()},
        }
        with open(self.path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{split}/{name}", float(value), step)

    def truncate_after(self, step: int) -> None:
        """Drop rows newer than ``step`` (written after the checkpoint we resume from), so resumed logs match."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [
            line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (for tests and notebooks)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []
