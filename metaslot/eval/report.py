"""Metrics as a printed table and as JSON, and which weights on which split they describe."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metaslot.eval.evaluate import EvaluationResult
from metaslot.runtime import files

_LABELS = {
    "ari": "ARI",
    "fg_ari": "FG-ARI",
    "mbo": "mBO (with bg)",
    "mbo_fg": "mBO (fg only)",
    "miou": "mIoU (with bg)",
    "miou_fg": "mIoU (fg only)",
    "active_slots": "kept slots / image",
    "true_objects": "objects / image",
    "slot_count_abs_error": "|slots − objects|",
    "slot_count_abs_error_with_background": "|slots − (objects + 1)|",
    "segments": "segments / image (slots winning a pixel)",
    "segment_count_abs_error_with_background": "|segments − (objects + 1)|",
    "codes_in_use": "codes in use",
    "code_perplexity": "code perplexity",
    "loss": "loss",
}


def format_table(result: EvaluationResult, title: str = "evaluation") -> str:
    """A plain-text table (fixed width, readable in logs and terminals alike)."""
    rows = [(_LABELS.get(name, name), value) for name, value in result.metrics.items()]
    order = list(_LABELS.values())
    rows.sort(key=lambda row: order.index(row[0]) if row[0] in order else len(order))
    width = max([len(name) for name, _ in rows] + [len(title)])
    lines = [f"{title} ({result.images} images)", "-" * (width + 12)]
    for name, value in rows:
        shown = "n/a" if not math.isfinite(value) else f"{value:.4f}"
        lines.append(f"{name:<{width}}  {shown:>10}")
    return "\n".join(lines)


def write_json(result: EvaluationResult, path: Path, **context: object) -> Path:
    document = {
        **context,
        "images": result.images,
        "metrics": {
            name: (value if math.isfinite(value) else None) for name, value in result.metrics.items()
        },
        "slot_histogram": result.slot_histogram,
        "code_usage": result.code_usage,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise files.write_error(path.parent, error) from error
    files.atomic_write_bytes(path, json.dumps(document, indent=2).encode())
    return path


@dataclass(frozen=True)
class Provenance:
    """Which weights a report scores, and on what.

    ``checkpoint`` is ``last`` (the run's final weights), ``best`` (the best validation score) or the
    name of the checkpoint file given; ``split`` the split reported; ``selected_on`` the split the
    ``best`` checkpoint was chosen on (``train-holdout`` or ``val``; None for any other checkpoint).
    A ``best`` chosen on the split being reported has seen its test data: the report says so.
    """

    checkpoint: str
    split: str
    step: int | None = None
    selected_on: str | None = None

    @property
    def selected_on_reported_split(self) -> bool:
        return self.selected_on is not None and self.selected_on == self.split

    def as_json(self) -> dict[str, Any]:
        return {
            "checkpoint": self.checkpoint,
            "step": self.step,
            "split": self.split,
            "selected_on": self.selected_on,
            "selected_on_reported_split": self.selected_on_reported_split,
        }

    def describe(self) -> str:
        """One line for the printed table."""
        step = f" (step {self.step})" if self.step is not None else ""
        line = f"checkpoint {self.checkpoint}{step}, split {self.split}"
        if self.selected_on is None:
            return line
        if not self.selected_on_reported_split:
            return f"{line}; selected on {self.selected_on}"
        return (
            f"{line}; selected on {self.selected_on}, the split reported here, so this number is optimistic: "
            "report the last checkpoint, or choose the best on --loop.val-split train-holdout"
        )
