"""Packing the kept slots of a batch into one set, and scattering per-slot results back.

A decoder that honours the keep mask gives a pruned slot zero alpha, so decoding it moves neither the
output nor any gradient: decoding only the kept slots is exact and saves their share of the decoder's
work. `kept_slot_index` says which ``(image, slot)`` rows are kept, `unpack_slots` puts a per-slot result
back at its place in ``b k`` with a fill value for the pruned rows, and `decode_kept_slots` is the two
around a decoder's per-slot function: what every decoder that honours the keep mask calls.

On a GPU the number of kept slots is data: `kept_slot_index` reads it back to the host (one device→host
synchronisation per call, through ``nonzero``), which the shape of everything after it needs. Callers
that must not synchronise (``torch.compile(fullgraph=True)``, CUDA graphs) decode every slot instead.
"""

from __future__ import annotations

from collections.abc import Callable

from einops import rearrange
from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["decode_kept_slots", "kept_slot_index", "unpack_slots"]


def kept_slot_index(keep: Bool[Tensor, "b k"]) -> Int[Tensor, " p"]:
    """Flat ``image·k + slot`` index of every kept slot, in (image, slot) order.

    ``nonzero`` has a data-dependent size: on a GPU it waits for the keep mask and copies its count
    to the host (the one synchronisation of a packed decode).
    """
    return keep.reshape(-1).nonzero().squeeze(1)


def unpack_slots(
    packed: Float[Tensor, " p *rest"],
    index: Int[Tensor, " p"],
    batch: int,
    num_slots: int,
    fill: float = 0.0,
) -> Float[Tensor, "b k *rest"]:
    """Per-slot results of the packed slots at their ``(image, slot)`` places; pruned places hold ``fill``.

    Differentiable in ``packed`` (the gradient of a place is routed to the packed row that filled it;
    ``fill`` places have none).
    """
    rest = packed.shape[1:]
    full = packed.new_full((batch * num_slots, *rest), fill)
    full = full.index_copy(0, index, packed)
    return full.reshape(batch, num_slots, *rest)


def decode_kept_slots(
    decode: Callable[[Tensor], Tensor],
    slots: Float[Tensor, "b k d"],
    keep: Bool[Tensor, "b k"] | None,
) -> Float[Tensor, "b k *rest"]:
    """``decode`` (``s d -> s …``, one slot per row) of the kept slots only, at their places; pruned
    places hold 0.

    Without a keep mask, or when every slot is kept, every slot is decoded as one batch of ``b·k`` rows.
    """
    batch, num_slots, _ = slots.shape
    flat = rearrange(slots, "b k d -> (b k) d")
    if keep is not None:
        index = kept_slot_index(keep)
        if index.numel() < batch * num_slots:
            return unpack_slots(decode(flat[index]), index, batch, num_slots)
    decoded = decode(flat)
    return decoded.reshape(batch, num_slots, *decoded.shape[1:])
