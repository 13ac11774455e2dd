"""Picture helpers shared by the evaluation pictures and the shapes study."""

from __future__ import annotations

import numpy
import torch

from metaslot.eval.pictures import kept_slot_labels, label_overlay


def test_pruned_slots_never_win_a_pixel() -> None:
    masks = torch.tensor([[[0.2, 0.4]], [[0.9, 0.9]], [[0.5, 0.3]]])  # 3 slots, 1×2 pixels
    keep = torch.tensor([True, False, True])
    assert kept_slot_labels(masks, keep).tolist() == [[2, 0]]
    assert kept_slot_labels(masks, torch.ones(3, dtype=torch.bool)).tolist() == [[1, 1]]


def test_overlay_tints_each_label_with_its_own_colour() -> None:
    picture = numpy.full((1, 3, 3), 0.5)
    overlay = label_overlay(picture, numpy.array([[0, 1, 1]]), count=2)
    assert overlay.shape == (1, 3, 3) and 0 <= overlay.min() and overlay.max() <= 1
    assert numpy.allclose(overlay[0, 1], overlay[0, 2])
    assert not numpy.allclose(overlay[0, 0], overlay[0, 1])
