"""A decoder that paints each slot in one flat colour through its own attention mask.

The reconstruction is ``Σ_k mask_k · colour(slot_k)``: the masks are the aggregator's attention (a
softmax over slots, so they already sum to one over the kept slots), resized to the image, and each
slot's colour is a linear read-out of the slot. One slot cannot paint two differently coloured objects
and the loss reaches the attention directly, so grouping is learnt in minutes rather than hours — the
right bias for the flat-coloured synthetic shapes of the CPU default job, and far too weak for natural
images (the paper presets use the spatial-broadcast, MLP, autoregressive and diffusion decoders).
"""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from metaslot.models.decoders.broadcast_pixel import PixelDecoderOutput
from metaslot.models.masks import SoftKeep, weighted_probabilities


@attrs.frozen(kw_only=True)
class AttentionColourDecoderSpec:
    """One RGB colour per slot (``Linear(d, 3)``), alpha = the slot's attention mask at image size."""

    def build(self, slot_dim: int, image_size: int) -> AttentionColourDecoder:
        return AttentionColourDecoder(slot_dim)


class AttentionColourDecoder(nn.Module):
    """``paint(slots b k d, attention b k h w, keep) -> PixelDecoderOutput`` (pruned slots paint nothing)."""

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.colour = nn.Linear(slot_dim, 3)

    def paint(
        self,
        slots: Float[Tensor, "b k d"],
        attention: Float[Tensor, "b k h w"],
        keep: Bool[Tensor, "b k"] | None = None,
        soft_keep: SoftKeep | None = None,
    ) -> PixelDecoderOutput:
        """``attention``: per-slot masks at image size whose kept slots sum to one at every pixel; with
        ``soft_keep`` (AdaSlot, whose dropped slots keep their attention) masks summing to one over all
        slots, from which the learnt keep takes the dropped slots out."""
        if soft_keep is not None:
            alpha = weighted_probabilities(attention, soft_keep)
        elif keep is None:
            alpha = attention
        else:
            alpha = attention * keep[:, :, None, None].to(attention.dtype)
        colours = self.colour(slots)
        reconstruction = torch.einsum("bkhw,bkc->bchw", alpha, colours)
        rgb = colours[:, :, :, None, None].expand(-1, -1, -1, *attention.shape[-2:])
        return PixelDecoderOutput(reconstruction=reconstruction, alpha=alpha, rgb=rgb)
