"""Nearest-prototype quantisation of slots against a codebook (paper §2.4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from metaslot.ops.checks import check_finite, check_shapes

__all__ = ["Quantized", "quantize", "squared_distances"]


@dataclass(frozen=True)
class Quantized:
    """``prototypes = codebook[codes]``: a differentiable gather, so gradients reach the rows used."""

    prototypes: Float[Tensor, "b k d"]
    codes: Int[Tensor, "b k"]


def squared_distances(vectors: Float[Tensor, "v d"], codebook: Float[Tensor, "m d"]) -> Float[Tensor, "v m"]:
    """Squared Euclidean distances in float32 (even under autocast), clamped at 0 against cancellation."""
    check_shapes("squared_distances", vectors=(vectors, "v d", "float"), codebook=(codebook, "m d", "float"))
    with torch.autocast(device_type=vectors.device.type, enabled=False):
        vectors32, codebook32 = vectors.float(), codebook.float()
        distances = (
            vectors32.square().sum(dim=-1, keepdim=True)
            - 2.0 * vectors32 @ codebook32.T
            + codebook32.square().sum(dim=-1)[None, :]
        )
    return distances.clamp_min(0.0)


def gumbel_noise(
    shape: tuple[int, ...], *, device: torch.device, generator: torch.Generator | None
) -> Float[Tensor, "..."]:
    """Standard Gumbel samples ``−log(−log U)`` in float32; the generator must live on ``device``."""
    uniform = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    tiny = torch.finfo(torch.float32).tiny
    return -torch.log(-torch.log(uniform.clamp_min(tiny)))


def quantize(
    slots: Float[Tensor, "b k d"],
    codebook: Float[Tensor, "m d"],
    *,
    gumbel: bool = False,
    generator: torch.Generator | None = None,
) -> Quantized:
    """Replace each slot by its nearest prototype (squared L2, float32).

    The slots are detached: the index choice passes no gradient to them, while ``prototypes`` is a
    gather from ``codebook`` and passes gradient to the rows used. ``gumbel=True`` draws
    ``argmax(−distance + Gumbel)`` instead (the reference's training path: hard Gumbel-softmax at τ=1),
    with noise from ``generator`` (which must live on the slots' device). A slot holding NaN or ±inf has
    no nearest prototype: with shape checking on it raises `NonFiniteError`; otherwise its code is
    meaningless (0), and callers must mask it (the codebook upkeep treats such slots as invalid).
    """
    check_shapes("quantize", slots=(slots, "b k d", "float"), codebook=(codebook, "m d", "float"))
    # A NaN slot is nearest to no prototype, yet argmax would call it code 0 and prune a real slot with it.
    check_finite(
        "quantize",
        "such slots have no nearest prototype; check the features and the learning rate",
        slots=slots,
        codebook=codebook,
    )
    batch, num_slots, width = slots.shape
    distances = squared_distances(slots.detach().reshape(batch * num_slots, width), codebook.detach())
    scores = -distances
    if gumbel:
        scores = scores + gumbel_noise(tuple(scores.shape), device=scores.device, generator=generator)
    codes = scores.argmax(dim=-1).reshape(batch, num_slots)
    return Quantized(prototypes=codebook[codes], codes=codes)
