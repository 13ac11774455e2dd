"""SlotDiffusion: slots condition a latent diffusion model over a frozen c4 VQ-VAE's latents (reference §1.8).

Training: the frozen VQ-VAE gives the quantised latents x0 (code vectors, unscaled, not the
straight-through output), the UNet predicts the noise added at a random step, loss = MSE(ε̂, ε).
Masks come from the aggregator's attention. :meth:`SlotDiffusion.reconstruct` runs the DDIM sampler
from the slots and decodes through the VQ-VAE decoder (the reference has no sampler).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch
from jaxtyping import Float
from torch import Tensor

from metaslot.errors import DataError
from metaslot.models.decoders.diffusion import DiffusionDecoderSpec
from metaslot.models.encoders import EncoderSpec, ProjectionSpec
from metaslot.models.pipelines.frontend import AggregatorSpec
from metaslot.models.pipelines.slot_pipeline import slot_output
from metaslot.models.pipelines.stage_two import StageTwoPipeline
from metaslot.models.pipelines.vqvae import VQVAESpec, latent_grid, vqvae_c4
from metaslot.models.records import PipelineOutput
from metaslot.validators import at_least_one, holds


def _decoder_fits(spec: SlotDiffusionSpec) -> None:
    spec.decoder_spec()  # the UNet depth against the latent grid, now rather than at build


@attrs.frozen(kw_only=True)
class SlotDiffusionSpec:
    """SlotDiffusion pipeline. The decoder's ``latent_channels``, ``latent_size`` and ``slot_dim`` are
    taken from ``vqvae``, ``image_size`` and ``aggregator`` at build time.

    Load the trained VQ-VAE after ``build()`` with ``checkpoint_mapping.load_vqvae_checkpoint``.
    """

    stage_one_variant: ClassVar[str] = "c4"  # reference: SlotDiffusion denoises the latents of vqvae-c4
    encoder: EncoderSpec
    aggregator: AggregatorSpec
    projection: ProjectionSpec | None = attrs.Factory(ProjectionSpec)
    vqvae: VQVAESpec = attrs.Factory(vqvae_c4)
    decoder: DiffusionDecoderSpec = attrs.Factory(DiffusionDecoderSpec)
    image_size: int = attrs.field(default=256, validator=[at_least_one, holds(_decoder_fits)])
    """Side of the square input images (fixes the VQ token grid and the decoder built for it)."""
    sample_steps: int = attrs.field(default=50, validator=at_least_one)
    """DDIM steps of :meth:`SlotDiffusion.reconstruct` when none are given."""

    def decoder_spec(self) -> DiffusionDecoderSpec:
        return attrs.evolve(
            self.decoder,
            latent_channels=self.vqvae.code_dim,
            latent_size=latent_grid(self.image_size, self.vqvae),
            slot_dim=self.aggregator.slot_dim,
        )

    def build(self) -> SlotDiffusion:
        return SlotDiffusion(self)


class SlotDiffusion(StageTwoPipeline):
    """``forward(image b 3 h w) -> PipelineOutput``: the UNet's noise-prediction MSE on the VQ latents."""

    def __init__(self, spec: SlotDiffusionSpec) -> None:
        super().__init__(spec.encoder, spec.projection, spec.aggregator, spec.vqvae)
        self.spec = spec
        self.decoder = spec.decoder_spec().build()

    def target_latents(self, image: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b c h2 w2"]:
        """The diffusion target: the frozen VQ-VAE's quantised latents of the image."""
        with torch.no_grad():
            latents = self.vqvae.tokenize(image).quantized
        size = self.decoder.spec.latent_size
        if tuple(latents.shape[-2:]) != (size, size):
            raise DataError(
                f"a {tuple(image.shape[-2:])} image gives {tuple(latents.shape[-2:])} latents but the UNet "
                f"was built for {size}×{size}: set SlotDiffusionSpec.image_size to the input size"
            )
        return latents

    def forward(
        self, image: Float[Tensor, "b 3 h w"], generator: torch.Generator | None = None
    ) -> PipelineOutput:
        """Noise-prediction loss; ``generator`` (optional) drives the slot initialiser, t and ε."""
        masked = self.slot_masks(image, generator)
        aggregated = masked.front.aggregator
        latents = self.target_latents(image)
        terms = self.decoder.loss(
            latents, self.decoder_slots(aggregated), self.downstream_keep(aggregated), generator=generator
        )
        return slot_output(
            aggregated,
            terms.loss,
            "noise_mse",
            masked.masks,
            honour_keep_downstream=self.honour_keep_downstream,
        )

    @torch.no_grad()
    def reconstruct(
        self,
        image: Float[Tensor, "b 3 h w"],
        num_steps: int | None = None,
        generator: torch.Generator | None = None,
        snap_to_codebook: bool = True,
    ) -> Float[Tensor, "b 3 h2 w2"]:
        """Image → slots → DDIM latents → VQ-VAE decoder: ImageNet-normalised images at the VQ-VAE's
        resolution (``input_scale`` × input). ``snap_to_codebook`` replaces each sampled latent vector by
        its nearest code first, which is what the decoder was trained on."""
        aggregated = self.frontend(image, generator=generator).aggregator
        latents = self.decoder.sample(
            aggregated.slots,
            self.downstream_keep(aggregated),
            num_steps=num_steps or self.spec.sample_steps,
            generator=generator,
        )
        if snap_to_codebook:
            latents = self.vqvae.codebook(latents).quantized
        return self.vqvae.decode(latents)
