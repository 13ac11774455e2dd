"""DINOSAUR's broadcast MLP decoder (``spec/reference.md`` §1.5): each slot, broadcast to every token
position plus a learnt position embedding, is decoded by a shared MLP into a feature vector and an alpha
logit; alpha is a softmax over slots and the features are the alpha-weighted sum.

With a keep mask only the kept slots are decoded (packed, `metaslot.ops.packing`): a pruned slot's
alpha is 0, so its decode moved no output and no gradient. The MLP is most of a DINOSAUR step, so this
saves the pruned share of it.

With ``top_k`` (FT-DINOSAUR's top-k decoding) each token is decoded from only the ``top_k`` slots with the
most attention there (`metaslot.ops.top_k_slots`), alpha is the softmax over those, and the others get
alpha 0 at that token."""

from __future__ import annotations

from dataclasses import dataclass

import attrs
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from metaslot.models.activations import Activation, activation_layer, check_activation
from metaslot.models.masks import SoftKeep, slot_alpha
from metaslot.ops.packing import decode_kept_slots
from metaslot.ops.top_k import gather_chosen_slots, scatter_chosen_slots, top_k_slots
from metaslot.validators import at_least_one, or_none, positive_ints


@attrs.frozen(kw_only=True)
class MLPDecoderSpec:
    """MLP(d → hidden… → c+1) with GELU (or ReLU); reference: ``hidden_channels=(2048, 2048, 2048)``.

    d, c and the number of tokens n come from the neighbours at ``build`` (aggregator slot width, encoder
    width, encoder grid).
    """

    hidden_channels: tuple[int, ...] = attrs.field(default=(2048, 2048, 2048), validator=positive_ints)
    position_std: float = 1.0
    """Std of the truncated-normal (±2) init of the learnt position embedding (reference: 1)."""
    pack_kept_slots: bool = True
    """Decode only the kept slots when a keep mask is given (same output and gradients; on a GPU one
    device→host read per forward for their count). False decodes every slot at the fixed shape b·k,
    for ``torch.compile(fullgraph=True)`` and CUDA graphs. Never with AdaSlot's ``soft_keep``, whose
    straight-through gradient reaches the keep decision through the dropped slots' decodes."""
    activation: Activation = attrs.field(default="gelu", validator=check_activation)
    """Hidden activation: 'gelu' (the MetaSlot reference) or 'relu' (FT-DINOSAUR, from OCLF)."""
    top_k: int | None = attrs.field(default=None, validator=or_none(at_least_one))
    """Decode each token from only its ``top_k`` most-attending slots (FT-DINOSAUR: 3); None decodes
    every slot everywhere (the reference)."""

    def build(self, slot_dim: int, feature_dim: int, num_tokens: int) -> MLPDecoder:
        return MLPDecoder(self, slot_dim, feature_dim, num_tokens)


@dataclass(frozen=True)
class FeatureDecoderOutput:
    """``reconstruction`` = Σ_k alpha_k·features_k; ``alpha`` is 0 for pruned slots."""

    reconstruction: Float[Tensor, "b n c"]
    alpha: Float[Tensor, "b k n"]


