"""SPOT's autoregressive transformer decoder over encoder features, with the nine patch orders.

Kakogeorgiou et al. (CVPR 2024) and the MetaSlot reference's ``AR9TransformerDecoder``: the decoder
predicts each encoder token from the slots and the tokens before it *in one of nine orders*
(`metaslot.ops.patch_orders`). The input is ``[start token of the order, tokens in that order minus the
last]`` → Linear (no bias) + LayerNorm; the slots → Linear (no bias) + LayerNorm; no positional
embedding (the order is what tells the decoder where it is). Pre-norm decoder blocks without biases
(d = token width, 4 blocks, 4 heads at 384, GELU feed-forward 4·d), the first block's self-attention
norm moved in front of the stream as in the SLATE decoder. Outputs go back to raster order; the
per-slot masks are the last block's cross-attention averaged over the heads (each token's weights sum
to one over the slots). Training decodes one random order per batch; evaluation order 0 (SPOT's and
the reference's default) or the mean over all nine, as the evaluation protocol says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import attrs
import torch
from einops import rearrange
from jaxtyping import Bool, Float
from torch import Tensor, nn
from torch.nn import functional

from metaslot.errors import ConfigError, DataError
from metaslot.models.decoders.autoregressive import memory_padding
from metaslot.ops.patch_orders import inverse_order, spot_orders
from metaslot.validators import at_least_one, fraction, one_of

TrainOrders = Literal["random", "first", "all"]
EvalOrders = Literal["first", "all"]
NUM_ORDERS = 9


def random_order(generator: torch.Generator | None = None) -> int:
    """One of the nine orders, uniformly: from ``generator`` (on its device), else the global CPU RNG."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(NUM_ORDERS, (), generator=generator, device=device))


def orders_for(choice: str, generator: torch.Generator | None = None) -> list[int]:
    """'first' → [0], 'all' → the nine, 'random' → one drawn by `random_order`."""
    if choice == "first":
        return [0]
    if choice == "all":
        return list(range(NUM_ORDERS))
    return [random_order(generator)]


@attrs.frozen(kw_only=True)
class PermutedARDecoderSpec:
    """The decoder's shape and which orders it decodes; its width is the encoder's token width (the
    reconstruction is read out without a projection, as in SPOT), fixed at ``build``."""

    num_layers: int = attrs.field(default=4, validator=at_least_one)
    num_heads: int = attrs.field(default=4, validator=at_least_one)
    """4 at width 384 (the MetaSlot reference), 6 at 768 (SPOT with ViT-B/16)."""
    feedforward_multiplier: int = attrs.field(default=4, validator=at_least_one)
    dropout: float = attrs.field(default=0.0, validator=fraction)
    train_orders: TrainOrders = attrs.field(default="random", validator=one_of("random", "first", "all"))
    """'random': one of the nine per training batch (SPOT); 'first': raster only; 'all': the mean of nine.
    At evaluation the protocol decides (``--evaluation.token-orders``): order 0 (SPOT's
    ``--eval_permutations standard``, the reference's ``perm_v='default'``) or all nine (SPOT's README)."""

    def build(self, grid: tuple[int, int], feature_dim: int, slot_dim: int) -> PermutedARDecoder:
        if feature_dim % self.num_heads:
            raise ConfigError(
                f"num_heads ({self.num_heads}) must divide the token width ({feature_dim}): "
                f"set --model.decoder.num-heads to a divisor (the reference: 4 at 384, 6 at 768)"
            )
        return PermutedARDecoder(self, grid, feature_dim, slot_dim)


@dataclass(frozen=True)
class PermutedDecoding:
    """The reconstructed tokens in raster order and the last block's cross-attention (per slot, per
    token, summing to one over the slots; pruned slots zero), both averaged over the orders decoded."""

    reconstruction: Float[Tensor, "b n c"]
    attention: Float[Tensor, "b k n"]


class DecoderBlock(nn.Module):
    """Pre-norm transformer decoder block without biases (the names of ``nn.TransformerDecoderLayer``,
    so the reference's weights map one to one), returning the cross-attention weights too."""

    def __init__(self, width: int, num_heads: int, feedforward: int, dropout: float, first: bool) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(
            width, num_heads, dropout=dropout, bias=False, batch_first=True
        )
        self.multihead_attn = nn.MultiheadAttention(
            width, num_heads, dropout=dropout, bias=False, batch_first=True
        )
        self.linear1 = nn.Linear(width, feedforward, bias=False)
        self.linear2 = nn.Linear(feedforward, width, bias=False)
        # The first block's self-attention norm is the decoder's input norm (reference: norm0).
        self.norm1 = nn.Identity() if first else nn.LayerNorm(width, bias=False)
        self.norm2 = nn.LayerNorm(width, bias=False)
        self.norm3 = nn.LayerNorm(width, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        hidden: Float[Tensor, "b n c"],
        memory: Float[Tensor, "b k c"],
        causal: Bool[Tensor, "n n"],
        padding: Bool[Tensor, "b k"] | None,
        need_weights: bool,
    ) -> tuple[Float[Tensor, "b n c"], Float[Tensor, "b n k"] | None]:
        queries = self.norm1(hidden)
        attended, _ = self.self_attn(queries, queries, queries, attn_mask=causal, need_weights=False)
        hidden = hidden + self.dropout(attended)
        read, weights = self.multihead_attn(
            self.norm2(hidden),
            memory,
            memory,
            key_padding_mask=padding,
            need_weights=need_weights,
            average_attn_weights=True,
        )
        hidden = hidden + self.dropout(read)
        feedforward = self.linear2(self.dropout(functional.gelu(self.linear1(self.norm3(hidden)))))
        return hidden + self.dropout(feedforward), weights


