"""AdaSlot's keep/drop selection (Fan et al., CVPR 2024) as pure functions: the hard straight-through
Gumbel keep mask, its deterministic (argmax) counterpart, the random lower bound on kept slots, the
temperature schedule, the sparsity penalty and the keep-weighted decoder alpha in its three mask modes.

Behaviour follows the released code (amazon-science/AdaSlot, ``spec/adaslot.md``): ``keep`` is
``gumbel_softmax(logits, tau, hard=True)[..., 1]``, the penalty ``linear·mean(keep) +
quadratic·(mean(keep) − bias)²``, and the decoder multiplies its slot softmax by ``keep`` and renormalises
(``mask_normalized``), subtracts 1e5 from dropped logits (``logit``) or only multiplies (``mask``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = [
    "MaskMode",
    "TemperatureSchedule",
    "argmax_keep",
    "gumbel_keep",
    "keep_weighted_alpha",
    "keep_weighted_probabilities",
    "lower_bound_keep",
    "sparsity_penalty",
    "temperature",
]

MaskMode = Literal["mask_normalized", "logit", "mask"]
TemperatureSchedule = Literal["constant", "cosine"]

_VANISH = 1e5
"""What the released ``logit`` mode subtracts from a dropped slot's alpha logit."""
_MINOR = 1e-5
"""What the released ``mask_normalized`` mode adds to the sum over slots before dividing."""


def gumbel_keep(
    logits: Float[Tensor, "b k 2"],
    tau: float | Float[Tensor, ""],
    generator: torch.Generator | None = None,
) -> Float[Tensor, "b k"]:
    """Hard straight-through Gumbel-softmax keep decision: values in {0, 1}, gradient of the soft sample.

    ``logits[..., 1]`` scores keeping, ``logits[..., 0]`` dropping (the released score network's two
    outputs). The Gumbel noise comes from ``generator`` (None: the global RNG), so a seeded evaluation is
    repeatable; ``torch.nn.functional.gumbel_softmax`` takes no generator.
    """
    if isinstance(tau, float) and not tau > 0:
        raise ValueError(f"temperature tau ({tau}) must be positive")
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20, max=1.0 - 1e-7)))
    soft = ((logits.float() + gumbel) / tau).softmax(dim=-1)
    hard = _one_hot_argmax(soft)
    # Straight-through: the forward value is the hard one-hot, the gradient the soft sample's.
    return (hard - soft.detach() + soft)[..., 1].to(logits.dtype)


def _one_hot_argmax(probabilities: Float[Tensor, "*batch 2"]) -> Float[Tensor, "*batch 2"]:
    """One-hot of the larger of the two entries (ties go to index 0, dropping, as ``argmax`` does)."""
    index = probabilities.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(probabilities).scatter_(-1, index, 1.0)


def argmax_keep(logits: Float[Tensor, "b k 2"]) -> Float[Tensor, "b k"]:
    """Deterministic keep decision: 1 where the keep logit beats the drop logit (the mode of the Gumbel
    sample; what ``eval_keep='argmax'`` reports). No gradient flows: it is for evaluation."""
    return (logits[..., 1] > logits[..., 0]).to(logits.dtype)


def lower_bound_keep(
    keep: Float[Tensor, "b k"], lower_bound: int, generator: torch.Generator | None = None
) -> Float[Tensor, "b k"]:
    """Switch dropped slots on at random (uniformly, no gradient) until each image keeps ``lower_bound``.

    The released ``sample_slot_lower_bound``; images that already keep enough are unchanged, and the
    bound is capped at k. Random keys from ``generator`` order the dropped slots of each image.
    """
    if lower_bound <= 0:
        return keep
    hard = keep.detach() > 0.5
    missing = (min(lower_bound, keep.shape[1]) - hard.sum(dim=1, keepdim=True)).clamp(min=0)
    # Rank the dropped slots of each image by a random key; kept slots rank last.
    keys = torch.rand(keep.shape, generator=generator, device=keep.device)
    keys = torch.where(hard, torch.full_like(keys, 2.0), keys)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    switched_on = (~hard) & (ranks < missing)
    return keep + switched_on.to(keep.dtype)


