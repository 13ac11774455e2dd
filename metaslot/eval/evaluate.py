"""Evaluation over a whole split: per-image metrics summed and counted (across batches and processes).

Scores the pipeline's per-slot masks (``PipelineOutput.masks``, pruned slots never win a pixel)
against the ground-truth segments: ARI and FG-ARI, mBO and mIoU with and without the background
(reference definitions with background; ``_fg`` variants without), kept slots against annotated
objects, and codebook health from the aggregator's codes. Images where a metric is undefined (NaN,
e.g. FG-ARI without foreground) are left out of that metric's count.

Video datasets (MOVi-D) are evaluated frame by frame: the loader folds each clip's frames into the
batch (`metaslot.data.video.frames_as_images`), so every mean is over frames and a frame's object
count is the number of objects visible in it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs
import torch
import torch.nn.functional

from metaslot.data.loader import collate_images
from metaslot.data.records import Batch
from metaslot.data.sampling import evaluation_batches
from metaslot.ops.metrics import (
    active_slot_count,
    adjusted_rand_index,
    averaging_units,
    codebook_perplexity,
    codes_in_use,
    masks_to_labels,
    matched_iou,
    mean_best_overlap,
    slot_count_error,
)
from metaslot.train.device import autocast
from metaslot.train.distributed import all_reduce_sum

MAX_COUNT = 32  # histogram bins for slot and object counts (larger counts land in the last bin)


@attrs.frozen
class EvaluationResult:
    """Metric means over the evaluated images, plus the raw counts behind the pictures."""

    metrics: dict[str, float]
    images: int
    slot_histogram: list[list[int]]
    """``slot_histogram[objects][slots]``: images with that many annotated objects and kept slots."""
    code_usage: list[int] | None
    """How often each prototype was chosen by a kept slot (None without a codebook)."""


@attrs.define
class PictureSamples:
    """The first images of the evaluation, kept on the CPU for pictures (filled by `evaluate`)."""

    capacity: int
    images: list[torch.Tensor] = attrs.Factory(list)
    segments: list[torch.Tensor] = attrs.Factory(list)
    masks: list[torch.Tensor] = attrs.Factory(list)
    keep: list[torch.Tensor] = attrs.Factory(list)
    codes: list[torch.Tensor] = attrs.Factory(list)
    reconstructions: list[torch.Tensor] = attrs.Factory(list)

    @property
    def count(self) -> int:
        return sum(len(chunk) for chunk in self.images)

    def add(
        self,
        batch: Batch,
        masks: torch.Tensor | None,
        keep: torch.Tensor | None,
        codes: torch.Tensor | None,
        reconstruction: torch.Tensor | None,
    ) -> None:
        take = min(self.capacity - self.count, batch.image.shape[0])
        if take <= 0:
            return
        self.images.append(batch.image[:take].float().cpu())
        self.segments.append(batch.segment[:take].cpu())
        if masks is not None:
            self.masks.append(masks[:take].float().cpu())
            self.keep.append(keep[:take].cpu())
        if codes is not None:
            self.codes.append(codes[:take].cpu())
        if reconstruction is not None and reconstruction.dim() == 4 and reconstruction.shape[1] == 3:
            self.reconstructions.append(reconstruction[:take].float().cpu())


def codebook_size_of(pipeline: torch.nn.Module) -> int | None:
    """m of the pipeline's aggregator codebook, or None (Slot Attention, VQ-VAE)."""
    aggregator = getattr(pipeline, "aggregator", None)
    codebook = getattr(aggregator, "codebook", None)
    if isinstance(codebook, torch.Tensor) and codebook.dim() == 2:
        return int(codebook.shape[0])
    return None


