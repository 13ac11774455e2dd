"""SLATE's autoregressive transformer decoder: predicts each VQ code from earlier code vectors and the slots.

Reference §1.7: 4 pre-norm decoder layers (d 256, 4 heads, ff 1024, GELU, dropout 0, no bias), causal
self-attention over ``[bos, tokens[:-1]] + learnt positions``, cross-attention to the slots, linear
readout to the code vocabulary. Pruned slots are hidden from the cross-attention by a key-padding mask.
"""

from __future__ import annotations

import attrs
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from metaslot.errors import ConfigError, DataError
from metaslot.validators import divides, fraction, positive


@attrs.frozen
class ARDecoderSpec:
    """Autoregressive decoder over a ``num_tokens``-long raster sequence of ``token_dim`` code vectors.

    Tokens and slots are used as they are when their widths equal ``width`` (the reference: 256
    everywhere); otherwise a bias-free linear map brings them to ``width``.
    """

    num_tokens: int = attrs.field(default=256, validator=positive)
    token_dim: int = attrs.field(default=256, validator=positive)
    slot_dim: int = attrs.field(default=256, validator=positive)
    vocabulary_size: int = attrs.field(default=4096, validator=positive)
    width: int = attrs.field(default=256, validator=positive)
    num_layers: int = attrs.field(default=4, validator=positive)
    num_heads: int = attrs.field(default=4, validator=divides("width"))
    feedforward: int = attrs.field(default=1024, validator=positive)
    dropout: float = attrs.field(default=0.0, validator=fraction)

    def build(self) -> ARDecoder:
        return ARDecoder(self)


def _project(source: int, target: int) -> nn.Module:
    return nn.Identity() if source == target else nn.Linear(source, target, bias=False)


def memory_padding(keep: Bool[Tensor, "b k"]) -> Bool[Tensor, "b k"]:
    """Key-padding mask (True = hidden) for pruned slots.

    A row with no kept slot would make every cross-attention key −inf and the softmax NaN; such rows
    are left unmasked instead (MetaSlot always keeps one slot, so this only guards misuse).
    """
    return ~keep & keep.any(dim=-1, keepdim=True)


class ARDecoder(nn.Module):
    def __init__(self, spec: ARDecoderSpec) -> None:
        super().__init__()
        self.spec = spec
        self.bos = nn.Parameter(torch.randn(1, 1, spec.width) * spec.width**-0.5)
        self.positions = nn.Parameter(torch.empty(1, spec.num_tokens, spec.width))
        nn.init.trunc_normal_(self.positions, std=1.0, a=-2.0, b=2.0)
        self.project_tokens = _project(spec.token_dim, spec.width)
        self.project_slots = _project(spec.slot_dim, spec.width)
        # Built one by one (not nn.TransformerDecoder's deep copies) so layers start from different weights.
        self.layers = nn.ModuleList(
            nn.TransformerDecoderLayer(
                spec.width,
                spec.num_heads,
                spec.feedforward,
                dropout=spec.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
                bias=False,
            )
            for _ in range(spec.num_layers)
        )
        # As the reference: the first layer's self-attention norm moves in front of the residual stream.
        self.input_norm = self.layers[0].norm1
        self.layers[0].norm1 = nn.Identity()
        self.readout = nn.Linear(spec.width, spec.vocabulary_size, bias=False)
        causal = torch.ones(spec.num_tokens, spec.num_tokens, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("causal_mask", causal, persistent=False)

    def forward(
        self,
        tokens: Float[Tensor, "b n c"],
        slots: Float[Tensor, "b k d"],
        keep: Bool[Tensor, "b k"] | None = None,
    ) -> Float[Tensor, "b n m"]:
        """Logits of token i given tokens < i and the slots (teacher forcing); pruned slots are ignored."""
        batch, length, _ = tokens.shape
        if length > self.spec.num_tokens:
            raise DataError(
                f"{length} tokens exceed the decoder's num_tokens ({self.spec.num_tokens}): "
                "raise ARDecoderSpec.num_tokens to the VQ-VAE's latent grid size"
            )
        shifted = torch.cat([self.bos.expand(batch, 1, -1), self.project_tokens(tokens[:, :-1])], dim=1)
        hidden = self.input_norm(shifted + self.positions[:, :length])
        memory = self.project_slots(slots)
        padding = None if keep is None else memory_padding(keep)
        causal = self.causal_mask[:length, :length]
        for layer in self.layers:
            hidden = layer(
                hidden, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padding
            )
        return self.readout(hidden)

    @torch.no_grad()
    def generate(
        self,
        slots: Float[Tensor, "b k d"],
        code_vectors: Float[Tensor, "m c"],
        keep: Bool[Tensor, "b k"] | None = None,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Int[Tensor, "b n"]:
        """Codes generated one by one from the slots: greedy at ``temperature`` 0, else sampled.

        Each step feeds the chosen code's vector (``code_vectors[code]``, the VQ-VAE codebook) back in.
        Runs ``num_tokens`` full forwards (no key/value cache): meant for pictures, not training.
        """
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        batch, length = slots.shape[0], self.spec.num_tokens
        tokens = slots.new_zeros(batch, length, code_vectors.shape[-1])
        codes = torch.zeros(batch, length, dtype=torch.long, device=slots.device)
        for position in range(length):
            # Position i sees only tokens < i, so the zeros after it do not matter.
            logits = self(tokens, slots, keep)[:, position].float()
            if temperature == 0:
                chosen = logits.argmax(dim=-1)
            else:
                probabilities = (logits / temperature).softmax(dim=-1)
                chosen = torch.multinomial(probabilities, 1, generator=generator).squeeze(1)
            codes[:, position] = chosen
            tokens[:, position] = code_vectors[chosen].to(tokens.dtype)
        return codes
