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

import contextlib
from collections.abc import Callable, Iterator
from typing import Literal

import attrs
import torch
import torch.nn.functional

from metaslot.data.loader import collate_images
from metaslot.data.records import Batch
from metaslot.data.sampling import evaluation_batches
from metaslot.errors import ConfigError
from metaslot.models.interfaces import DecodesInOrders, Pipeline, codebook_size_of
from metaslot.models.records import PipelineOutput
from metaslot.ops.cluster_metrics import (
    adjusted_mutual_information,
    hungarian_purity,
    normalized_mutual_information,
    pair_counting,
)
from metaslot.ops.metrics import (
    active_slot_count,
    adjusted_rand_index,
    averaging_units,
    codebook_perplexity,
    codes_in_use,
    labels_allowing_empty,
    masks_to_labels,
    matched_iou,
    mean_best_overlap,
    segment_count,
    slot_count_error,
)
from metaslot.protocols import PROTOCOLS, ProtocolSettings
from metaslot.runtime.device import autocast
from metaslot.runtime.distributed import all_reduce_sum

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


def _segment_labels(masks: torch.Tensor, keep: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
    if tuple(masks.shape[-2:]) != size:
        masks = torch.nn.functional.interpolate(
            masks.float(), size=size, mode="bilinear", align_corners=False
        )
    if keep is None:
        return masks_to_labels(masks.float())
    # AdaSlot may keep no slot of an image: it is then one segment that no slot owns.
    return labels_allowing_empty(masks.float(), keep)


def _ground_truth_at(segment: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The ground-truth labels at ``size`` (nearest, so no label is invented)."""
    if tuple(segment.shape[-2:]) == size:
        return segment
    resized = torch.nn.functional.interpolate(segment[:, None].float(), size=size, mode="nearest-exact")
    return resized[:, 0].long()


def scored_masks(output: PipelineOutput, source: str) -> torch.Tensor:
    """The masks an evaluation protocol scores (``ProtocolSettings.masks``): the pipeline's own, its
    decoder's (those of a pipeline whose masks come from a decoder) or the aggregator's attention."""
    assert output.masks is not None
    if source == "pipeline":
        return output.masks
    if source == "decoder":
        if output.attention_masks is None:
            raise ConfigError(
                "this pipeline's masks are its aggregator's attention (it has no decoder masks): "
                "evaluate with --evaluation.masks attention (or pipeline)"
            )
        return output.masks
    if source == "attention":
        return output.masks if output.attention_masks is None else output.attention_masks
    raise ConfigError(f"unknown mask source {source!r}: choose 'pipeline', 'decoder' or 'attention'")


def decoding_orders(pipeline: Pipeline, protocol: ProtocolSettings) -> contextlib.AbstractContextManager:
    """The protocol's token orders for a pipeline that decodes in patch orders (SPOT); nothing otherwise."""
    if isinstance(pipeline, DecodesInOrders):
        return pipeline.decoding_orders(protocol.token_orders)
    return contextlib.nullcontext()


@attrs.define
class MetricTotals:
    """What the batches add up to: per-image metric sums and counts (NaN images left out of a metric's
    count), the objects × kept-slots histogram and how often a kept slot chose each code. ``average``:
    per-image means, or the reference's mean of batch means (`averaging_units`)."""

    codebook_size: int | None
    average: Literal["image", "batch"] = "image"
    clustering_metrics: bool = False
    """Also AdaSlot's foreground AMI, NMI, purity and pair-counting scores (`add_clustering`)."""
    images: int = 0
    """Images evaluated by this process (the metric counts are batches under ``average="batch"``)."""
    sums: dict[str, torch.Tensor] = attrs.Factory(dict)
    counts: dict[str, torch.Tensor] = attrs.Factory(dict)
    histogram: torch.Tensor = attrs.Factory(lambda: torch.zeros(MAX_COUNT, MAX_COUNT, dtype=torch.float64))
    usage: torch.Tensor = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.usage = torch.zeros(self.codebook_size or 1, dtype=torch.float64)

    def add(self, name: str, per_image: torch.Tensor) -> None:
        values = averaging_units(per_image.detach().double().cpu(), self.average)
        finite = torch.isfinite(values)
        self.sums[name] = self.sums.get(name, torch.zeros((), dtype=torch.float64)) + values[finite].sum()
        self.counts[name] = self.counts.get(name, torch.zeros((), dtype=torch.float64)) + finite.sum()

    def add_segmentation(
        self,
        batch: Batch,
        masks: torch.Tensor,
        keep: torch.Tensor,
        honour_keep_downstream: bool = True,
        mask_size: int | None = None,
    ) -> None:
        """ARI, FG-ARI, mBO, mIoU of the kept slots' masks against the segments; slot and segment counts.

        Pruned slots win no pixel, unless the pipeline reproduces the reference
        (``honour_keep_downstream`` False), where every slot may. ``mask_size``: the side of the square
        masks (bilinear) and segments (nearest) are compared at; None: the segments' own size.
        """
        label_keep = keep if honour_keep_downstream else None
        size = tuple(batch.segment.shape[-2:]) if mask_size is None else (mask_size, mask_size)
        labels = _segment_labels(masks, label_keep, size).flatten(1)
        target = _ground_truth_at(batch.segment, size).flatten(1)
        self.add("ari", adjusted_rand_index(labels, target))
        self.add("fg_ari", adjusted_rand_index(labels, target, ignore_background=True))
        self.add("mbo", mean_best_overlap(labels, target))
        self.add("mbo_fg", mean_best_overlap(labels, target, ignore_background=True))
        self.add("miou", matched_iou(labels, target))
        self.add("miou_fg", matched_iou(labels, target, ignore_background=True))
        if self.clustering_metrics:
            self.add_clustering(labels, target)
        active = active_slot_count(keep)
        self.add("active_slots", active)
        self.add("true_objects", batch.num_objects)
        self.add("slot_count_abs_error", slot_count_error(active, batch.num_objects).abs())
        # With the background taking a slot of its own, a perfect count is objects + 1.
        self.add(
            "slot_count_abs_error_with_background",
            slot_count_error(active, batch.num_objects + 1).abs(),
        )
        # Kept slots that win no pixel are invisible in the segmentation: count what one sees too.
        # Label k marks an image with no kept slot (`labels_allowing_empty`): not a slot's segment.
        slots = masks.shape[1]
        segments = segment_count(labels, slots + 1) - (labels == slots).any(dim=1).long()
        self.add("segments", segments)
        self.add(
            "segment_count_abs_error_with_background",
            slot_count_error(segments, batch.num_objects + 1).abs(),
        )
        pair = torch.stack(
            [batch.num_objects.clamp(max=MAX_COUNT - 1), active.clamp(max=MAX_COUNT - 1)]
        ).cpu()
        ones = torch.ones(pair.shape[1], dtype=torch.float64)
        self.histogram.index_put_((pair[0], pair[1]), ones, accumulate=True)

    def add_clustering(self, labels: torch.Tensor, target: torch.Tensor) -> None:
        """AdaSlot's extra scores of the pixel labels, all on the foreground as AdaSlot reports them."""
        self.add("fg_ami", adjusted_mutual_information(labels, target, ignore_background=True))
        self.add("fg_nmi", normalized_mutual_information(labels, target, ignore_background=True))
        self.add("fg_purity", hungarian_purity(labels, target, ignore_background=True))
        pairs = pair_counting(labels, target, ignore_background=True)
        self.add("fg_pair_precision", pairs.precision)
        self.add("fg_pair_recall", pairs.recall)
        self.add("fg_pair_f1", pairs.f1)

    def add_codes(self, codes: torch.Tensor, keep: torch.Tensor | None) -> None:
        """Count the codes of the kept slots (all slots without a keep mask; -1 means no code)."""
        assert self.codebook_size is not None  # only called for aggregators with a codebook
        valid = codes[keep] if keep is not None else codes.flatten()
        valid = valid[valid >= 0].cpu()
        self.usage += torch.bincount(valid, minlength=self.codebook_size)[: self.codebook_size].double()

    def result(self) -> EvaluationResult:
        """Sum over processes (one collective for the metrics; collective) and take the means."""
        names = sorted(self.sums)
        # Every process holds the same metric names (same pipeline).
        packed = (
            torch.stack(
                [torch.stack([self.sums[n] for n in names]), torch.stack([self.counts[n] for n in names])]
            )
            if names
            else torch.zeros(2, 0, dtype=torch.float64)
        )
        packed = all_reduce_sum(packed)
        histogram = all_reduce_sum(self.histogram)
        usage = all_reduce_sum(self.usage)
        metrics = {
            name: float(packed[0, i] / packed[1, i]) if packed[1, i] > 0 else float("nan")
            for i, name in enumerate(names)
        }
        code_usage = None
        if self.codebook_size is not None:
            all_codes = torch.arange(self.codebook_size).repeat_interleave(usage.long())
            metrics["codes_in_use"] = float(codes_in_use(all_codes, self.codebook_size))
            metrics["code_perplexity"] = float(codebook_perplexity(all_codes, self.codebook_size))
            code_usage = usage.long().tolist()
        images = int(all_reduce_sum(torch.tensor(float(self.images), dtype=torch.float64)))
        return EvaluationResult(
            metrics=metrics, images=images, slot_histogram=histogram.long().tolist(), code_usage=code_usage
        )


@contextlib.contextmanager
def evaluation_mode(pipeline: torch.nn.Module, device: torch.device, seed: int) -> Iterator[None]:
    """Eval mode, no autograd, and a forked RNG seeded with ``seed``: reproducible, and the caller's
    random streams (exact resume) and train/eval mode are as they were afterwards."""
    was_training = pipeline.training
    pipeline.eval()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            yield
    finally:
        pipeline.train(was_training)


def evaluation_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    world_size: int,
    rank: int,
    max_batches: int | None,
    num_workers: int,
    seed: int,
) -> torch.utils.data.DataLoader:
    """This process's share of the fixed evaluation order (`evaluation_batches`), capped at ``max_batches``."""
    batches = evaluation_batches(len(dataset), batch_size, world_size, rank)
    if max_batches is not None:
        batches = batches[:max_batches]
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=collate_images,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


def evaluate(
    pipeline: Pipeline,
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
    protocol: ProtocolSettings = PROTOCOLS["metaslot"],
    clustering_metrics: bool = False,
) -> EvaluationResult:
    """Mean metrics over ``dataset`` (the first ``max_batches`` batches of each process if given).

    ``average``: per-image means (default: every image weighs the same), or the reference's mean of
    batch means (`averaging_units`). ``protocol`` (`metaslot.protocols`): which masks are scored, the
    size they are compared at, and the token orders of a pipeline that decodes in patch orders.
    ``clustering_metrics`` adds AdaSlot's foreground AMI, NMI, purity and pair-counting scores
    (`MetricTotals.add_clustering`).

    Runs in `evaluation_mode` (eval mode, no gradients, a forked RNG seeded with ``seed``), so the
    result is reproducible and the caller's random streams are untouched. Collective: under
    torch.distributed every process must call it.
    """
    loader = evaluation_loader(
        dataset,
        batch_size,
        world_size=world_size,
        rank=rank,
        max_batches=max_batches,
        num_workers=num_workers,
        seed=seed,
    )
    totals = MetricTotals(
        codebook_size=codebook_size_of(pipeline), average=average, clustering_metrics=clustering_metrics
    )
    with evaluation_mode(pipeline, device, seed), decoding_orders(pipeline, protocol):
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            with autocast(device, dtype):
                output = pipeline(batch.image)
            images = batch.image.shape[0]
            totals.images += images
            totals.add("loss", output.loss.detach().float().expand(images))
            keep = codes = None
            if output.masks is not None:
                keep = output.keep if output.keep is not None else all_kept(output.masks)
                totals.add_segmentation(
                    batch,
                    scored_masks(output, protocol.masks),
                    keep,
                    output.honour_keep_downstream,
                    protocol.mask_size,
                )
            if output.aggregator is not None and totals.codebook_size is not None:
                codes = output.aggregator.codes
                totals.add_codes(codes, keep)
            if pictures is not None:
                pictures.add(batch, output.masks, keep, codes, output.reconstruction)
            if progress is not None:
                progress(images)
    return totals.result()


def all_kept(masks: torch.Tensor) -> torch.Tensor:
    """The keep mask of a pipeline that prunes nothing: every slot of ``masks b k h w``."""
    return torch.ones(masks.shape[:2], dtype=torch.bool, device=masks.device)
