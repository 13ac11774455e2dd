"""Metrics: hand-computed cases, scikit-learn agreement, brute-force matching, invariances."""

from __future__ import annotations

import itertools
import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given
from sklearn.metrics import adjusted_rand_score

from metaslot.ops.metrics import (
    active_slot_count,
    adjusted_rand_index,
    averaging_units,
    codebook_perplexity,
    codes_in_use,
    masks_to_labels,
    matched_iou,
    mean_best_overlap,
    segment_count,
    slot_count_error,
    usage_perplexity,
)

SEGMENT_METRICS = [adjusted_rand_index, mean_best_overlap, matched_iou]


@st.composite
def label_maps(draw, max_batch: int = 3, max_pixels: int = 24, max_label: int = 4):
    """A (pred, target) pair of small random label maps of shape (b, n)."""
    batch = draw(st.integers(1, max_batch))
    pixels = draw(st.integers(1, max_pixels))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    pred_labels = draw(st.integers(1, max_label + 1))
    target_labels = draw(st.integers(1, max_label + 1))
    pred = torch.randint(0, pred_labels, (batch, pixels), generator=generator)
    target = torch.randint(0, target_labels, (batch, pixels), generator=generator)
    return pred, target


def _segments(labels: list[int]) -> list[set[int]]:
    """Pixel sets of the labels present, in label order."""
    return [{i for i, value in enumerate(labels) if value == label} for label in sorted(set(labels))]


def _iou(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b)


def _reference_overlaps(pred: list[int], target: list[int], ignore_background: bool) -> tuple[float, float]:
    """(mBO, mIoU) from pixel sets and brute-force matching over all injective assignments.

    ``ignore_background`` drops the ground-truth background segment only; predicted segments keep all
    their pixels (OCLF's ``ignore_background``).
    """
    truth = [
        segment for segment in _segments(target) if not (ignore_background and target[min(segment)] == 0)
    ]
    if not truth:
        return math.nan, math.nan
    predicted = _segments(pred)
    table = [[_iou(p, g) for g in truth] for p in predicted]
    best = sum(max(table[p][g] for p in range(len(predicted))) for g in range(len(truth))) / len(truth)
    if len(predicted) >= len(truth):
        matched = max(
            sum(table[rows[g]][g] for g in range(len(truth)))
            for rows in itertools.permutations(range(len(predicted)), len(truth))
        )
    else:
        matched = max(
            sum(table[p][columns[p]] for p in range(len(predicted)))
            for columns in itertools.permutations(range(len(truth)), len(predicted))
        )
    return best, matched / len(truth)


def _relabel(labels: torch.Tensor, seed: int, keep_zero: bool) -> torch.Tensor:
    """Apply a random injective, sparse renaming of label values (0 stays 0 when asked)."""
    generator = torch.Generator().manual_seed(seed)
    size = int(labels.max()) + 1
    names = torch.randperm(size, generator=generator) * 7 + 3
    if keep_zero:
        names[0] = 0
        names[1:] = torch.randperm(size - 1, generator=generator) * 7 + 3
    return names[labels]


# ---------------------------------------------------------------- ARI


def test_ari_hand_computed():
    pred = torch.tensor([[0, 0, 1, 1, 2, 2]])
    target = torch.tensor([[0, 0, 1, 1, 1, 2]])
    # Contingency cells 2,2,1,1: ridx = 2+2 = 4; target sizes 2,3,1: 2+6 = 8; pred sizes 2,2,2: 6;
    # expected = 8*6/(6*5) = 1.6; max = (8+6)/2 = 7; ARI = (4-1.6)/(7-1.6).
    assert adjusted_rand_index(pred, target).tolist() == pytest.approx([2.4 / 5.4])
    # Foreground only: pixels 2..5, pred {2,3},{4,5} vs target {2,3,4},{5}: ridx = 2, a = 6, b = 4,
    # expected = 24/12 = 2, max = 5, ARI = 0.
    assert adjusted_rand_index(pred, target, ignore_background=True).tolist() == pytest.approx([0.0])


@given(label_maps(), st.booleans())
def test_ari_equals_sklearn_per_image(maps, ignore_background):
    pred, target = maps
    ari = adjusted_rand_index(pred, target, ignore_background=ignore_background)
    assert ari.shape == (pred.shape[0],) and ari.dtype == torch.float64
    for image in range(pred.shape[0]):
        valid = target[image] != 0 if ignore_background else torch.ones_like(target[image], dtype=torch.bool)
        if not bool(valid.any()):
            assert math.isnan(ari[image])
            continue
        expected = adjusted_rand_score(target[image][valid].numpy(), pred[image][valid].numpy())
        assert float(ari[image]) == pytest.approx(expected, abs=1e-9)