def _segment_labels(masks: torch.Tensor, keep: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
    if tuple(masks.shape[-2:]) != size:
        masks = torch.nn.functional.interpolate(
            masks.float(), size=size, mode="bilinear", align_corners=False
        )
    return masks_to_labels(masks.float(), keep)


def evaluate(
    pipeline: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    max_batches: int | None = None,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
    num_workers: int = 0,
    pictures: PictureSamples | None = None,
    progress: Callable[[int], None] | None = None,
    average: Literal["image", "batch"] = "image",
) -> EvaluationResult:
    """Mean metrics over ``dataset`` (the first ``max_batches`` batches of each process if given).

    ``average``: per-image means, or the reference's mean of batch means (`averaging_units`).

    Runs in eval mode without gradients inside a forked RNG seeded with ``seed``, so the result is
    reproducible and the caller's random streams (exact resume) are untouched. Collective: under
    torch.distributed every process must call it.
    """
    batches = evaluation_batches(len(dataset), batch_size, world_size, rank)
    if max_batches is not None:
        batches = batches[:max_batches]
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_images,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
    codebook_size = codebook_size_of(pipeline)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    histogram = torch.zeros(MAX_COUNT, MAX_COUNT, dtype=torch.float64)
    usage = torch.zeros(codebook_size or 1, dtype=torch.float64)

    def accumulate(name: str, per_image: torch.Tensor) -> None:
        values = averaging_units(per_image.detach().double().cpu(), average)
        finite = torch.isfinite(values)
        sums[name] = sums.get(name, torch.zeros((), dtype=torch.float64)) + values[finite].sum()
        counts[name] = counts.get(name, torch.zeros((), dtype=torch.float64)) + finite.sum()

    images_evaluated = 0
    was_training = pipeline.training
    pipeline.eval()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(seed)
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            with autocast(device, dtype):
                output = pipeline(batch.image)
            images = batch.image.shape[0]
            images_evaluated += images
            accumulate("loss", output.loss.detach().float().expand(images))
            keep = codes = None
            if output.masks is not None:
                keep = (
                    output.keep
                    if output.keep is not None
                    else torch.ones(output.masks.shape[:2], dtype=torch.bool, device=device)
                )
                # Pruned slots win no pixel, unless the pipeline reproduces the reference (honours_keep False).
                label_keep = keep if output.honours_keep else None
                labels = _segment_labels(output.masks, label_keep, tuple(batch.segment.shape[-2:])).flatten(1)
                target = batch.segment.flatten(1)
                accumulate("ari", adjusted_rand_index(labels, target))
                accumulate("fg_ari", adjusted_rand_index(labels, target, ignore_background=True))
                accumulate("mbo", mean_best_overlap(labels, target))
                accumulate("mbo_fg", mean_best_overlap(labels, target, ignore_background=True))
                accumulate("miou", matched_iou(labels, target))
                accumulate("miou_fg", matched_iou(labels, target, ignore_background=True))
                active = active_slot_count(keep)
                accumulate("active_slots", active)
                accumulate("true_objects", batch.num_objects)
                accumulate("slot_count_abs_error", slot_count_error(active, batch.num_objects).abs())
                pair = torch.stack(
                    [batch.num_objects.clamp(max=MAX_COUNT - 1), active.clamp(max=MAX_COUNT - 1)]
                ).cpu()
                histogram.index_put_(
                    (pair[0], pair[1]), torch.ones(images, dtype=torch.float64), accumulate=True
                )
            if output.aggregator is not None and codebook_size is not None:
                codes = output.aggregator.codes
                valid = codes[keep] if keep is not None else codes.flatten()
                valid = valid[valid >= 0].cpu()
                usage += torch.bincount(valid, minlength=codebook_size)[:codebook_size].double()
            if pictures is not None:
                pictures.add(batch, output.masks, keep, codes, output.reconstruction)
            if progress is not None:
                progress(images)
    pipeline.train(was_training)

    names = sorted(sums)
    # One collective for everything; every process holds the same metric names (same pipeline).
    packed = (
        torch.stack([torch.stack([sums[n] for n in names]), torch.stack([counts[n] for n in names])])
        if names
        else torch.zeros(2, 0, dtype=torch.float64)
    )
    packed = all_reduce_sum(packed)
    histogram = all_reduce_sum(histogram)
    usage = all_reduce_sum(usage)
    metrics = {
        name: float(packed[0, i] / packed[1, i]) if packed[1, i] > 0 else float("nan")
        for i, name in enumerate(names)
    }
    code_usage = None
    if codebook_size is not None:
        all_codes = torch.arange(codebook_size).repeat_interleave(usage.long())
        metrics["codes_in_use"] = float(codes_in_use(all_codes, codebook_size))
        metrics["code_perplexity"] = float(codebook_perplexity(all_codes, codebook_size))
        code_usage = usage.long().tolist()
    images_seen = int(all_reduce_sum(torch.tensor(float(images_evaluated), dtype=torch.float64)))
    return EvaluationResult(
        metrics=metrics, images=images_seen, slot_histogram=histogram.long().tolist(), code_usage=code_usage
    )
