"""SPOT's stage-2 term: Hungarian matching of hard masks, cross-entropy zero on the teacher's masks."""

from __future__ import annotations

import math

import torch
from torch.nn import functional

from metaslot.ops.self_training import match_student_slots, self_training_cross_entropy


def _one_hot_attention(labels: torch.Tensor, num_slots: int) -> torch.Tensor:
    return functional.one_hot(labels, num_slots).permute(0, 2, 1).float()


def test_matching_pairs_each_teacher_slot_with_the_student_slot_covering_the_same_tokens() -> None:
    teacher = torch.tensor([[0, 0, 1, 1, 2, 2]])
    student = torch.tensor([[2, 2, 0, 0, 1, 1]])  # the same segments, slots renumbered
    match = match_student_slots(student, teacher, num_slots=3)
    assert match.tolist() == [[2, 0, 1]]


def test_the_term_is_zero_when_the_student_reproduces_the_teacher_masks_in_any_slot_order() -> None:
    teacher = torch.tensor([[0, 0, 1, 1, 2, 2], [1, 1, 1, 0, 0, 2]])
    renumber = torch.tensor([2, 0, 1])
    student = _one_hot_attention(renumber[teacher], 3)
    assert float(self_training_cross_entropy(student, teacher)) == 0.0


def test_the_term_is_the_cross_entropy_of_the_matched_logits() -> None:
    """Hand case: two tokens, two slots; the student's logits l give attention softmax(l)."""
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # b k n: slot 0 wins token 0, slot 1 token 1
    teacher = torch.tensor([[1, 0]])  # teacher slot 1 on token 0, slot 0 on token 1 → match swaps
    loss = self_training_cross_entropy(logits.softmax(dim=1), teacher)
    expected = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)))
    assert math.isclose(float(loss), expected, rel_tol=1e-6)


def test_a_teacher_slot_left_for_a_pruned_student_slot_is_skipped() -> None:
    teacher = torch.tensor([[0, 0, 1, 1]])
    attention = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])  # slot 1 pruned
    keep = torch.tensor([[True, False]])
    loss = self_training_cross_entropy(attention, teacher, keep)
    assert torch.isfinite(loss) and float(loss) == 0.0  # tokens 2, 3 skipped; tokens 0, 1 certain
