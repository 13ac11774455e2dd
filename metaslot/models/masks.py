"""Per-slot masks: the keep-aware softmax over slots that decoders use for alpha, and resizing any
per-slot map (aggregator attention, decoder alpha) to per-slot masks at input resolution."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor
from torch.nn import functional

from metaslot.errors import DataError
from metaslot.ops.adaslot import MaskMode, keep_weighted_alpha, keep_weighted_probabilities


@dataclass(frozen=True)
class SoftKeep:
    """A learnt keep decision as decoders use it (AdaSlot): ``weight`` in {0, 1} carrying the
    straight-through gradient to the score network, and the ``mode`` that takes dropped slots out of
    the alpha (`metaslot.ops.keep_weighted_alpha`)."""

    weight: Float[Tensor, "b k"]
    mode: MaskMode


def slot_alpha(
    logits: Float[Tensor, "b k *spatial"],
    keep: Bool[Tensor, "b k"] | None,
    soft_keep: SoftKeep | None = None,
) -> Float[Tensor, "b k *spatial"]:
    """Softmax over slots; pruned slots get −inf logits, so zero alpha, and the others share all the mass.

    ``keep=None`` means every slot is live (the reference's decoders never see a mask). An image with no
    live slot at all gets zero alpha everywhere instead of NaN. With ``soft_keep`` (AdaSlot) the alpha is
    the released decoders' keep-weighted one instead, whose gradient reaches the keep decision.
    """
    if soft_keep is not None:
        return keep_weighted_alpha(logits, soft_keep.weight, soft_keep.mode)
    if keep is None:
        return logits.softmax(dim=1)
    keep_map = keep.reshape(*keep.shape, *([1] * (logits.ndim - 2)))
    masked = logits.masked_fill(~keep_map, float("-inf"))
    # An all-pruned image would be softmax over only −inf (NaN); give it finite logits, then zero it.
    any_kept = keep_map.any(dim=1, keepdim=True)
    masked = torch.where(any_kept, masked, torch.zeros_like(masked))
    return masked.softmax(dim=1) * keep_map.to(logits.dtype)


def weighted_probabilities(
    probabilities: Float[Tensor, "b k *spatial"], soft_keep: SoftKeep
) -> Float[Tensor, "b k *spatial"]:
    """Per-slot weights summing to one over slots (an attention map) with AdaSlot's dropped slots taken
    out by ``soft_keep.mode`` (`metaslot.ops.keep_weighted_probabilities`)."""
    return keep_weighted_probabilities(probabilities, soft_keep.weight, soft_keep.mode)


def alpha_to_masks(
    alpha: Float[Tensor, "b k h w"], size: tuple[int, int], keep: Bool[Tensor, "b k"] | None
) -> Float[Tensor, "b k h2 w2"]:
    """Per-slot maps resized (bilinear) to ``size`` with pruned slots set to zero everywhere."""
    masks = alpha
    if tuple(alpha.shape[-2:]) != tuple(size):
        masks = functional.interpolate(alpha, size=size, mode="bilinear", align_corners=False)
    if keep is not None:
        masks = masks * keep[:, :, None, None].to(masks.dtype)
    return masks


def attention_to_masks(
    attention: Float[Tensor, "b k n"],
    grid: tuple[int, int],
    size: tuple[int, int],
    keep: Bool[Tensor, "b k"] | None,
) -> Float[Tensor, "b k h w"]:
    """Token maps (n = h'·w', row-major as the encoders flatten) → masks at ``size``, pruned slots zero."""
    grid_height, grid_width = grid
    if attention.shape[-1] != grid_height * grid_width:
        raise DataError(
            f"attention has {attention.shape[-1]} tokens but the grid {grid} has {grid_height * grid_width}: "
            f"pass the encoder's grid_size for this input"
        )
    maps = rearrange(attention, "b k (h w) -> b k h w", h=grid_height, w=grid_width)
    return alpha_to_masks(maps, size, keep)