class MLPDecoder(nn.Module):
    """``forward(slots b k d, keep b k | None, soft_keep, scores b k n | None) -> FeatureDecoderOutput``;
    keep None decodes every slot; ``soft_keep`` (AdaSlot) weighs the alpha by the learnt keep instead;
    ``scores`` (the aggregator's attention) choose the slots under ``top_k``."""

    def __init__(self, spec: MLPDecoderSpec, slot_dim: int, feature_dim: int, num_tokens: int) -> None:
        super().__init__()
        self.spec = spec
        self.feature_dim = feature_dim
        self.position = nn.Parameter(torch.empty(1, 1, num_tokens, slot_dim))
        nn.init.trunc_normal_(self.position, std=spec.position_std, a=-2.0, b=2.0)
        layers: list[nn.Module] = []
        width = slot_dim
        for hidden in spec.hidden_channels:
            layers += [nn.Linear(width, hidden), activation_layer(spec.activation)]
            width = hidden
        layers.append(nn.Linear(width, feature_dim + 1))
        self.mlp = nn.Sequential(*layers)

    def decode(self, slots: Float[Tensor, "*slot d"]) -> Float[Tensor, "*slot n e"]:
        """Each slot on its own, broadcast over the tokens: features and alpha logit (e = c + 1)."""
        return self.mlp(slots[..., None, :] + self.position[0, 0])

    def forward(
        self,
        slots: Float[Tensor, "b k d"],
        keep: Bool[Tensor, "b k"] | None = None,
        soft_keep: SoftKeep | None = None,
        scores: Float[Tensor, "b k n"] | None = None,
    ) -> FeatureDecoderOutput:
        if self.spec.top_k is not None:
            return self._forward_top_k(slots, keep, soft_keep, scores, self.spec.top_k)
        packs = keep is not None and soft_keep is None and self.spec.pack_kept_slots
        # With packing, one device→host read on a GPU (how many slots are kept: `decode_kept_slots`).
        decoded = decode_kept_slots(self.decode, slots, keep if packs else None)  # b k n c+1
        features, logits = decoded[..., : self.feature_dim], decoded[..., self.feature_dim]
        alpha = slot_alpha(logits, keep, soft_keep)
        reconstruction = torch.einsum("bkn,bknc->bnc", alpha, features)
        return FeatureDecoderOutput(reconstruction=reconstruction, alpha=alpha)

    def _forward_top_k(
        self,
        slots: Float[Tensor, "b k d"],
        keep: Bool[Tensor, "b k"] | None,
        soft_keep: SoftKeep | None,
        scores: Float[Tensor, "b k n"] | None,
        top_k: int,
    ) -> FeatureDecoderOutput:
        """Each token decoded from its ``top_k`` highest-scoring slots only (already "packed": the MLP
        sees b·top_k·n rows whatever the keep)."""
        if soft_keep is not None:
            raise ValueError("top-k decoding takes a hard keep only, not AdaSlot's soft keep: set top_k=None")
        if scores is None:
            raise ValueError(
                "top-k decoding chooses slots by attention: pass scores=<the aggregator's attention (b, k, n)>"
            )
        chosen = top_k_slots(scores, top_k, keep)  # b s n
        broadcast = slots[:, :, None, :] + self.position  # b k n d
        decoded = self.mlp(gather_chosen_slots(broadcast, chosen))  # b s n c+1
        features, logits = decoded[..., : self.feature_dim], decoded[..., self.feature_dim]
        alpha_chosen = _chosen_alpha(logits, chosen, keep)
        reconstruction = torch.einsum("bsn,bsnc->bnc", alpha_chosen, features)
        alpha = scatter_chosen_slots(alpha_chosen, chosen, slots.shape[1])
        return FeatureDecoderOutput(reconstruction=reconstruction, alpha=alpha)


def _chosen_alpha(
    logits: Float[Tensor, "b s n"], chosen: Int[Tensor, "b s n"], keep: Bool[Tensor, "b k"] | None
) -> Float[Tensor, "b s n"]:
    """Softmax over the chosen slots; a pruned slot chosen only for want of kept ones gets 0 (and a token
    with no kept slot among its chosen ones gets 0 everywhere, as `slot_alpha` does for a whole image)."""
    if keep is None:
        return logits.softmax(dim=1)
    chosen_keep = torch.gather(keep, 1, chosen.flatten(1)).reshape(chosen.shape)
    masked = logits.masked_fill(~chosen_keep, float("-inf"))
    masked = torch.where(chosen_keep.any(dim=1, keepdim=True), masked, torch.zeros_like(masked))
    return masked.softmax(dim=1) * chosen_keep.to(logits.dtype)