class PermutedARDecoder(nn.Module):
    """``forward(tokens b n c, slots b k d, keep, orders) -> PermutedDecoding`` (teacher forcing)."""

    def __init__(
        self, spec: PermutedARDecoderSpec, grid: tuple[int, int], feature_dim: int, slot_dim: int
    ) -> None:
        super().__init__()
        self.spec = spec
        self.grid = grid
        self.num_tokens = grid[0] * grid[1]
        width = feature_dim
        self.start_tokens = nn.Parameter(torch.randn(NUM_ORDERS, 1, width) * width**-0.5)
        self.project_tokens = nn.Sequential(nn.Linear(width, width, bias=False), nn.LayerNorm(width))
        self.project_slots = nn.Sequential(nn.Linear(slot_dim, width, bias=False), nn.LayerNorm(width))
        self.input_norm = nn.LayerNorm(width, bias=False)
        feedforward = spec.feedforward_multiplier * width
        self.layers = nn.ModuleList(
            DecoderBlock(width, spec.num_heads, feedforward, spec.dropout, first=index == 0)
            for index in range(spec.num_layers)
        )
        orders = spot_orders(*grid)
        self.register_buffer("orders", orders, persistent=False)
        self.register_buffer(
            "inverse_orders", torch.stack([inverse_order(o) for o in orders]), persistent=False
        )
        causal = torch.ones(self.num_tokens, self.num_tokens, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def training_orders(self, generator: torch.Generator | None = None) -> list[int]:
        """The orders of a training forward (``train_orders``); a random one is drawn from ``generator``
        (on its device) or, without one, from the global CPU generator."""
        return orders_for(self.spec.train_orders, generator)

    def decode_order(
        self,
        tokens: Float[Tensor, "b n c"],
        memory: Float[Tensor, "b k c"],
        padding: Bool[Tensor, "b k"] | None,
        order: int,
    ) -> tuple[Float[Tensor, "b n c"], Float[Tensor, "b n k"]]:
        """Reconstruction and last cross-attention of one order, back in raster order."""
        sequence = tokens[:, self.orders[order]]
        start = self.start_tokens[order].expand(tokens.shape[0], 1, -1)
        hidden = self.input_norm(self.project_tokens(torch.cat([start, sequence[:, :-1]], dim=1)))
        weights = None
        for index, layer in enumerate(self.layers):
            hidden, weights = layer(
                hidden, memory, self.causal_mask, padding, need_weights=index == len(self.layers) - 1
            )
        assert weights is not None  # the last block always returns its weights
        inverse = self.inverse_orders[order]
        return hidden[:, inverse], weights[:, inverse]

    def forward(
        self,
        tokens: Float[Tensor, "b n c"],
        slots: Float[Tensor, "b k d"],
        keep: Bool[Tensor, "b k"] | None = None,
        orders: Sequence[int] = (0,),
    ) -> PermutedDecoding:
        """Decode ``tokens`` (the targets, teacher-forced) from ``slots`` in each of ``orders`` and average;
        pruned slots (``keep`` False) are hidden from the cross-attention."""
        if tokens.shape[1] != self.num_tokens:
            raise DataError(
                f"{tokens.shape[1]} tokens but the decoder was built for the {self.grid} grid "
                f"({self.num_tokens} tokens): build it for the encoder's grid"
            )
        if not orders or any(not 0 <= order < NUM_ORDERS for order in orders):
            raise ConfigError(f"orders must be indices in 0..{NUM_ORDERS - 1}, got {list(orders)}")
        memory = self.project_slots(slots)
        padding = None if keep is None else memory_padding(keep)
        decoded = [self.decode_order(tokens, memory, padding, order) for order in orders]
        reconstruction = torch.stack([output for output, _ in decoded]).mean(dim=0)
        attention = torch.stack([weights.float() for _, weights in decoded]).mean(dim=0)
        return PermutedDecoding(
            reconstruction=reconstruction, attention=rearrange(attention, "b n k -> b k n")
        )
