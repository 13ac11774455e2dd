"""AdaSlot's extra metrics: hand-computed cases, scikit-learn as the oracle, relabelling invariance."""

from __future__ import annotations

import math

import numpy
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import (
    adjusted_mutual_info_score,
    normalized_mutual_info_score,
    pair_confusion_matrix,
)

from metaslot.ops.cluster_metrics import (
    adjusted_mutual_information,
    hungarian_purity,
    normalized_mutual_information,
    pair_counting,
)


def labels(*rows: list[int]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def test_identical_partitions_score_one_up_to_relabelling() -> None:
    target = labels([0, 0, 1, 1, 2, 2])
    pred = labels([5, 5, 3, 3, 0, 0])
    for metric in (adjusted_mutual_information, normalized_mutual_information, hungarian_purity):
        assert metric(pred, target).tolist() == pytest.approx([1.0])
    scores = pair_counting(pred, target)
    assert (float(scores.precision), float(scores.recall), float(scores.f1)) == (1.0, 1.0, 1.0)


def test_pair_counting_and_purity_by_hand() -> None:
    # Ground truth {a a a b}, prediction {x x y y}: n = [[2, 1], [0, 1]] (pred rows x, y).
    target = labels([1, 1, 1, 2])
    pred = labels([0, 0, 1, 1])
    # Ordered pairs: together in both = 2·1 + 0 + 1·0 + 0 = 2; in pred: 2·1 + 2·1 = 4; in truth: 3·2 = 6.
    scores = pair_counting(pred, target)
    assert float(scores.precision) == pytest.approx(2 / 4)
    assert float(scores.recall) == pytest.approx(2 / 6)
    assert float(scores.f1) == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    # Matching x↔a (2 pixels) and y↔b (1 pixel): 3 of 4.
    assert float(hungarian_purity(pred, target)) == pytest.approx(0.75)


def test_foreground_only_drops_the_background_pixels() -> None:
    target = labels([0, 0, 0, 1, 1, 2])
    pred = labels([3, 4, 5, 1, 1, 2])  # wrong everywhere on the background, right on the foreground
    assert float(adjusted_mutual_information(pred, target, ignore_background=True)) == pytest.approx(1.0)
    assert float(adjusted_mutual_information(pred, target)) < 1.0
    empty = hungarian_purity(labels([1, 1]), labels([0, 0]), ignore_background=True)
    assert math.isnan(float(empty))  # no foreground pixel: undefined, left out of the mean


def test_no_pair_in_the_prediction_is_undefined_precision() -> None:
    scores = pair_counting(labels([0, 1, 2]), labels([1, 1, 1]))  # every pixel its own segment
    assert math.isnan(float(scores.precision)) and float(scores.recall) == 0.0
    assert math.isnan(float(scores.f1))


@given(
    pixels=st.integers(2, 40),
    pred_segments=st.integers(1, 6),
    target_segments=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_against_scikit_learn(pixels: int, pred_segments: int, target_segments: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, pred_segments, (3, pixels), generator=generator)
    target = torch.randint(0, target_segments, (3, pixels), generator=generator)
    ami = adjusted_mutual_information(pred, target)
    nmi = normalized_mutual_information(pred, target)
    pairs = pair_counting(pred, target)
    for image in range(3):
        truth, guess = target[image].numpy(), pred[image].numpy()
        assert float(ami[image]) == pytest.approx(adjusted_mutual_info_score(truth, guess), abs=1e-8)
        assert float(nmi[image]) == pytest.approx(normalized_mutual_info_score(truth, guess), abs=1e-10)
        matrix = pair_confusion_matrix(truth, guess)
        tp, fp, fn = matrix[1, 1], matrix[0, 1], matrix[1, 0]
        with numpy.errstate(invalid="ignore", divide="ignore"):
            precision, recall = tp / (tp + fp), tp / (tp + fn)
            f1 = 2 * precision * recall / (precision + recall)
        for ours, theirs in ((pairs.precision, precision), (pairs.recall, recall), (pairs.f1, f1)):
            if numpy.isnan(theirs):
                assert math.isnan(float(ours[image]))
            else:
                assert float(ours[image]) == pytest.approx(float(theirs))


@given(seed=st.integers(0, 2**16))
def test_invariant_to_relabelling_and_purity_bounded(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, 5, (2, 30), generator=generator)
    target = torch.randint(0, 4, (2, 30), generator=generator)
    renamed = torch.randperm(5, generator=generator)[pred] + 7
    for metric in (adjusted_mutual_information, normalized_mutual_information, hungarian_purity):
        assert torch.allclose(metric(pred, target), metric(renamed, target))
    purity = hungarian_purity(pred, target)
    assert torch.all((purity > 0) & (purity <= 1))


def test_an_image_without_kept_slot_is_one_segment_no_slot_owns() -> None:
    from metaslot.ops.metrics import labels_allowing_empty

    masks = torch.rand(2, 3, 4, 4)
    keep = torch.tensor([[True, False, True], [False, False, False]])
    labels = labels_allowing_empty(masks, keep)
    assert set(labels[0].unique().tolist()) <= {0, 2}
    assert torch.all(labels[1] == 3)  # k: a label no slot has
