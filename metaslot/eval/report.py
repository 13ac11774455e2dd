"""Metrics as a printed table and as JSON (which weights, on which split: `metaslot.eval_settings.Provenance`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from metaslot.eval.evaluate import EvaluationResult
from metaslot.protocols import ProtocolSettings
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


CLASS_MBO_UNAVAILABLE = (
    "not computed: the dataset's records hold instance ids only, no semantic classes "
    "(VOC, COCO, ClevrTex and MOVi-D as converted here)"
)
"""Why mBO^c is missing where a protocol asks for it: no reader of ours keeps class labels."""


def format_table(
    result: EvaluationResult, title: str = "evaluation", protocol: ProtocolSettings | None = None
) -> str:
    """A plain-text table (fixed width, readable in logs and terminals alike); its header names the
    evaluation protocol and its headline numbers come first."""
    rows = [(_LABELS.get(name, name), value) for name, value in result.metrics.items()]
    order = list(_LABELS.values())
    rows.sort(key=lambda row: order.index(row[0]) if row[0] in order else len(order))
    headline: list[tuple[str, float]] = []
    if protocol is not None:
        headline = [
            (f"{label} ({protocol.name})", result.metrics.get(key, float("nan")))
            for label, key in protocol.headline().items()
        ]
    width = max([len(name) for name, _ in rows + headline] + [len(title)])
    lines = [f"{title} ({result.images} images)"]
    if protocol is not None:
        lines.append(protocol.describe())
    lines.append("-" * (width + 12))
    for name, value in headline + ([("", math.nan)] if headline else []) + rows:
        if not name:
            lines.append("-" * (width + 12))
            continue
        shown = "n/a" if not math.isfinite(value) else f"{value:.4f}"
        lines.append(f"{name:<{width}}  {shown:>10}")
    if protocol is not None and protocol.class_mbo:
        lines.append(f"mBO^c ({protocol.name}): {CLASS_MBO_UNAVAILABLE}")
    return "\n".join(lines)


def protocol_record(
    protocol: ProtocolSettings, overridden: list[str], result: EvaluationResult
) -> dict[str, object]:
    """What ``evaluation.json`` says about the protocol: its name, every resolved setting, which were
    overridden, and its headline numbers by the paper's labels (mBO^c with the reason it is missing)."""
    headline: dict[str, object] = {}
    for label, key in protocol.headline().items():
        value = result.metrics.get(key, float("nan"))
        headline[label] = {"metric": key, "value": value if math.isfinite(value) else None}
    if protocol.class_mbo:
        headline["mBO^c"] = {"metric": None, "value": None, "note": CLASS_MBO_UNAVAILABLE}
    return {**protocol.as_json(), "overridden": list(overridden), "headline": headline}


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
