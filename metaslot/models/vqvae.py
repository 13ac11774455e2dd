"""VQ-VAE parts: TAESD-style encoder/decoder around a nearest-code quantiser (reference §1.6).

The assembled pipeline (losses, presets, pretrained loading) is ``metaslot.models.pipelines.vqvae``.
These parts work on pixels in [0, 1]; converting from ImageNet-normalised inputs is the pipeline's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor, nn

from metaslot.models.taesd import decoder_layers, encoder_layers
from metaslot.ops.quantize import quantize


class VQEncoder(nn.Module):
    """TAESD encoder layers → GroupNorm(1, w) → Conv1×1(w → code_dim): pixels → pre-quantisation latents.

    The first ``frozen_layers`` layers run without autograd (the reference freezes pretrained layers
    0..10); their parameters get ``requires_grad=False`` from the pipeline.
    """

    def __init__(self, width: int, code_dim: int, frozen_layers: int = 0) -> None:
        super().__init__()
        self.layers = encoder_layers(width)
        self.norm = nn.GroupNorm(1, width)
        self.to_code = nn.Conv2d(width, code_dim, 1)
        self.frozen_layers = frozen_layers

    def forward(self, pixels: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b c h w"]:
        x = pixels
        if self.frozen_layers:
            with torch.no_grad():
                x = self.layers[: self.frozen_layers](x)
        x = self.layers[self.frozen_layers :](x)
        return self.to_code(self.norm(x))


class VQDecoder(nn.Module):
    """Conv1×1(code_dim → w) → GroupNorm(1, w) → TAESD decoder layers: latents → pixels in ~[0, 1]."""

    def __init__(self, width: int, code_dim: int) -> None:
        super().__init__()
        self.from_code = nn.Conv2d(code_dim, width, 1)
        self.norm = nn.GroupNorm(1, width)
        self.layers = decoder_layers(width)

    def forward(self, latents: Float[Tensor, "b c h w"]) -> Float[Tensor, "b 3 H W"]:
        return self.layers(self.norm(self.from_code(latents)))


@dataclass(frozen=True)
class GridQuantized:
    """Quantised latents of an image grid.

    ``quantized`` are the selected code vectors (gradient flows to the codebook only),
    ``straight_through`` equals them in value but passes the gradient to the encoding.
    """

    codes: Int[Tensor, "b h w"]
    quantized: Float[Tensor, "b c h w"]
    straight_through: Float[Tensor, "b c h w"]


class GridCodebook(nn.Module):
    """``m`` code vectors (``nn.Embedding``, U(−1/m, 1/m) as the reference) quantising a latent grid."""

    def __init__(self, codebook_size: int, code_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / codebook_size, 1.0 / codebook_size)

    def forward(self, encoding: Float[Tensor, "b c h w"]) -> GridQuantized:
        height = encoding.shape[2]
        # Nearest code by squared L2 in float32 on the detached encoding (metaslot.ops.quantize).
        vectors = rearrange(encoding, "b c h w -> b (h w) c")
        codes = rearrange(quantize(vectors, self.embedding.weight).codes, "b (h w) -> b h w", h=height)
        quantized = self.lookup(codes)
        straight_through = encoding + (quantized - encoding).detach()
        return GridQuantized(codes, quantized, straight_through)

    def lookup(self, codes: Int[Tensor, "b h w"]) -> Float[Tensor, "b c h w"]:
        """Code indices → code vectors laid out as a channel-first grid."""
        return rearrange(self.embedding(codes), "b h w c -> b c h w")
