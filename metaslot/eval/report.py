"""Metrics as a printed table and as JSON (which weights, on which split: `metaslot.eval_settings.Provenance`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

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
