"""SlotDiffusion pipeline: shapes, seeded training on one batch, gradients, pruned slots, sampler."""

from __future__ import annotations

import pytest
import torch

from metaslot.models.decoders import DiffusionDecoderSpec
from metaslot.models.pipelines import SlotDiffusionSpec, VQVAESpec
from tests.support.pipeline_checks import (
    STAGE_TWO_ENCODER,
    adam_steps,
    assert_gradients_reach_exactly_the_trainable_parameters,
    assert_only_first_slot_kept,
    build_with_trained_vqvae,
    stage_two_metaslot,
)


def tiny_slotdiffusion(aggregator=None, **overrides: object) -> SlotDiffusionSpec:
    fields = dict(
        encoder=STAGE_TWO_ENCODER,
        aggregator=aggregator or stage_two_metaslot(),
        vqvae=VQVAESpec(code_dim=4, codebook_size=32, width=8, input_scale=1.0),
        decoder=DiffusionDecoderSpec(
            norm_groups=8, block_channels=(32, 32), layers_per_block=1, attention_head_dim=4, dropout=0.0
        ),
        image_size=32,
        sample_steps=2,
    )
    fields.update(overrides)
    return SlotDiffusionSpec(**fields)


def test_decoder_fields_come_from_the_other_parts() -> None:
    decoder = tiny_slotdiffusion().decoder_spec()
    assert (decoder.latent_channels, decoder.latent_size, decoder.slot_dim) == (4, 4, 16)
    with pytest.raises(ValueError, match="must be divisible by 4"):
        tiny_slotdiffusion(
            decoder=DiffusionDecoderSpec(norm_groups=8, block_channels=(32, 32, 32)), image_size=16
        )


def test_forward_shapes_and_the_target_is_the_quantised_latents() -> None:
    pipeline = build_with_trained_vqvae(tiny_slotdiffusion())
    image = torch.randn(2, 3, 32, 32)
    output = pipeline(image, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(output.loss) and output.loss.shape == () and set(output.terms) == {"noise_mse"}
    assert output.slots.shape == (2, 3, 16) and output.masks.shape == (2, 3, 32, 32)
    latents = pipeline.target_latents(image)
    codes = pipeline.vqvae.tokenize(image).codes
    assert torch.equal(latents, pipeline.vqvae.codebook.lookup(codes))


def test_five_seeded_steps_lower_the_loss_and_gradients_reach_exactly_the_trainable_parameters() -> None:
    pipeline = build_with_trained_vqvae(tiny_slotdiffusion())
    pipeline.train()

    def check_gradients(pipeline) -> None:
        assert_gradients_reach_exactly_the_trainable_parameters(pipeline, frozen_prefix="vqvae.")

    # Same generator seed each step: same slot noise, timesteps and ε, so the losses compare.
    losses = adam_steps(
        pipeline, torch.randn(2, 3, 32, 32), seeds=[11] * 6, lr=2e-3, after_first_backward=check_gradients
    )
    assert losses[-1] < losses[0]
    assert not pipeline.vqvae.training  # stays in evaluation mode under pipeline.train()


def test_a_pruned_slot_gets_no_pixels_and_changes_no_noise_prediction() -> None:
    pipeline = build_with_trained_vqvae(tiny_slotdiffusion(stage_two_metaslot(codebook_size=1))).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        output = pipeline(image)
        assert_only_first_slot_kept(output, batch=2)
        noisy, timesteps = torch.randn(2, 4, 4, 4), torch.tensor([5, 500])
        expected = pipeline.decoder.predict_noise(noisy, timesteps, output.slots, output.keep)
        changed = output.slots.clone()
        changed[:, 1:] = torch.randn_like(changed[:, 1:]) * 10
        assert torch.allclose(
            pipeline.decoder.predict_noise(noisy, timesteps, changed, output.keep), expected, atol=1e-6
        )


def test_reconstruct_samples_latents_and_decodes_images() -> None:
    pipeline = build_with_trained_vqvae(tiny_slotdiffusion()).eval()
    image = torch.randn(2, 3, 32, 32)
    first = pipeline.reconstruct(image, generator=torch.Generator().manual_seed(0))
    again = pipeline.reconstruct(image, generator=torch.Generator().manual_seed(0))
    raw = pipeline.reconstruct(image, num_steps=3, snap_to_codebook=False)
    assert first.shape == raw.shape == (2, 3, 32, 32)
    assert torch.isfinite(first).all() and torch.isfinite(raw).all()
    assert torch.equal(first, again)
