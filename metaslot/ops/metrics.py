"""Segmentation and codebook metrics: ARI, FG-ARI, mBO, mIoU, slot counts, code usage.

Every segmentation metric takes integer label maps of flattened pixels (``b n``, any signed or
unsigned integer dtype; flatten ``b h w`` with ``labels.flatten(1)``) and returns one value **per
image**, in float64. The caller averages over images of the whole evaluation set; averaging batch
means (as the reference's ``AverageLog`` does) over-weights the last, smaller batch and makes the
number depend on the batch size; :func:`averaging_units` offers both. An image on which a metric is
undefined (no valid pixel, no ground-truth segment) gets NaN, and the aggregator skips NaN.

Labels only name segments: their values need not be contiguous or start at 0 and are compacted
internally, so sparse ids (COCO category ids, VOC's 255) cost no memory. The one value with a meaning
is ground-truth label 0, the background, which ``ignore_background=True`` leaves out: FG-ARI drops
its pixels, foreground mBO and mIoU only leave its segment unscored (OCLF's ``ignore_background``;
predicted segments keep their background pixels). Negative labels are rejected rather than
silently treated as a segment.

All counts come from one contingency table per image, built with ``bincount`` (exact integer
counts, deterministic on GPU) rather than the reference's dense one-hot ``einsum``, then turned into
float64 (reference §4). These functions synchronise with the device and call scipy for the
Hungarian matching: they belong in evaluation and logging, not in the model's forward.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Bool, Float, Float64, Int, Integer, Real
from torch import Tensor

from metaslot.ops.checks import ShapeError, check_shapes

__all__ = [
    "active_slot_count",
    "adjusted_rand_index",
    "averaging_units",
    "codebook_perplexity",
    "codes_in_use",
    "labels_allowing_empty",
    "masks_to_labels",
    "matched_iou",
    "mean_best_overlap",
    "slot_count_error",
    "usage_perplexity",
]

# Axis names used only here: p predicted segments, g ground-truth segments (compacted over the batch).


def _check_label_maps(pred: Integer[Tensor, "b n"], target: Integer[Tensor, "b n"]) -> None:
    for name, labels in (("pred", pred), ("target", target)):
        if isinstance(labels, Tensor) and (labels.dtype.is_floating_point or labels.dtype.is_complex):
            # Counting would truncate them (0.3 and 0.6 both become segment 0).
            raise ShapeError(
                f"{name} holds {labels.dtype} labels; segment ids must be integers: pass "
                f"masks.argmax(dim=1) for soft masks, or {name}.long() if the values are whole numbers"
            )
        check_shapes("segmentation metric", **{name: (labels, "b n", "integer")})
    if pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same (batch, pixels) shape; "
            "resize the prediction to the ground truth's resolution and flatten both with .flatten(1)."
        )
    for name, labels in (("pred", pred), ("target", target)):
        if labels.numel() > 0 and bool((labels < 0).any()):
            raise ValueError(
                f"{name} holds negative labels (min {int(labels.min())}); labels must be >= 0. "
                "To leave pixels out of the ground truth, label them 0 and pass ignore_background=True."
            )


def _compact_labels(labels: Integer[Tensor, "b n"]) -> tuple[Int[Tensor, "b n"], int]:
    """Renumber the labels used anywhere in the batch as 0..count-1 (order kept)."""
    if labels.numel() == 0:
        # One (empty) segment, so tables of images without pixels keep a reducible shape.
        return labels.long(), 1
    largest = int(labels.max())
    if largest >= labels.numel():
        # Very sparse ids: a sort costs less memory than a lookup table as long as the largest id.
        used, compact = torch.unique(labels, sorted=True, return_inverse=True)
        return compact.reshape(labels.shape), used.numel()
    # Lookup table from id to rank among the ids in use: linear time, no sort (unique sorts all pixels).
    flat = labels.flatten().long()
    in_use = torch.bincount(flat, minlength=largest + 1) > 0
    rank = torch.cumsum(in_use, dim=0) - 1
    return rank[flat].reshape(labels.shape), int(in_use.sum())


def _contingency_table(
    pred: Integer[Tensor, "b n"],
    target: Integer[Tensor, "b n"],
    ignore_background: bool,
) -> Float64[Tensor, "b p g"]:
    """Pixel counts of every (predicted segment, ground-truth segment) pair, per image.

    With ``ignore_background`` the pixels whose ground truth is 0 are left out of every count, so
    the background column is empty and predicted segments lose the pixels they had on it (FG-ARI;
    mBO and mIoU keep every pixel and only leave the background segment unscored).
    """
    _check_label_maps(pred, target)
    batch, pixels = pred.shape
    compact_pred, num_pred = _compact_labels(pred)
    compact_target, num_target = _compact_labels(target)
    cells_per_image = num_pred * num_target
    image_index = torch.arange(batch, device=pred.device).unsqueeze(1)
    cell = image_index * cells_per_image + compact_pred * num_target + compact_target
    num_cells = batch * cells_per_image
    if ignore_background:
        # Excluded pixels go to one extra bin that is dropped afterwards: no data-dependent shapes.
        cell = torch.where(target == 0, torch.full_like(cell, num_cells), cell)
    counts = torch.bincount(cell.flatten(), minlength=num_cells + 1)[:num_cells]
    return counts.reshape(batch, num_pred, num_target).to(torch.float64)


def _pair_count(counts: Float64[Tensor, "..."]) -> Float64[Tensor, "..."]:
    """Ordered pairs of distinct pixels inside a group of ``counts`` pixels: N(N-1)."""
    return counts * (counts - 1)


def adjusted_rand_index(
    pred: Integer[Tensor, "b n"],
    target: Integer[Tensor, "b n"],
    ignore_background: bool = False,
) -> Float64[Tensor, " b"]:
    """Adjusted Rand index between predicted and ground-truth partitions of each image's pixels.

    Hubert–Arabie ARI in the SAVi/reference form (equal to scikit-learn's ``adjusted_rand_score``):
    1 for identical partitions, about 0 for chance agreement, negative below chance. It is 1 when the
    normaliser vanishes, which happens only for identical trivial partitions (one segment each, or
    all singletons). ``ignore_background=True`` gives FG-ARI: pixels with target 0 are removed from
    every count (the prediction is scored on the foreground pixels only). An image with no counted
    pixel (empty, or all background under FG-ARI) gets NaN.
    """
    table = _contingency_table(pred, target, ignore_background)
    pairs_together = _pair_count(table).sum(dim=(1, 2))
    target_pairs = _pair_count(table.sum(dim=1)).sum(dim=1)
    pred_pairs = _pair_count(table.sum(dim=2)).sum(dim=1)
    num_pixels = table.sum(dim=(1, 2))
    expected = target_pairs * pred_pairs / _pair_count(num_pixels).clamp(min=1)
    maximum = (target_pairs + pred_pairs) / 2
    denominator = maximum - expected
    safe_denominator = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
    ari = torch.where(
        denominator == 0, torch.ones_like(denominator), (pairs_together - expected) / safe_denominator
    )
    return torch.where(num_pixels == 0, torch.full_like(ari, float("nan")), ari)


def _intersection_over_union(table: Float64[Tensor, "b p g"]) -> Float64[Tensor, "b p g"]:
    """IoU of every (predicted, ground-truth) segment pair; 0 where both segments are empty."""
    pred_sizes = table.sum(dim=2, keepdim=True)
    target_sizes = table.sum(dim=1, keepdim=True)
    union = pred_sizes + target_sizes - table
    return torch.where(union > 0, table / union.clamp(min=1), torch.zeros_like(table))


def _mean_over_present_segments(
    per_segment: Float64[Tensor, "b g"], present: Bool[Tensor, "b g"]
) -> Float64[Tensor, " b"]:
    total = torch.where(present, per_segment, torch.zeros_like(per_segment)).sum(dim=1)
    count = present.sum(dim=1).to(per_segment.dtype)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("nan")))


def _scored_segments(
    table: Float64[Tensor, "b p g"], target: Integer[Tensor, "b n"], ignore_background: bool
) -> Bool[Tensor, "b g"]:
    """Ground-truth segments that count: those present in the image, less label 0 if it is ignored."""
    present = table.sum(dim=1) > 0
    if not ignore_background or target.numel() == 0:
        return present
    # Compaction keeps the order of labels, so label 0, where the batch has it, is column 0.
    background = torch.zeros_like(present)
    background[:, 0] = (target == 0).any()
    return present & ~background


def mean_best_overlap(
    pred: Integer[Tensor, "b n"],
    target: Integer[Tensor, "b n"],
    ignore_background: bool = False,
) -> Float64[Tensor, " b"]:
    """Mean best overlap (mBO): each ground-truth segment's best IoU with any predicted segment, averaged.

    The average runs over the ground-truth segments present in the image. With
    ``ignore_background=False`` (the reference's behaviour) label 0 is a segment like any other; with
    True only the ground-truth background segment is dropped from the average, and predicted segments
    keep all their pixels, background ones included (OCLF's ``AverageBestOverlapMetric`` with
    ``ignore_background=True``): a slot that spreads over the background is penalised for it.
    An image with no ground-truth segment to score gets NaN.
    """
    table = _contingency_table(pred, target, ignore_background=False)
    best_overlap = _intersection_over_union(table).amax(dim=1)
    return _mean_over_present_segments(best_overlap, _scored_segments(table, target, ignore_background))


def matched_iou(
    pred: Integer[Tensor, "b n"],
    target: Integer[Tensor, "b n"],
    ignore_background: bool = False,
) -> Float64[Tensor, " b"]:
    """Mean IoU under the one-to-one matching of predicted to ground-truth segments that maximises total IoU.

    Hungarian matching (scipy) per image; the matched IoUs are summed and divided by the number of
    ground-truth segments scored, so ground-truth segments left without a prediction count 0.
    ``ignore_background`` as in :func:`mean_best_overlap` (the background is not matched; predicted
    segments keep their background pixels). Never above mBO. An image with no ground-truth segment
    to score gets NaN.
    """
    # Imported here: scipy.optimize takes about a second to import, and `metaslot.ops` is on every model's path.
    from scipy.optimize import linear_sum_assignment

    table = _contingency_table(pred, target, ignore_background=False)
    overlaps = _intersection_over_union(table).cpu()
    pred_present = (table.sum(dim=2) > 0).cpu()
    target_scored = _scored_segments(table, target, ignore_background).cpu()
    matched_totals = torch.zeros(table.shape[0], dtype=torch.float64)
    for image in range(table.shape[0]):
        # Empty segments only carry IoU 0: dropping them leaves the optimum unchanged and the problem smaller.
        image_overlaps = overlaps[image][pred_present[image]][:, target_scored[image]].numpy()
        rows, columns = linear_sum_assignment(image_overlaps, maximize=True)
        matched_totals[image] = float(image_overlaps[rows, columns].sum())
    count = target_scored.sum(dim=1).to(torch.float64)
    per_image = torch.where(
        count > 0, matched_totals / count.clamp(min=1), torch.full_like(count, float("nan"))
    )
    return per_image.to(table.device)


def averaging_units(
    per_image: Float64[Tensor, " b"], average: Literal["image", "batch"]
) -> Float64[Tensor, " u"]:
    """The values whose plain mean over a split is the reported metric, from one batch's per-image values.

    ``"image"`` (our default): the per-image values themselves, so every image weighs the same whatever
    the batch size. ``"batch"`` (the reference's ``AverageLog``): one value, the batch's mean over its
    defined (non-NaN) images, so the split's metric is a mean of batch means. A batch without a defined
    value gives NaN, which the caller skips like an undefined image (the reference's mean turns NaN).
    """
    if average == "image":
        return per_image
    if average != "batch":
        raise ValueError(
            f"unknown average {average!r}: choose 'image' (per-image mean) or 'batch' (reference)"
        )
    return per_image.nanmean().reshape(1)


def masks_to_labels(
    masks: Float[Tensor, "b k h w"],
    keep: Bool[Tensor, "b k"] | None = None,
) -> Int[Tensor, "b h w"]:
    """Hard segmentation: each pixel goes to the slot with the largest mask value; pruned slots never win.

    Ties go to the lowest slot index. Raises if an image has no kept slot, since then no label is valid.
    """
    check_shapes("masks_to_labels", masks=(masks, "b k h w", "float"), keep=(keep, "b k", "bool"))
    if keep is None:
        return masks.argmax(dim=1)
    if not bool(keep.any(dim=1).all()):
        empty = torch.nonzero(~keep.any(dim=1)).flatten().tolist()
        raise ValueError(
            f"images {empty} have no kept slot, so no slot can label their pixels; "
            "keep at least one slot per image (the pruning step always keeps the first slot of each code)."
        )
    pruned = ~keep[:, :, None, None]
    return masks.masked_fill(pruned, float("-inf")).argmax(dim=1)


def labels_allowing_empty(
    masks: Float[Tensor, "b k h w"], keep: Bool[Tensor, "b k"]
) -> Int[Tensor, "b h w"]:
    """`masks_to_labels`, except that an image with no kept slot (AdaSlot may drop every slot of an
    image) is one segment labelled ``k``, a label no slot has: it owns every pixel, no slot does."""
    empty = ~keep.any(dim=1)
    labels = masks_to_labels(masks, keep | empty[:, None])
    return torch.where(empty[:, None, None], torch.full_like(labels, masks.shape[1]), labels)


def active_slot_count(keep: Bool[Tensor, "b k"]) -> Int[Tensor, " b"]:
    """Number of slots kept (not pruned) in each image."""
    return keep.sum(dim=1)


def segment_count(labels: Integer[Tensor, "b n"], num_slots: int) -> Int[Tensor, " b"]:
    """Number of slots that win at least one pixel of each image's label map (slot ids ``0 … k−1``).

    A kept slot may win no pixel at all (its attention is everywhere outvoted): the kept count then
    exceeds the number of segments one sees. Counting segments tells the two apart, for any
    aggregator, Slot Attention included.
    """
    check_shapes("segment_count", labels=(labels, "b n", "integer"))
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_slots):
        raise ValueError(
            f"slot labels must lie in [0, {num_slots}), got [{int(labels.min())}, {int(labels.max())}]; "
            "pass the label map from masks_to_labels and the slot count k of its masks."
        )
    wins = torch.zeros(labels.shape[0], num_slots, dtype=torch.bool, device=labels.device)
    wins.scatter_(1, labels.long(), True)
    return wins.sum(dim=1)


def slot_count_error(active_slots: Int[Tensor, " b"], num_objects: Int[Tensor, " b"]) -> Int[Tensor, " b"]:
    """Signed slot-count error per image: kept slots minus annotated objects (positive = too many slots).

    Whether the background counts as an object is the caller's choice through ``num_objects``; the
    data records count foreground objects only. Average its absolute value for a count error.
    """
    return active_slots.long() - num_objects.long()


def _code_usage(codes: Int[Tensor, " v"], codebook_size: int) -> Int[Tensor, " m"]:
    """How often each codebook entry occurs among the valid codes (negative codes mean "no code")."""
    check_shapes("code usage", codes=(codes, "v", "integer"))
    if codebook_size < 1:
        raise ValueError(f"codebook_size ({codebook_size}) must be at least 1.")
    if codes.numel() > 0 and int(codes.max()) >= codebook_size:
        raise ValueError(
            f"code {int(codes.max())} is out of range for codebook_size {codebook_size}; "
            "pass the size of the codebook the codes index into."
        )
    # Invalid codes go to one extra bin that is dropped: no data-dependent shapes.
    bins = torch.where(codes >= 0, codes.long(), torch.full_like(codes.long(), codebook_size))
    return torch.bincount(bins, minlength=codebook_size + 1)[:codebook_size]


def codebook_perplexity(codes: Int[Tensor, " v"], codebook_size: int) -> Float64[Tensor, ""]:
    """Perplexity of code usage, exp(entropy): the effective number of codes in use.

    Equals the number of codes used when they are used equally often, and is smaller when usage is
    skewed. Codes below 0 (pruned slots, no code) are ignored; with no valid code the value is NaN.
    """
    return usage_perplexity(_code_usage(codes, codebook_size))


def usage_perplexity(usage: Real[Tensor, " m"]) -> Float64[Tensor, ""]:
    """:func:`codebook_perplexity` from how often each code was used (NaN when no code was); no host sync."""
    usage = usage.to(torch.float64)
    total = usage.sum()
    probabilities = usage / total.clamp(min=1)
    # 0·log 0 = 0: unused codes add no entropy.
    entropy = -torch.special.xlogy(probabilities, probabilities).sum()
    return torch.where(total > 0, entropy.exp(), torch.full_like(entropy, float("nan")))


def codes_in_use(codes: Int[Tensor, " v"], codebook_size: int) -> Int[Tensor, ""]:
    """Number of distinct codebook entries among the valid codes (codes below 0 are ignored)."""
    return (_code_usage(codes, codebook_size) > 0).sum()
