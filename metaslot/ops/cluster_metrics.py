"""What AdaSlot's evaluation reports besides ARI and mBO (its ``MutualInfoAndPairCounting``): adjusted and
normalised mutual information, Hungarian-matched purity, and pair-counting precision, recall and F1.

Same conventions as `metaslot.ops.metrics`: integer label maps ``b n``, one float64 value per image, NaN
where a metric is undefined (no counted pixel; pair counting with no pair on one side), and
``ignore_background=True`` scores the foreground only (pixels with ground truth 0 left out of every
count), which is how AdaSlot reports all of them. Values equal scikit-learn's ``adjusted_mutual_info_score``,
``normalized_mutual_info_score`` (arithmetic mean normaliser, the default) and ``pair_confusion_matrix``
on each image; purity is AdaSlot's: the one-to-one (Hungarian) matching of segments to ground-truth
segments, matched pixels over all pixels (not the textbook many-to-one purity).

These loop over images, call scipy and synchronise with the device: evaluation only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float64, Integer
from torch import Tensor

from metaslot.ops.metrics import _contingency_table

__all__ = [
    "PairCounting",
    "adjusted_mutual_information",
    "hungarian_purity",
    "normalized_mutual_information",
    "pair_counting",
]


def _image_tables(
    pred: Integer[Tensor, "b n"], target: Integer[Tensor, "b n"], ignore_background: bool
) -> list[Float64[Tensor, "p g"]]:
    """Each image's contingency table without its empty rows and columns (CPU, float64)."""
    tables = _contingency_table(pred, target, ignore_background).cpu()
    return [table[table.sum(dim=1) > 0][:, table.sum(dim=0) > 0] for table in tables]


def _entropy(counts: Float64[Tensor, " s"]) -> Float64[Tensor, ""]:
    total = counts.sum()
    probabilities = counts[counts > 0] / total
    return -(probabilities * probabilities.log()).sum()


def _mutual_information(table: Float64[Tensor, "p g"]) -> Float64[Tensor, ""]:
    total = table.sum()
    pred_sizes, target_sizes = table.sum(dim=1, keepdim=True), table.sum(dim=0, keepdim=True)
    joint = table / total
    ratio = table * total / (pred_sizes * target_sizes)
    terms = torch.where(table > 0, joint * ratio.clamp(min=1e-300).log(), torch.zeros_like(table))
    return terms.sum()


def _expected_mutual_information(table: Float64[Tensor, "p g"]) -> Float64[Tensor, ""]:
    """E[MI] of two random partitions with these segment sizes (hypergeometric model; Vinh et al. 2010),
    one predicted segment at a time (memory g × its size rather than p × g × N)."""
    total = table.sum()
    target_sizes = table.sum(dim=0)
    lgamma = torch.lgamma
    expected = torch.zeros((), dtype=torch.float64)
    for a in table.sum(dim=1):
        b = target_sizes[:, None]
        largest = int(torch.minimum(a, target_sizes.max()))
        overlap = torch.arange(1, largest + 1, dtype=torch.float64)[None, :]  # n_ij candidates
        valid = (overlap >= (a + b - total).clamp(min=1)) & (overlap <= torch.minimum(a, b))
        log_probability = (
            lgamma(a + 1) + lgamma(b + 1) + lgamma(total - a + 1) + lgamma(total - b + 1)
            - lgamma(total + 1) - lgamma(overlap + 1) - lgamma((a - overlap).clamp(min=0) + 1)
            - lgamma((b - overlap).clamp(min=0) + 1) - lgamma((total - a - b + overlap).clamp(min=0) + 1)
        )  # fmt: skip
        value = overlap / total * (total * overlap / (a * b)).log() * log_probability.exp()
        expected = expected + torch.where(valid, value, torch.zeros_like(value)).sum()
    return expected


def _trivial(table: Float64[Tensor, "p g"]) -> bool:
    """Both partitions one segment (scikit-learn's perfect-match special case for AMI and NMI)."""
    return table.shape[0] == table.shape[1] == 1


