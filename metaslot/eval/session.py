"""One evaluation with its outputs: metrics JSON, printed table and pictures (rank 0 writes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy
import torch
from jaxtyping import UInt8

from metaslot.eval.evaluate import EvaluationResult, PictureSamples, evaluate, evaluation_mode
from metaslot.eval.pictures import segmentation_grid_image, write_pictures
from metaslot.eval.report import format_table, protocol_record, write_json
from metaslot.eval_settings import EvaluationSettings, Provenance
from metaslot.models.aggregators import AdaSlot
from metaslot.models.interfaces import Pipeline, SamplesReconstructions
from metaslot.runtime.device import autocast


def evaluate_and_report(
    pipeline: Pipeline,
    dataset: torch.utils.data.Dataset,
    settings: EvaluationSettings,
    *,
    output_dir: Path,
    title: str = "evaluation",
    provenance: Provenance | None = None,
    echo: bool = True,
) -> EvaluationResult:
    """Evaluate, then (on rank 0) print the table and write ``evaluation.json`` and the PNGs into ``output_dir``;
    ``provenance`` (which checkpoint, which split, where a ``best`` was chosen) goes into both.

    A failed write (disk full, read-only folder) is a `metaslot.errors.WriteError` raised after the table
    was printed, with no half-written file left.
    """
    spec = settings.spec
    capacity = max(spec.pictures, 64 if spec.gallery_codes > 0 else 0)
    samples = PictureSamples(capacity=capacity) if settings.rank == 0 and capacity > 0 else None
    result = evaluate_with(pipeline, dataset, settings, samples)
    if settings.rank != 0:
        return result
    if (
        samples is not None
        and samples.count
        and isinstance(pipeline, SamplesReconstructions)
        and pipeline.renders
    ):
        samples.reconstructions = [_sampled_reconstructions(pipeline, samples, settings)]
    protocol, overridden = spec.protocol_settings()
    if echo:  # first, so the numbers are shown even when they cannot be written (disk full)
        print(format_table(result, title, protocol), flush=True)
        if provenance is not None:
            print(provenance.describe(), flush=True)
    context = (provenance.as_json() if provenance is not None else {}) | keep_decision(pipeline)
    record = protocol_record(protocol, overridden, result)
    write_json(
        result, output_dir / "evaluation.json", title=title, average=spec.average, protocol=record, **context
    )
    written = []
    if samples is not None:
        written = write_pictures(
            samples,
            result,
            output_dir,
            max_images=spec.pictures,
            gallery_codes=spec.gallery_codes,
            gallery_examples=spec.gallery_examples,
        )
    if echo:
        print(f"metrics: {output_dir / 'evaluation.json'}")
        for path in written:
            print(f"picture: {path}")
    return result


def keep_decision(pipeline: Pipeline) -> dict[str, str]:
    """How an AdaSlot pipeline decided which slots to keep in this evaluation, for evaluation.json:
    ``{"adaslot_keep": "sample" | "argmax"}`` (sampled as released, or the deterministic argmax);
    nothing for the other aggregators, whose keep involves no such choice."""
    aggregator = pipeline.aggregator
    if isinstance(aggregator, AdaSlot):
        return {"adaslot_keep": aggregator.spec.eval_keep}
    return {}


def evaluate_with(
    pipeline: Pipeline,
    dataset: torch.utils.data.Dataset,
    settings: EvaluationSettings,
    pictures: PictureSamples | None = None,
) -> EvaluationResult:
    """`evaluate` under ``settings`` (the one place the record is spelled out as its keywords)."""
    return evaluate(
        pipeline,
        dataset,
        batch_size=settings.batch_size,
        device=settings.device,
        dtype=settings.dtype,
        max_batches=settings.spec.max_batches,
        world_size=settings.world_size,
        rank=settings.rank,
        seed=settings.seed,
        num_workers=settings.num_workers,
        pictures=pictures,
        average=settings.spec.average,
        protocol=settings.spec.protocol_settings()[0],
        clustering_metrics=settings.spec.clustering_metrics,
    )


def batches_for_images(images: int, batch_size: int) -> int:
    return max(1, math.ceil(images / batch_size))


def _sampled_reconstructions(
    pipeline: SamplesReconstructions, samples: PictureSamples, settings: EvaluationSettings
) -> torch.Tensor:
    """Generative pipelines (SLATE, SlotDiffusion): images re-drawn from their slots by the pipeline's sampler."""
    device = settings.device
    images = torch.cat(samples.images)[: max(settings.spec.pictures, 1)].to(device)
    with evaluation_mode(pipeline, device, settings.seed), autocast(device, settings.dtype):
        reconstructions = pipeline.reconstruct(images)
    return reconstructions.float().cpu()


@dataclass(frozen=True)
class Validation:
    """What `SplitEvaluation.validate` returns: the metric means and, when asked for (rank 0 only), the
    segmentation grid of the first images as RGB pixels (for TensorBoard / W&B)."""

    metrics: dict[str, float]
    picture: UInt8[numpy.ndarray, "h w 3"] | None = None


class SplitEvaluation:
    """The evaluation a training run uses (the `metaslot.eval_settings.Evaluation` interface): metric means
    and a picture for validation, and the whole report (JSON, table, pictures) at the end of the run."""

    def validate(
        self, pipeline: Pipeline, dataset: torch.utils.data.Dataset, settings: EvaluationSettings
    ) -> Validation:
        """`evaluate` under ``settings``; its metrics, and on rank 0 the segmentation grid of the first
        ``settings.spec.pictures`` images (none for 0)."""
        pictures = settings.spec.pictures
        samples = PictureSamples(capacity=pictures) if pictures > 0 and settings.rank == 0 else None
        metrics = evaluate_with(pipeline, dataset, settings, samples).metrics
        picture = (
            segmentation_grid_image(samples, pictures) if samples is not None and samples.count else None
        )
        return Validation(metrics=metrics, picture=picture)

    def report(
        self,
        pipeline: Pipeline,
        dataset: torch.utils.data.Dataset,
        settings: EvaluationSettings,
        *,
        output_dir: Path,
        title: str,
        provenance: Provenance,
    ) -> dict[str, float]:
        """`evaluate_and_report`: the table and ``evaluation.json`` name the checkpoint, its step and the
        split; its metrics."""
        return evaluate_and_report(
            pipeline, dataset, settings, output_dir=output_dir, title=title, provenance=provenance
        ).metrics
