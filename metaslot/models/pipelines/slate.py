"""SLATE: slots decoded autoregressively into the codes of a frozen VQ-VAE (reference §1.7).

image → front end (encoder → projection → aggregator) → slots; the frozen stage-1 VQ-VAE turns the
image into a grid of codes and code vectors; the AR decoder predicts each code from the earlier code
vectors and the slots; loss = cross-entropy on the codes. Masks come from the aggregator's attention.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
import torch.nn.functional as functional
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from metaslot.errors import DataError
from metaslot.models.decoders.autoregressive import ARDecoderSpec
from metaslot.models.encoders import EncoderSpec, ProjectionSpec
from metaslot.models.pipelines.frontend import AggregatorSpec
from metaslot.models.pipelines.slot_pipeline import slot_output
from metaslot.models.pipelines.stage_two import StageTwoPipeline
from metaslot.models.pipelines.vqvae import VQVAESpec, latent_grid, vqvae_c256
from metaslot.models.records import PipelineOutput
from metaslot.validators import at_least_one, holds


def _decoder_fits(spec: SlateSpec) -> None:
    latent_grid(spec.image_size, spec.vqvae)  # the VQ token grid must be whole


@attrs.frozen(kw_only=True)
class SlateSpec:
    """SLATE pipeline. The decoder's ``num_tokens``, ``token_dim``, ``slot_dim`` and ``vocabulary_size``
    are taken from ``image_size``, ``vqvae`` and ``aggregator`` at build time (they cannot disagree).

    Load the trained VQ-VAE after ``build()`` with ``checkpoint_mapping.load_vqvae_checkpoint``.
    """

    stage_one_variant: ClassVar[str] = "c256"  # reference: SLATE decodes the codes of vqvae-c256
    encoder: EncoderSpec
    aggregator: AggregatorSpec
    projection: ProjectionSpec | None = attrs.Factory(ProjectionSpec)
    vqvae: VQVAESpec = attrs.Factory(vqvae_c256)
    decoder: ARDecoderSpec = attrs.Factory(ARDecoderSpec)
    image_size: int = attrs.field(default=256, validator=[at_least_one, holds(_decoder_fits)])
    """Side of the square input images (fixes the VQ token grid and the decoder built for it)."""

    def decoder_spec(self) -> ARDecoderSpec:
        return attrs.evolve(
            self.decoder,
            num_tokens=latent_grid(self.image_size, self.vqvae) ** 2,
            token_dim=self.vqvae.code_dim,
            slot_dim=self.aggregator.slot_dim,
            vocabulary_size=self.vqvae.codebook_size,
        )

    def build(self) -> Slate:
        return Slate(self)


class Slate(StageTwoPipeline):
    """``forward(image b 3 h w) -> PipelineOutput``: cross-entropy of the AR decoder on the VQ codes."""

    def __init__(self, spec: SlateSpec) -> None:
        super().__init__(spec.encoder, spec.projection, spec.aggregator, spec.vqvae)
        self.spec = spec
        self.decoder = spec.decoder_spec().build()

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        masked = self.slot_masks(image, generator)
        aggregated = masked.front.aggregator
        with torch.no_grad():
            tokens = self.vqvae.tokenize(image)
        codes = rearrange(tokens.codes, "b h w -> b (h w)")
        vectors = rearrange(tokens.quantized, "b c h w -> b (h w) c")
        if codes.shape[1] != self.decoder.spec.num_tokens:
            raise DataError(
                f"a {tuple(image.shape[-2:])} image gives {codes.shape[1]} VQ tokens but the decoder was "
                f"built for {self.decoder.spec.num_tokens}: set SlateSpec.image_size to the input size"
            )
        keep = self.downstream_keep(aggregated)
        logits = self.decoder(vectors, self.decoder_slots(aggregated), keep)
        # Cross-entropy in float32 (the logits may come out of bf16 autocast).
        cross_entropy = functional.cross_entropy(rearrange(logits.float(), "b n m -> b m n"), codes)
        return slot_output(
            aggregated,
            cross_entropy,
            "cross_entropy",
            masked.masks,
            honour_keep_downstream=self.honour_keep_downstream,
        )

    @torch.no_grad()
    def reconstruct(
        self,
        image: Float[Tensor, "b 3 h w"],
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "b 3 h2 w2"]:
        """Image → slots → codes generated autoregressively → VQ-VAE decoder: ImageNet-normalised images
        at the VQ-VAE's resolution (``input_scale`` × input). Slow (one decoder pass per token)."""
        aggregated = self.frontend(image, generator=generator).aggregator
        codebook = self.vqvae.codebook
        codes = self.decoder.generate(
            aggregated.slots,
            codebook.embedding.weight,
            self.downstream_keep(aggregated),
            temperature=temperature,
            generator=generator,
        )
        side = latent_grid(self.spec.image_size, self.spec.vqvae)
        return self.vqvae.decode(codebook.lookup(rearrange(codes, "b (h w) -> b h w", h=side, w=side)))