def normalized_mutual_information(
    pred: Integer[Tensor, "b n"], target: Integer[Tensor, "b n"], ignore_background: bool = False
) -> Float64[Tensor, " b"]:
    """MI / mean(H(pred), H(target)) per image: 1 for identical partitions, 0 for independent ones."""
    values = []
    for table in _image_tables(pred, target, ignore_background):
        if table.numel() == 0:
            values.append(float("nan"))
        elif _trivial(table):
            values.append(1.0)
        else:
            information = _mutual_information(table)
            mean_entropy = (_entropy(table.sum(dim=1)) + _entropy(table.sum(dim=0))) / 2
            values.append(0.0 if information <= 0 else float(information / mean_entropy))
    return torch.tensor(values, dtype=torch.float64, device=pred.device)


def adjusted_mutual_information(
    pred: Integer[Tensor, "b n"], target: Integer[Tensor, "b n"], ignore_background: bool = False
) -> Float64[Tensor, " b"]:
    """(MI − E[MI]) / (mean(H(pred), H(target)) − E[MI]) per image: 1 for identical partitions, about 0
    for chance agreement (scikit-learn's ``adjusted_mutual_info_score``)."""
    values = []
    epsilon = torch.finfo(torch.float64).eps
    for table in _image_tables(pred, target, ignore_background):
        if table.numel() == 0:
            values.append(float("nan"))
            continue
        if _trivial(table):
            values.append(1.0)
            continue
        if 1 in table.shape:  # one side a single segment: no information shared (scikit-learn: 0)
            values.append(0.0)
            continue
        information = _mutual_information(table)
        expected = _expected_mutual_information(table)
        mean_entropy = (_entropy(table.sum(dim=1)) + _entropy(table.sum(dim=0))) / 2
        denominator = float(mean_entropy - expected)
        # As scikit-learn: keep the sign, avoid 0/0 when the expectation equals the maximum.
        denominator = min(denominator, -epsilon) if denominator < 0 else max(denominator, epsilon)
        numerator = float(information - expected)
        numerator = min(numerator, -epsilon) if numerator < 0 else max(numerator, epsilon)
        values.append(numerator / denominator)
    return torch.tensor(values, dtype=torch.float64, device=pred.device)


def hungarian_purity(
    pred: Integer[Tensor, "b n"], target: Integer[Tensor, "b n"], ignore_background: bool = False
) -> Float64[Tensor, " b"]:
    """AdaSlot's purity per image: pixels in the one-to-one best matching of predicted to ground-truth
    segments (Hungarian, maximum overlap) over all counted pixels; 1 only for identical partitions."""
    from scipy.optimize import linear_sum_assignment

    values = []
    for table in _image_tables(pred, target, ignore_background):
        if table.numel() == 0:
            values.append(float("nan"))
            continue
        rows, columns = linear_sum_assignment(table.numpy(), maximize=True)
        values.append(float(table[rows, columns].sum() / table.sum()))
    return torch.tensor(values, dtype=torch.float64, device=pred.device)


@dataclass(frozen=True)
class PairCounting:
    """Over ordered pixel pairs: ``precision`` = pairs together in both / pairs together in the
    prediction, ``recall`` = pairs together in both / pairs together in the ground truth, ``f1`` their
    harmonic mean; NaN where a denominator is zero."""

    precision: Float64[Tensor, " b"]
    recall: Float64[Tensor, " b"]
    f1: Float64[Tensor, " b"]


def pair_counting(
    pred: Integer[Tensor, "b n"], target: Integer[Tensor, "b n"], ignore_background: bool = False
) -> PairCounting:
    """Pair-counting precision, recall and F1 per image (scikit-learn's ``pair_confusion_matrix``:
    tp = Σ n_ij² − N, tp + fp = Σ_p a_p² − N, tp + fn = Σ_g b_g² − N, from the contingency table)."""
    table = _contingency_table(pred, target, ignore_background)
    total = table.sum(dim=(1, 2))
    together = (table**2).sum(dim=(1, 2)) - total
    predicted = (table.sum(dim=2) ** 2).sum(dim=1) - total
    actual = (table.sum(dim=1) ** 2).sum(dim=1) - total
    nan = torch.full_like(total, float("nan"))
    precision = torch.where(predicted > 0, together / predicted.clamp(min=1), nan)
    recall = torch.where(actual > 0, together / actual.clamp(min=1), nan)
    summed = precision + recall
    f1 = torch.where(summed > 0, 2 * precision * recall / torch.where(summed > 0, summed, 1.0), nan)
    # Both zero (no pair together in both): F1 is 0/0 in scikit-learn's formula, so NaN, as AdaSlot skips.
    return PairCounting(precision=precision, recall=recall, f1=f1)
