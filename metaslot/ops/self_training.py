"""SPOT's self-training term (stage 2): the student's slot-attention is taught the teacher's decoder masks.

The teacher's hard masks (argmax over slots of its decoder attention) and the student's (argmax of its
last-iteration slot attention) are matched one to one per image by the Hungarian algorithm on their
IoU; the student's attention logits, reordered so that student slot ``match[t]`` stands for teacher
slot ``t``, are then scored with cross-entropy against the teacher's labels (Kakogeorgiou et al. 2024,
``train_spot_2.py``).
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from torch.nn import functional

IGNORED = -100
"""Label of tokens the term skips (``functional.nll_loss``'s ignore index)."""


def hard_mask_iou(
    student_labels: Int[Tensor, "b n"], teacher_labels: Int[Tensor, "b n"], num_slots: int
) -> Float[Tensor, "b k k"]:
    """IoU of every (student slot, teacher slot) pair of hard masks; 0 where both masks are empty."""
    student = functional.one_hot(student_labels, num_slots).float()
    teacher = functional.one_hot(teacher_labels, num_slots).float()
    intersection = torch.einsum("bns,bnt->bst", student, teacher)
    union = student.sum(dim=1)[:, :, None] + teacher.sum(dim=1)[:, None, :] - intersection
    return intersection / union.clamp(min=1e-6)


def match_student_slots(
    student_labels: Int[Tensor, "b n"],
    teacher_labels: Int[Tensor, "b n"],
    num_slots: int,
    student_keep: Bool[Tensor, "b k"] | None = None,
) -> Int[Tensor, "b k"]:
    """``match[b, t]``: the student slot paired with teacher slot ``t`` (maximal total IoU per image).

    Pruned student slots (``student_keep`` False) are paired last: only when the teacher uses more
    slots than the student kept does a teacher slot get one (its tokens are then skipped by the loss).
    """
    # Imported here: scipy.optimize takes about a second to import.
    from scipy.optimize import linear_sum_assignment

    iou = hard_mask_iou(student_labels, teacher_labels, num_slots)
    cost = -iou
    if student_keep is not None:
        cost = cost + (~student_keep)[:, :, None].to(cost.dtype) * 2.0  # IoU ≤ 1: kept slots always win
    cost_host = cost.detach().double().cpu().numpy()
    match = torch.empty(cost.shape[0], num_slots, dtype=torch.long)
    for image in range(cost.shape[0]):
        students, teachers = linear_sum_assignment(cost_host[image])
        match[image, torch.as_tensor(teachers)] = torch.as_tensor(students)
    return match.to(student_labels.device)


def self_training_cross_entropy(
    student_attention: Float[Tensor, "b k n"],
    teacher_labels: Int[Tensor, "b n"],
    student_keep: Bool[Tensor, "b k"] | None = None,
) -> Float[Tensor, ""]:
    """Cross-entropy between the student's Hungarian-matched attention logits and the teacher's labels.

    ``student_attention`` is the softmax over slots of the last iteration's logits; its log equals the
    logits' log-softmax, so the negative log-likelihood of it is the cross-entropy of the logits
    (clamped at the smallest normal float, where the softmax underflowed). Zero when the student's
    attention is the teacher's hard masks up to a renumbering of the slots. Tokens whose teacher slot
    could only be paired with a pruned student slot are skipped.
    """
    num_slots = student_attention.shape[1]
    student_labels = student_attention.detach().argmax(dim=1)
    match = match_student_slots(student_labels, teacher_labels, num_slots, student_keep)
    log_attention = student_attention.float().clamp(min=torch.finfo(torch.float32).tiny).log()
    reordered = log_attention.gather(1, match[:, :, None].expand_as(log_attention))
    labels = teacher_labels
    if student_keep is not None:
        matched_kept = student_keep.gather(1, match)  # b k: teacher slot t's partner is kept
        labels = torch.where(matched_kept.gather(1, teacher_labels), teacher_labels, IGNORED)
    if bool((labels == IGNORED).all()):
        return reordered.sum() * 0.0
    return functional.nll_loss(reordered, labels, ignore_index=IGNORED)
