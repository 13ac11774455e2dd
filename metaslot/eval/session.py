"""One evaluation with its outputs: metrics JSON, printed table and pictures (rank 0 writes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy
import torch
from jaxtyping import UInt8

from metaslot.eval.evaluate import EvaluationResult, PictureSamples, evaluate, evaluation_mode
from metaslot.eval.pictures import segmentation_grid_image, write_pictures
from metaslot.eval.report import Provenance, format_table, write_json
from metaslot.models.interfaces import Pipeline, SamplesReconstructions
from metaslot.runtime.device import autocast


def evaluate_and_report(
    pipeline: Pipeline,
    dataset: torch.utils.data.Dataset,
    *,
    output_dir: Path,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    max_batches: int | None = None,
    pictures: int = 8,
    gallery_codes: int = 12,
    gallery_examples: int = 6,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
    num_workers: int = 0,
    title: str = "evaluation",
    echo: bool = True,
    average: Literal["image", "batch"] = "image",
    provenance: Provenance | None = None,
) -> EvaluationResult:
    """Evaluate, then (on rank 0) print the table and write ``evaluation.json`` and the PNGs into ``output_dir``;
    ``provenance`` (which checkpoint, which split, where a ``best`` was chosen) goes into both.

    A failed write (disk full, read-only folder) is a `metaslot.errors.WriteError` raised after the table
    was printed, with no half-written file left.
    """
    capacity = max(pictures, 64 if gallery_codes > 0 else 0)
    samples = PictureSamples(capacity=capacity) if rank == 0 and capacity > 0 else None
    result = evaluate(
        pipeline,
        dataset,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        max_batches=max_batches,
        world_size=world_size,
        rank=rank,
        seed=seed,
        num_workers=num_workers,
        pictures=samples,
        average=average,
    )
    if rank == 0 and samples is not None and samples.count and isinstance(pipeline, SamplesReconstructions):
        samples.reconstructions = [_sampled_reconstructions(pipeline, samples, pictures, device, dtype, seed)]
    if rank == 0:
        if echo:  # first, so the numbers are shown even when they cannot be written (disk full)
            print(format_table(result, title), flush=True)
            if provenance is not None:
                print(provenance.describe(), flush=True)
        context = provenance.as_json() if provenance is not None else {}
        write_json(result, output_dir / "evaluation.json", title=title, average=average, **context)
        written = []
        if samples is not None:
            written = write_pictures(
                samples,
                result,
                output_dir,
                max_images=pictures,
                gallery_codes=gallery_codes,
                gallery_examples=gallery_examples,
            )
        if echo:
            print(f"metrics: {output_dir / 'evaluation.json'}")
            for path in written:
                print(f"picture: {path}")
    return result


def batches_for_images(images: int, batch_size: int) -> int:
    return max(1, math.ceil(images / batch_size))


def _sampled_reconstructions(
    pipeline: SamplesReconstructions,
    samples: PictureSamples,
    count: int,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
) -> torch.Tensor:
    """Generative pipelines (SLATE, SlotDiffusion): images re-drawn from their slots by the pipeline's sampler."""
    images = torch.cat(samples.images)[: max(count, 1)].to(device)
    with evaluation_mode(pipeline, device, seed), autocast(device, dtype):
        reconstructions = pipeline.reconstruct(images)
    return reconstructions.float().cpu()


@dataclass(frozen=True)
class Validation:
    """What `SplitEvaluation.validate` returns: the metric means and, when asked for (rank 0 only), the
    segmentation grid of the first images as RGB pixels (for TensorBoard / W&B)."""

    metrics: dict[str, float]
    picture: UInt8[numpy.ndarray, "h w 3"] | None = None


class SplitEvaluation:
    """The evaluation a training run uses (what `metaslot.train.loop.Evaluation` asks for): metric means
    and a picture for validation, and the whole report (JSON, table, pictures) at the end of the run."""

    def validate(
        self, pipeline: Pipeline, dataset: torch.utils.data.Dataset, *, pictures: int = 0, **options: Any
    ) -> Validation:
        """`evaluate` with ``options`` (batch size, device, dtype, batch cap, rank, seed); its metrics, and
        on rank 0 the segmentation grid of the first ``pictures`` images (none for 0)."""
        wanted = pictures > 0 and options.get("rank", 0) == 0
        samples = PictureSamples(capacity=pictures) if wanted else None
        metrics = evaluate(pipeline, dataset, pictures=samples, **options).metrics
        picture = (
            segmentation_grid_image(samples, pictures) if samples is not None and samples.count else None
        )
        return Validation(metrics=metrics, picture=picture)

    def report(
        self,
        pipeline: Pipeline,
        dataset: torch.utils.data.Dataset,
        *,
        checkpoint: str,
        step: int,
        split: str,
        selected_on: str | None = None,
        **options: Any,
    ) -> dict[str, float]:
        """`evaluate_and_report` with ``options`` (output folder, title, pictures, ...), naming the
        checkpoint, its step and the split in the table and ``evaluation.json``; its metrics."""
        provenance = Provenance(checkpoint=checkpoint, split=split, step=step, selected_on=selected_on)
        return evaluate_and_report(pipeline, dataset, provenance=provenance, **options).metrics