def temperature(
    step: Int[Tensor, ""] | int, schedule: TemperatureSchedule, start: float, end: float, steps: int
) -> Float[Tensor, ""] | float:
    """The Gumbel temperature at optimiser ``step``: ``start`` throughout (``constant``, the released
    behaviour: its schedule hook is never called, so tau = 1), or a cosine from ``start`` to ``end`` over
    ``steps`` steps and ``end`` after (``cosine``, the unused annealing helper the code ships).

    A tensor step gives a float32 tensor on its device (no host sync); an int step a Python float.
    """
    if schedule == "constant":
        return start
    if isinstance(step, Tensor):
        progress = (step.to(torch.float32) / max(steps, 1)).clamp(0.0, 1.0)
        return end + 0.5 * (start - end) * (1.0 + torch.cos(math.pi * progress))
    fraction = min(max(step, 0) / max(steps, 1), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * fraction))


def sparsity_penalty(
    keep: Float[Tensor, "b k"], linear: float, quadratic: float = 0.0, bias: float = 0.5
) -> Float[Tensor, ""]:
    """``linear·mean(keep) + quadratic·(mean(keep) − bias)²`` (the released ``SparsePenalty``), the
    mean over images and slots of the hard keep decision, so its gradient reaches the score network."""
    fraction = keep.float().mean()
    return linear * fraction + quadratic * (fraction - bias) ** 2


def _slot_view(keep: Float[Tensor, "b k"], ndim: int) -> Float[Tensor, "b k ..."]:
    return keep.reshape(*keep.shape, *([1] * (ndim - 2)))


def keep_weighted_probabilities(
    probabilities: Float[Tensor, "b k *spatial"], keep: Float[Tensor, "b k"], mode: MaskMode
) -> Float[Tensor, "b k *spatial"]:
    """Per-slot weights that already sum to one over slots (a softmax, an attention map) with the
    dropped slots taken out: multiplied by ``keep`` and renormalised over slots (+1e-5) for
    ``mask_normalized``, only multiplied for ``mask``; ``logit`` renormalises exactly like
    ``mask_normalized`` but without the 1e-5 (a softmax over the kept slots' logits).
    Dropped slots (keep 0) get exactly zero; an image with no kept slot gets zero everywhere."""
    weights = _slot_view(keep, probabilities.ndim).to(probabilities.dtype)
    kept = probabilities * weights
    if mode == "mask":
        return kept
    total = kept.sum(dim=1, keepdim=True)
    if mode == "mask_normalized":
        return kept / (total + _MINOR)
    return kept / torch.where(total > 0, total, torch.ones_like(total))


def keep_weighted_alpha(
    logits: Float[Tensor, "b k *spatial"], keep: Float[Tensor, "b k"], mode: MaskMode
) -> Float[Tensor, "b k *spatial"]:
    """The released decoders' alpha from per-slot logits and a (straight-through) keep in {0, 1}.

    ``mask_normalized``: softmax over slots, times keep, renormalised (+1e-5); ``mask``: softmax times
    keep; ``logit``: softmax of the logits minus 1e5 on dropped slots. The gradient reaches ``keep``
    in every mode, but in ``logit`` mode only that of kept slots, and only with two or more kept (the
    1e5 saturates the softmax, as released). Dropped slots own no pixel: in ``logit`` mode an image whose
    slots are all dropped (the released code would spread alpha over them) gets zero alpha.
    """
    if mode == "logit":
        weights = _slot_view(keep, logits.ndim).to(logits.dtype)
        alpha = (logits - _VANISH * (1.0 - weights)).softmax(dim=1)
        any_kept = (weights.detach() > 0.5).any(dim=1, keepdim=True)
        return alpha * any_kept.to(alpha.dtype)
    return keep_weighted_probabilities(logits.softmax(dim=1), keep, mode)
