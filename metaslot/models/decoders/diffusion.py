"""SlotDiffusion's conditional latent diffusion decoder, plus a DDIM sampler the reference lacks.

Reference §1.8: a diffusers ``UNet2DConditionModel`` predicts the noise ε added to VQ-VAE latents by a
``DDPMScheduler`` (scaled-linear β 0.0015→0.0195, 1000 steps, ε-prediction, no clipping), with the
slots as cross-attention context. Pruned slots are hidden through ``encoder_attention_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass

import attrs
import torch
import torch.nn.functional as functional
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from metaslot.errors import ConfigError
from metaslot.validators import fraction, holds, multiples_of, positive


def _latent_grid_fits_the_levels(spec: DiffusionDecoderSpec) -> None:
    """Each UNet level below the first halves the latent grid, so it must divide by 2^(levels − 1)."""
    downsampling = 2 ** (len(spec.block_channels) - 1)
    if spec.latent_size % downsampling:
        raise ConfigError(
            f"latent_size ({spec.latent_size}) must be divisible by {downsampling} "
            f"for {len(spec.block_channels)} UNet levels; use fewer block_channels or a larger latent grid"
        )


@attrs.frozen
class DiffusionDecoderSpec:
    """Conditional UNet over a ``latent_channels`` × ``latent_size``² latent grid, conditioned on slots.

    Levels: a plain ``DownBlock2D`` then ``CrossAttnDownBlock2D`` for each further entry of
    ``block_channels`` (mirrored on the way up). ``attention_head_dim`` is passed as diffusers does
    (it acts as the number of heads).
    """

    latent_channels: int = attrs.field(default=4, validator=positive)
    latent_size: int = attrs.field(default=16, validator=positive)
    slot_dim: int = attrs.field(default=256, validator=positive)
    norm_groups: int = attrs.field(default=32, validator=positive)
    block_channels: tuple[int, ...] = attrs.field(
        default=(128, 256, 384, 512),
        converter=tuple,
        validator=[
            multiples_of("norm_groups", 2, "one plain, one cross-attention"),
            holds(_latent_grid_fits_the_levels),
        ],
    )
    layers_per_block: int = attrs.field(default=2, validator=positive)
    attention_head_dim: int = attrs.field(default=8, validator=positive)
    dropout: float = attrs.field(default=0.1, validator=fraction)
    num_train_timesteps: int = attrs.field(default=1000, validator=positive)
    beta_start: float = attrs.field(default=0.0015, validator=positive)
    beta_end: float = attrs.field(default=0.0195, validator=positive)

    def build(self) -> DiffusionDecoder:
        return DiffusionDecoder(self)

    def noise_scheduler(self) -> DDPMScheduler:
        """The training noise schedule, configured as the reference's configs do."""
        return DDPMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule="scaled_linear",
            prediction_type="epsilon",
            clip_sample=False,
            variance_type="fixed_small",
            timestep_spacing="leading",
            steps_offset=1,
        )


@dataclass(frozen=True)
class DiffusionTerms:
    """One denoising training step: ``loss = MSE(predicted_noise, noise)`` at ``timesteps``."""

    loss: Float[Tensor, ""]
    noise: Float[Tensor, "b c h w"]
    predicted_noise: Float[Tensor, "b c h w"]
    timesteps: Int[Tensor, " b"]


def encoder_mask(keep: Bool[Tensor, "b k"]) -> Float[Tensor, "b k"]:
    """1 for slots the UNet may attend to, 0 for pruned ones (diffusers turns 0 into a −10000 bias)."""
    return keep.float()


class DiffusionDecoder(nn.Module):
    def __init__(self, spec: DiffusionDecoderSpec) -> None:
        super().__init__()
        self.spec = spec
        levels = len(spec.block_channels)
        self.unet = UNet2DConditionModel(
            sample_size=spec.latent_size,
            in_channels=spec.latent_channels,
            out_channels=spec.latent_channels,
            down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
            mid_block_type="UNetMidBlock2DCrossAttn",
            up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
            block_out_channels=spec.block_channels,
            layers_per_block=spec.layers_per_block,
            transformer_layers_per_block=1,
            cross_attention_dim=spec.slot_dim,
            attention_head_dim=spec.attention_head_dim,
            norm_num_groups=spec.norm_groups,
            dropout=spec.dropout,
        )
        # A derived constant (the β table), not learnt state; rebuilt from the spec on load.
        self.noise_scheduler = spec.noise_scheduler()

    def predict_noise(
        self,
        noisy: Float[Tensor, "b c h w"],
        timesteps: Int[Tensor, " b"],
        slots: Float[Tensor, "b k d"],
        keep: Bool[Tensor, "b k"] | None = None,
    ) -> Float[Tensor, "b c h w"]:
        """ε̂(x_t, t | slots); pruned slots (``keep`` False) get no cross-attention weight."""
        mask = None if keep is None else encoder_mask(keep)
        return self.unet(
            noisy, timesteps, encoder_hidden_states=slots, encoder_attention_mask=mask, return_dict=False
        )[0]

    def loss(
        self,
        latents: Float[Tensor, "b c h w"],
        slots: Float[Tensor, "b k d"],
        keep: Bool[Tensor, "b k"] | None = None,
        generator: torch.Generator | None = None,
    ) -> DiffusionTerms:
        """Noise-prediction MSE with t ~ U{0..T−1} and ε ~ N(0, I) drawn from ``generator`` (global RNG if None)."""
        batch = latents.shape[0]
        timesteps = torch.randint(
            0, self.spec.num_train_timesteps, (batch,), generator=generator, device=latents.device
        )
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        with torch.no_grad():
            noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        predicted = self.predict_noise(noisy, timesteps, slots, keep)
        return DiffusionTerms(
            loss=functional.mse_loss(predicted.float(), noise.float()),
            noise=noise,
            predicted_noise=predicted,
            timesteps=timesteps,
        )

    @torch.no_grad()
    def sample(
        self,
        slots: Float[Tensor, "b k d"],
        keep: Bool[Tensor, "b k"] | None = None,
        num_steps: int = 50,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "b c h w"]:
        """Latents generated from the slots by deterministic DDIM (η = 0) in ``num_steps`` steps."""
        if not 1 <= num_steps <= self.spec.num_train_timesteps:
            raise ConfigError(
                f"num_steps ({num_steps}) must be in 1..{self.spec.num_train_timesteps} (the training steps)"
            )
        scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
        scheduler.set_timesteps(num_steps, device=slots.device)
        size = self.spec.latent_size
        shape = (slots.shape[0], self.spec.latent_channels, size, size)
        latents = torch.randn(shape, generator=generator, device=slots.device, dtype=slots.dtype)
        latents = latents * scheduler.init_noise_sigma
        for timestep in scheduler.timesteps:
            timesteps = timestep.expand(slots.shape[0]).to(slots.device)
            predicted = self.predict_noise(latents, timesteps, slots, keep)
            latents = scheduler.step(predicted, timestep, latents, eta=0.0, return_dict=False)[0]
        return latents
