"""The model card (``README.md``) that ``save_pretrained`` writes next to the weights.

It says what was trained (preset, model, data, steps) and, when the run evaluated exactly these
weights, the evaluation table, in the Hugging Face model-card layout (YAML front matter, Markdown).
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from metaslot.eval.evaluate import EvaluationResult
from metaslot.eval.report import format_table
from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.pipelines.vqvae import VQVAESpec
from metaslot.pretrained.loading import Origin
from metaslot.train.config import TrainConfig


def _spec_name(spec: object) -> str:
    return type(spec).__name__


def _aggregator_line(model: Any) -> str:
    if isinstance(model, VQVAESpec):
        return "none (stage-1 VQ-VAE)"
    aggregator = model.aggregator
    text = f"`{_spec_name(aggregator)}`, {aggregator.num_slots} slots of width {aggregator.slot_dim}"
    if isinstance(aggregator, MetaSlotSpec):
        text += f", codebook of {aggregator.codebook_size} prototypes"
    return text


def _preset_line(config: TrainConfig, invocation: dict[str, Any] | None) -> str:
    selection = (invocation or {}).get("selection") or {}
    if "model" not in selection or "data" not in selection:
        return f"run `{config.name}`"
    flags = [f"--model {selection['model']}", f"--data {selection['data']}"]
    if selection.get("aggregator") not in (None, "metaslot"):
        flags.append(f"--aggregator {selection['aggregator']}")
    if selection["model"] == "vqvae" and selection.get("vqvae_variant"):
        flags.append(f"--vqvae-variant {selection['vqvae_variant']}")
    overridden = sum(str(word).startswith("--") for word in (invocation or {}).get("overrides") or [])
    more = f" + {overridden} overridden flags (in config.json)" if overridden else ""
    return f"`python -m cli.train {' '.join(flags)}`{more}, run `{config.name}`"


def _data_line(data: Any) -> str:
    if "resolution" not in attrs.fields_dict(type(data)):
        return f"`{_spec_name(data)}`"
    return f"`{_spec_name(data)}` at {data.resolution}×{data.resolution} px"


def _evaluation_section(evaluation: dict[str, Any] | None) -> list[str]:
    if not evaluation or not isinstance(evaluation.get("metrics"), dict):
        return ["## Evaluation", "", "No evaluation of these weights was recorded with the run."]
    metrics = {
        name: float(value) if value is not None else math.nan for name, value in evaluation["metrics"].items()
    }
    result = EvaluationResult(
        metrics=metrics,
        images=int(evaluation.get("images", 0)),
        slot_histogram=evaluation.get("slot_histogram") or [],
        code_usage=evaluation.get("code_usage"),
    )
    title = str(evaluation.get("title", "evaluation"))
    return ["## Evaluation", "", "```text", format_table(result, title), "```"]


def _reference_flags(reference: dict[str, Any]) -> str:
    chosen = reference.get("preset") or {}
    flags = [f"--model {chosen.get('model')}", f"--data {chosen.get('data')}"]
    if chosen.get("aggregator"):
        flags.append(f"--aggregator {chosen['aggregator']}")
    if chosen.get("vqvae_variant"):
        flags.append(f"--vqvae-variant {chosen['vqvae_variant']}")
    return " ".join(flags)


def _reference_section(reference: dict[str, Any] | None) -> list[str]:
    """Where converted weights came from, and what their publishers report (not re-measured here)."""
    if not reference:
        return []
    source = reference.get("source_file") or {}
    lines = [
        "## Source",
        "",
        f"Converted with `python -m cli.convert checkpoint` from the reference checkpoint `{source.get('file')}` "
        f"(format `{source.get('format')}`, {source.get('size')} bytes, SHA-256 `{source.get('sha256')}`).",
    ]
    stage_one = reference.get("stage_one_file")
    if stage_one:
        lines.append(
            f"Its stage-1 VQ-VAE decoder came from `{stage_one.get('file')}` ({stage_one.get('size')} bytes, "
            f"SHA-256 `{stage_one.get('sha256')}`)."
        )
    elif not reference.get("renders", True):
        lines.append(
            "The reference file holds no VQ decoder, so this model segments and scores but draws no images; "
            "convert it again with `--vqvae` and the stage-1 file to render."
        )
    catalog = reference.get("catalog")
    if catalog:
        lines += [
            "",
            f"**{catalog.get('title')}**, published at {catalog.get('source')}.",
            f"Reported by its publishers ({catalog.get('reported_in')}): {', '.join(catalog.get('reported') or [])}.",
            f"Protocol: {catalog.get('protocol')}.",
            "These numbers are the publishers'; they were not re-measured when this folder was written.",
        ]
    return [*lines, ""]


def model_card(origin: Origin, name_for_loading: str) -> str:
    """The card's Markdown; ``name_for_loading`` is what ``metaslot.load`` is shown with (repo id or folder)."""
    config = origin.config
    steps = (
        f"{origin.step} of {config.loop.steps} optimiser steps"
        if origin.step is not None
        else f"{config.loop.steps} optimiser steps planned"
    )
    checkpoint = f" (checkpoint `{origin.checkpoint}`)" if origin.checkpoint else ""
    training_row = (
        f"| training | by the publisher, with the reference code (see Source); preset as trained: "
        f"{config.loop.steps} steps, batch {config.loop.batch_size} |"
        if origin.reference
        else f"| training | {steps}{checkpoint}, batch {config.loop.batch_size}, "
        f"learning rate {config.optim.learning_rate:g}, seed {config.loop.seed} |"
    )
    lines = [
        "---",
        "library_name: metaslot",
        "pipeline_tag: image-segmentation",
        "tags:",
        "- object-centric-learning",
        "- slot-attention",
        "- metaslot",
        "---",
        "",
        f"# {config.name}",
        "",
        "An object-centric model trained with metaslot: it groups an image into slots and gives one "
        "mask per slot.",
        "",
        "| | |",
        "|---|---|",
        f"| preset | {_preset_line(config, origin.invocation)} |"
        if not origin.reference
        else f"| preset | `{_reference_flags(origin.reference)}` (what the reference file was trained as) |",
        f"| model | `{_spec_name(config.model)}` |",
        f"| aggregator | {_aggregator_line(config.model)} |",
        f"| data | {_data_line(config.data)} |",
        training_row,
        "",
        "## Use",
        "",
        "```python",
        "import metaslot",
        "",
        f'model = metaslot.load("{name_for_loading}")',
        'out = model.segment(["my.png"])   # out.masks (b k h w), out.labels (b h w), out.keep (b k)',
        "```",
        "",
        "Every weight, frozen backbone included, is in `model.safetensors`; `config.json` is the training "
        "run's configuration.",
        "",
        *_reference_section(origin.reference),
        *_evaluation_section(origin.evaluation),
        "",
    ]
    return "\n".join(lines)