@given(label_maps(), st.integers(0, 2**31 - 1), st.booleans())
def test_segment_metrics_invariant_to_relabelling(maps, seed, ignore_background):
    pred, target = maps
    renamed_pred = _relabel(pred, seed, keep_zero=False)
    renamed_target = _relabel(target, seed + 1, keep_zero=ignore_background)
    for metric in SEGMENT_METRICS:
        before = metric(pred, target, ignore_background=ignore_background)
        after = metric(renamed_pred, renamed_target, ignore_background=ignore_background)
        torch.testing.assert_close(after, before, equal_nan=True, rtol=0, atol=1e-12)


@given(label_maps(max_batch=4))
def test_segment_metrics_are_per_image(maps):
    """A batch gives the same values as each image alone: batch-wide label compaction does not leak."""
    pred, target = maps
    for metric in SEGMENT_METRICS:
        for ignore_background in (False, True):
            batched = metric(pred, target, ignore_background=ignore_background)
            alone = torch.cat(
                [
                    metric(pred[i : i + 1], target[i : i + 1], ignore_background=ignore_background)
                    for i in range(len(pred))
                ]
            )
            torch.testing.assert_close(batched, alone, equal_nan=True, rtol=0, atol=1e-12)


@given(st.integers(1, 30), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_identical_partitions_score_one(pixels, num_labels, seed):
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_labels, (2, pixels), generator=generator)
    target[:, 0] = 1  # at least one foreground pixel, so FG scores are defined
    pred = _relabel(target, seed, keep_zero=False)
    for metric in SEGMENT_METRICS:
        for ignore_background in (False, True):
            score = metric(pred, target, ignore_background=ignore_background)
            torch.testing.assert_close(score, torch.ones(2, dtype=torch.float64))


def test_ari_degenerate_partitions():
    one_segment = torch.zeros(1, 8, dtype=torch.long)
    two_segments = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    singletons = torch.arange(8).unsqueeze(0)
    # One segment on both sides: the normaliser is 0 and the partitions agree, so 1 (as scikit-learn).
    assert adjusted_rand_index(one_segment, one_segment).item() == 1.0
    assert adjusted_rand_index(singletons, singletons + 5).item() == 1.0
    assert adjusted_rand_index(one_segment[:, :1], one_segment[:, :1]).item() == 1.0
    # A prediction that puts everything in one segment carries no information: 0.
    assert adjusted_rand_index(one_segment, two_segments).item() == pytest.approx(0.0)
    assert adjusted_rand_index(one_segment, singletons).item() == pytest.approx(0.0)
    # Under FG-ARI a single foreground object is scored 1 by any prediction that keeps it together.
    assert adjusted_rand_index(one_segment, two_segments, ignore_background=True).item() == 1.0


def test_image_without_counted_pixels_is_nan():
    pred = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3]])
    target = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1]])
    for metric in SEGMENT_METRICS:
        score = metric(pred, target, ignore_background=True)
        assert math.isnan(score[0]) and not math.isnan(score[1])
        assert not metric(pred, target).isnan().any()
        assert metric(pred[:, :0], target[:, :0]).isnan().all()


# ---------------------------------------------------------------- mBO and mIoU


def test_overlaps_hand_computed():
    pred = torch.tensor([[0, 0, 1, 1, 2, 2]])
    target = torch.tensor([[0, 0, 1, 1, 1, 2]])
    # GT {0,1}: 1 with pred {0,1}; GT {2,3,4}: 2/3 with pred {2,3}; GT {5}: 1/2 with pred {4,5};
    # the best-overlap choices are a one-to-one matching, so mIoU = mBO.
    expected = (1 + 2 / 3 + 1 / 2) / 3
    assert mean_best_overlap(pred, target).item() == pytest.approx(expected)
    assert matched_iou(pred, target).item() == pytest.approx(expected)
    # Foreground only: GT {2,3,4} -> 2/3 (pred {2,3}), GT {5} -> 1/2 (pred {4,5}); GT {0,1} is not scored.
    assert mean_best_overlap(pred, target, ignore_background=True).item() == pytest.approx(7 / 12)


def test_one_segment_for_two_objects():
    pred = torch.tensor([[0, 0, 0, 0]])
    target = torch.tensor([[0, 0, 1, 1]])
    # Each GT segment overlaps the single prediction with IoU 1/2; only one can be matched.
    assert mean_best_overlap(pred, target).item() == pytest.approx(0.5)
    assert matched_iou(pred, target).item() == pytest.approx(0.25)


