"""Diffusion decoder: reference schedule, seeded loss, pruned slots ignored, DDIM sampler."""

from __future__ import annotations

import pytest
import torch

from metaslot.models.decoders.diffusion import DiffusionDecoderSpec


def tiny_spec(**overrides: object) -> DiffusionDecoderSpec:
    fields = dict(
        latent_channels=4,
        latent_size=4,
        slot_dim=8,
        norm_groups=8,
        block_channels=(32, 32),
        layers_per_block=1,
        attention_head_dim=4,
        dropout=0.0,
    )
    fields.update(overrides)
    return DiffusionDecoderSpec(**fields)


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return tiny_spec().build().eval()


def test_schedule_and_unet_follow_the_reference() -> None:
    spec = DiffusionDecoderSpec()
    scheduler = spec.noise_scheduler()
    config = scheduler.config
    assert (config.beta_schedule, config.prediction_type, config.clip_sample) == (
        "scaled_linear",
        "epsilon",
        False,
    )
    # scaled-linear: β is linear in √β between the endpoints
    roots = scheduler.betas.sqrt()
    assert torch.allclose(roots, torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=roots.dtype), atol=1e-6)
    assert scheduler.betas.shape == (1000,)
    assert spec.block_channels == (128, 256, 384, 512) and spec.layers_per_block == 2 and spec.dropout == 0.1


def test_unet_layout_for_a_tiny_spec(decoder) -> None:
    config = decoder.unet.config
    assert config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D")
    assert config.up_block_types == ("CrossAttnUpBlock2D", "UpBlock2D")
    assert config.cross_attention_dim == 8 and config.in_channels == config.out_channels == 4


def test_seeded_loss_is_finite_and_repeatable(decoder) -> None:
    latents, slots = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 8)
    first = decoder.loss(latents, slots, generator=torch.Generator().manual_seed(3))
    second = decoder.loss(latents, slots, generator=torch.Generator().manual_seed(3))
    assert torch.isfinite(first.loss) and first.loss.shape == ()
    assert torch.equal(first.loss, second.loss) and torch.equal(first.timesteps, second.timesteps)
    assert first.timesteps.min() >= 0 and first.timesteps.max() < 1000
    assert torch.allclose(first.loss, ((first.predicted_noise - first.noise) ** 2).mean())


def test_a_pruned_slot_changes_no_noise_prediction(decoder) -> None:
    noisy, slots = torch.randn(2, 4, 4, 4), torch.randn(2, 3, 8)
    timesteps = torch.tensor([10, 900])
    keep = torch.tensor([[True, True, False], [False, True, True]])
    changed = slots.clone()
    changed[0, 2] = 50.0
    changed[1, 0] = -50.0
    with torch.no_grad():
        expected = decoder.predict_noise(noisy, timesteps, slots, keep)
        assert torch.allclose(decoder.predict_noise(noisy, timesteps, changed, keep), expected, atol=1e-6)
        assert not torch.allclose(decoder.predict_noise(noisy, timesteps, changed), expected, atol=1e-4)


def test_ddim_sampler_returns_repeatable_latents(decoder) -> None:
    slots = torch.randn(2, 3, 8)
    keep = torch.tensor([[True, False, True], [True, True, True]])
    first = decoder.sample(slots, keep, num_steps=3, generator=torch.Generator().manual_seed(0))
    second = decoder.sample(slots, keep, num_steps=3, generator=torch.Generator().manual_seed(0))
    assert first.shape == (2, 4, 4, 4) and torch.isfinite(first).all()
    assert torch.equal(first, second)
    with pytest.raises(ValueError, match="num_steps"):
        decoder.sample(slots, keep, num_steps=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(block_channels=(32, 36)), "not divisible by norm_groups"),
        (dict(latent_size=6, block_channels=(32, 32, 32)), "must be divisible by 4"),
        (dict(block_channels=(32,)), "at least 2 levels"),
        (dict(dropout=1.0), "dropout must be"),
    ],
)
def test_spec_rejects_unbuildable_layouts(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_spec(**overrides)
