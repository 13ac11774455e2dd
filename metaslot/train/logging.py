"""Run-folder logging: `metrics.jsonl` (one JSON object per line), optional TensorBoard, rank 0 only.

``metrics.jsonl`` survives a kill at any moment: rows are appended one line per write, so a kill can at
worst cut the last line short, and every reader skips such a torn last line (a line without its
newline). Rewinding it on resume (`keep_rows_up_to`) replaces the whole file atomically, so a kill
there leaves the old file. Other damage, and a failed write, is an error that names the file.
`metaslot.train.loggers.JsonlLogger` writes it through these functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metaslot.errors import CorruptDataError
from metaslot.runtime import files

METRICS_FILE = "metrics.jsonl"


def _jsonable_number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


def metrics_row(step: int, split: str, values: Mapping[str, float]) -> dict[str, Any]:
    """One ``metrics.jsonl`` row: ``{"step", "split", name: value}``, non-finite values as strings."""
    return {"step": step, "split": split, **{name: _jsonable_number(float(v)) for name, v in values.items()}}


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one row as one line in one write (never through a link); a failed write is a `WriteError`
    naming ``path``."""
    files.append_text(path, json.dumps(row) + "\n")


def complete_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the file's complete lines: a last line without its newline (a write cut
    short by a kill) is left out; blank lines are skipped."""
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise CorruptDataError(f"{path} is not text ({error}); move it aside to resume the run") from error
    lines = text.split("\n")[:-1]  # the piece after the last newline is empty or torn
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def parse_line(path: Path, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        row = None
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        raise CorruptDataError(
            f"{path} line {number} is not a metrics row ({line[:60]!r}); delete that line to go on"
        )
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` file (none when it is missing), a torn last line skipped."""
    return [parse_line(path, number, line) for number, line in complete_lines(path)]


def keep_rows_up_to(path: Path, step: int) -> None:
    """Drop the rows newer than ``step`` (and a torn last line), replacing the file atomically.

    Called on resume with the checkpoint's step: what was logged after that checkpoint is logged again.
    """
    if not path.is_file():
        return
    lines = complete_lines(path)
    kept = [line for number, line in lines if parse_line(path, number, line)["step"] <= step]
    payload = "".join(line + "\n" for line in kept).encode()
    if payload != path.read_bytes():
        files.atomic_write_bytes(path, payload)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (for tests and notebooks); a torn last line is skipped."""
    return read_rows(Path(run_dir) / METRICS_FILE)
