"""A decoder that paints each slot in one flat colour through its own attention mask.

The reconstruction is ``Σ_k mask_k · colour(slot_k)``: the masks are the aggregator's attention (a
softmax over slots, so they already sum to one over the kept slots), resized to the image, and each
slot's colour is a linear read-out of the slot. One slot cannot paint two differently coloured objects
and the loss reaches the attention directly, so grouping is learnt in minutes rather than hours — the
right bias for the flat-coloured synthetic shapes of the CPU default job, and far too weak for natural
images (the paper presets use the spatial-broadcast, MLP, autoregressive and diffusion decoders).

With a keep mask only the kept slots get a colour (packed, as the other pixel decoders; a pruned slot's
alpha is 0, so its colour moved nothing): its ``rgb`` is 0.
"""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from metaslot.models.decoders.broadcast_pixel import PixelDecoderOutput
from metaslot.models.masks import SoftKeep, weighted_probabilities
from metaslot.ops.packing import decode_kept_slots


@attrs.frozen(kw_only=True)
class AttentionColourDecoderSpec:
    """One RGB colour per slot (``Linear(d, 3)``), alpha = the slot's attention mask at image size."""

    pack_kept_slots: bool = True
    """Colour only the kept slots when a keep mask is given (one device→host read per forward on a
    GPU); False colours every slot at the fixed shape b·k (``torch.compile``, CUDA graphs). Never with
    AdaSlot's ``soft_keep``."""

    def build(self, slot_dim: int, image_size: int) -> AttentionColourDecoder:
        return AttentionColourDecoder(self, slot_dim)


class AttentionColourDecoder(nn.Module):
    """``paint(slots b k d, attention b k h w, keep) -> PixelDecoderOutput`` (pruned slots paint nothing)."""

    def __init__(self, spec: AttentionColourDecoderSpec, slot_dim: int) -> None:
        super().__init__()
        self.spec = spec
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
        colours = self.colours(slots, None if soft_keep is not None else keep)
        reconstruction = torch.einsum("bkhw,bkc->bchw", alpha, colours)
        rgb = colours[:, :, :, None, None].expand(-1, -1, -1, *attention.shape[-2:])
        return PixelDecoderOutput(reconstruction=reconstruction, alpha=alpha, rgb=rgb)

    def colours(
        self, slots: Float[Tensor, "b k d"], keep: Bool[Tensor, "b k"] | None
    ) -> Float[Tensor, "b k 3"]:
        """Each slot's colour; with a keep mask (and packing on) pruned slots get 0 without being read."""
        # With packing, one device→host read on a GPU (how many slots are kept: `decode_kept_slots`).
        return decode_kept_slots(self.colour, slots, keep if self.spec.pack_kept_slots else None)