def test_foreground_overlaps_keep_the_predicted_background_pixels():
    """OCLF: ignoring the background drops the ground-truth background segment only."""
    pred = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0]])
    target = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    # One segment for everything: it covers the object (4 pixels) and the background (4 more), IoU 4/8.
    # Cutting the background out of the prediction first would score a perfect 1.0.
    assert mean_best_overlap(pred, target, ignore_background=True).item() == pytest.approx(0.5)
    assert matched_iou(pred, target, ignore_background=True).item() == pytest.approx(0.5)
    # With the background as a segment both segments score 1/2 with the one prediction; only one matches.
    assert mean_best_overlap(pred, target).item() == pytest.approx(0.5)
    assert matched_iou(pred, target).item() == pytest.approx(0.25)


def test_a_slot_spreading_over_the_background_is_penalised():
    pred = torch.tensor([[0, 0, 0, 1]])
    target = torch.tensor([[0, 0, 1, 1]])
    # Foreground {2,3}: pred {0,1,2} has IoU 1/4, pred {3} 1/2; background {0,1} is not scored.
    assert mean_best_overlap(pred, target, ignore_background=True).item() == pytest.approx(0.5)
    assert matched_iou(pred, target, ignore_background=True).item() == pytest.approx(0.5)
    # With background as a segment: GT {0,1} best 2/3 (pred {0,1,2}), GT {2,3} best 1/2.
    assert mean_best_overlap(pred, target).item() == pytest.approx((2 / 3 + 1 / 2) / 2)


@given(label_maps(max_batch=2, max_pixels=12, max_label=3), st.booleans())
def test_overlaps_equal_brute_force(maps, ignore_background):
    pred, target = maps
    best = mean_best_overlap(pred, target, ignore_background=ignore_background)
    matched = matched_iou(pred, target, ignore_background=ignore_background)
    for image in range(pred.shape[0]):
        expected_best, expected_matched = _reference_overlaps(
            pred[image].tolist(), target[image].tolist(), ignore_background
        )
        if math.isnan(expected_best):
            assert math.isnan(best[image]) and math.isnan(matched[image])
            continue
        assert float(best[image]) == pytest.approx(expected_best, abs=1e-12)
        assert float(matched[image]) == pytest.approx(expected_matched, abs=1e-12)


@given(label_maps(max_pixels=40, max_label=6), st.booleans())
def test_matched_iou_never_exceeds_best_overlap(maps, ignore_background):
    pred, target = maps
    best = mean_best_overlap(pred, target, ignore_background=ignore_background)
    matched = matched_iou(pred, target, ignore_background=ignore_background)
    assert torch.equal(best.isnan(), matched.isnan())
    defined = ~best.isnan()
    assert bool((matched[defined] <= best[defined] + 1e-12).all())
    assert bool((matched[defined] >= 0).all()) and bool((best[defined] <= 1).all())


def test_small_integer_dtypes_are_accepted():
    pred = torch.tensor([[0, 0, 1, 1, 2, 2]], dtype=torch.uint8)
    target = torch.tensor([[0, 0, 1, 1, 1, 2]], dtype=torch.int32)
    for metric in SEGMENT_METRICS:
        torch.testing.assert_close(metric(pred, target), metric(pred.long(), target.long()))


def test_bad_label_maps_are_rejected():
    pred = torch.tensor([[0, 1, -1]])
    target = torch.tensor([[0, 1, 1]])
    for metric in SEGMENT_METRICS:
        with pytest.raises(ValueError, match="negative labels"):
            metric(pred, target)
        with pytest.raises(ValueError, match="negative labels"):
            metric(target, pred)
    with pytest.raises((ValueError, TypeError)):  # TypeError: the shape checker, when it is on
        adjusted_rand_index(target, torch.zeros(1, 4, dtype=torch.long))


# ---------------------------------------------------------------- slots


@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_masks_to_labels_never_picks_a_pruned_slot(batch, slots, size, seed):
    generator = torch.Generator().manual_seed(seed)
    masks = torch.rand(batch, slots, size, size, generator=generator)
    keep = torch.rand(batch, slots, generator=generator) < 0.5
    keep[torch.arange(batch), torch.randint(0, slots, (batch,), generator=generator)] = True
    labels = masks_to_labels(masks, keep)
    assert labels.shape == (batch, size, size)
    assert bool(torch.gather(keep, 1, labels.flatten(1)).all())
    # Among kept slots the largest mask wins.
    chosen = torch.gather(masks, 1, labels.unsqueeze(1)).squeeze(1)
    best_kept = masks.masked_fill(~keep[:, :, None, None], -1.0).amax(dim=1)
    torch.testing.assert_close(chosen, best_kept, rtol=0, atol=0)
    torch.testing.assert_close(masks_to_labels(masks), masks.argmax(dim=1))


def test_masks_to_labels_hand_case_and_error():
    masks = torch.tensor([[[[0.9, 0.1]], [[0.05, 0.6]], [[0.05, 0.3]]]])  # 1 image, 3 slots, 1x2 pixels
    assert masks_to_labels(masks).tolist() == [[[0, 1]]]
    assert masks_to_labels(masks, torch.tensor([[False, True, True]])).tolist() == [[[1, 1]]]
    assert masks_to_labels(masks, torch.tensor([[True, False, True]])).tolist() == [[[0, 2]]]
    with pytest.raises(ValueError, match=r"images \[0\] have no kept slot"):
        masks_to_labels(masks, torch.tensor([[False, False, False]]))


def test_slot_counts():
    keep = torch.tensor([[True, False, True, True], [False, False, True, False]])
    active = active_slot_count(keep)
    assert active.tolist() == [3, 1]
    assert slot_count_error(active, torch.tensor([1, 4])).tolist() == [2, -3]


def test_segment_count_hand_case_and_range_error():
    labels = torch.tensor([[0, 0, 2, 2], [1, 1, 1, 1], [3, 0, 1, 2]])
    assert segment_count(labels, num_slots=4).tolist() == [2, 1, 4]
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        segment_count(labels, num_slots=3)


@given(st.integers(1, 3), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_segments_never_exceed_kept_slots(batch, slots, seed):
    generator = torch.Generator().manual_seed(seed)
    masks = torch.rand(batch, slots, 3, 4, generator=generator)
    keep = torch.rand(batch, slots, generator=generator) < 0.6
    keep[:, 0] = True
    labels = masks_to_labels(masks, keep).flatten(1)
    segments = segment_count(labels, slots)
    assert bool((segments >= 1).all()) and bool((segments <= active_slot_count(keep)).all())


# ---------------------------------------------------------------- codebook


@given(st.integers(1, 16), st.integers(1, 5), st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_uniform_usage_perplexity_is_number_of_codes_used(codebook_size, repeats, invalid, seed):
    generator = torch.Generator().manual_seed(seed)
    used = torch.randperm(codebook_size, generator=generator)[: max(1, codebook_size // 2)]
    codes = torch.cat([used.repeat(repeats), torch.full((invalid,), -1)])
    codes = codes[torch.randperm(len(codes), generator=generator)]
    assert codebook_perplexity(codes, codebook_size).item() == pytest.approx(len(used))
    assert codes_in_use(codes, codebook_size).item() == len(used)


def test_skewed_usage_perplexity():
    codes = torch.tensor([3, 3, 3, 1, -1])
    entropy = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert codebook_perplexity(codes, 4).item() == pytest.approx(np.exp(entropy))
    assert codes_in_use(codes, 4).item() == 2


def test_codebook_metrics_edge_cases():
    no_codes = torch.tensor([-1, -1])
    assert math.isnan(codebook_perplexity(no_codes, 4).item())
    assert codes_in_use(no_codes, 4).item() == 0
    with pytest.raises(ValueError, match="out of range"):
        codes_in_use(torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="at least 1"):
        codebook_perplexity(torch.tensor([0]), 0)


@given(label_maps(), st.booleans())
def test_very_sparse_label_ids_give_the_same_scores(maps, ignore_background):
    """Ids far above the pixel count take the sorting path of label compaction; scores must not change."""
    pred, target = maps
    sparse_pred = pred * 1_000_003 + 10**9
    sparse_target = torch.where(target == 0, target, target * 1_000_003 + 10**9)
    for metric in SEGMENT_METRICS:
        torch.testing.assert_close(
            metric(sparse_pred, sparse_target, ignore_background=ignore_background),
            metric(pred, target, ignore_background=ignore_background),
            equal_nan=True,
            rtol=0,
            atol=1e-12,
        )


# ---------------------------------------------------------------- averaging over a split


def test_batch_averaging_is_a_mean_of_batch_means():
    """Per image every image weighs the same; the reference's batch means over-weight a small last batch."""
    batches = [torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64)]
    per_image = torch.cat([averaging_units(batch, "image") for batch in batches])
    per_batch = torch.cat([averaging_units(batch, "batch") for batch in batches])
    assert per_image.mean().item() == pytest.approx(0.75)
    assert per_batch.tolist() == [1.0, 0.0] and per_batch.mean().item() == pytest.approx(0.5)


def test_batch_averaging_skips_undefined_images_and_marks_an_undefined_batch():
    values = torch.tensor([0.5, math.nan, 1.0], dtype=torch.float64)
    assert averaging_units(values, "batch").tolist() == [0.75]
    assert averaging_units(torch.full((2,), math.nan, dtype=torch.float64), "batch").isnan().all()


def test_usage_perplexity_matches_the_perplexity_of_the_codes():
    codes = torch.tensor([0, 0, 1, 3, 3, 3, -1])
    usage = torch.tensor([2.0, 1.0, 0.0, 3.0])
    assert usage_perplexity(usage).item() == pytest.approx(codebook_perplexity(codes, 4).item())
    assert math.isnan(usage_perplexity(torch.zeros(4)).item())
