"""SlotDiffusion pipeline: shapes, seeded training on one batch, gradients, pruned slots, sampler."""

from __future__ import annotations

import pytest
import torch

from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.decoders.diffusion import DiffusionDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec
from metaslot.models.pipelines.checkpoint_mapping import load_vqvae_into
from metaslot.models.pipelines.slotdiffusion import SlotDiffusionSpec
from metaslot.models.pipelines.vqvae import VQVAESpec


def tiny_slotdiffusion(aggregator=None, **overrides: object) -> SlotDiffusionSpec:
    fields = dict(
        encoder=CNNEncoderSpec(channels=(16, 16), kernel_size=3, strides=(2, 2)),
        aggregator=aggregator
        or MetaSlotSpec(num_slots=3, slot_dim=16, feature_dim=16, codebook_size=8, buffer_capacity=16),
        vqvae=VQVAESpec(code_dim=4, codebook_size=32, width=8, input_scale=1.0),
        decoder=DiffusionDecoderSpec(
            norm_groups=8, block_channels=(32, 32), layers_per_block=1, attention_head_dim=4, dropout=0.0
        ),
        image_size=32,
        sample_steps=2,
    )
    fields.update(overrides)
    return SlotDiffusionSpec(**fields)


def build_with_trained_vqvae(spec: SlotDiffusionSpec):
    torch.manual_seed(0)
    stage_one = spec.vqvae.build()
    with torch.no_grad():
        stage_one.codebook.embedding.weight.normal_()
    pipeline = spec.build()
    load_vqvae_into(pipeline, stage_one.state_dict(), data="shapes")
    return pipeline


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
    image = torch.randn(2, 3, 32, 32)
    optimizer = torch.optim.Adam([p for p in pipeline.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(6):
        optimizer.zero_grad()
        # Same generator seed each step: same slot noise, timesteps and ε, so the losses compare.
        output = pipeline(image, generator=torch.Generator().manual_seed(11))
        output.loss.backward()
        if step == 0:
            no_gradient = [n for n, p in pipeline.named_parameters() if p.requires_grad and p.grad is None]
            assert no_gradient == []
            frozen = [n for n, p in pipeline.named_parameters() if not p.requires_grad]
            assert frozen and all(name.startswith("vqvae.") for name in frozen)
        optimizer.step()
        pipeline.after_optimizer_step(output)
        losses.append(float(output.loss.detach()))
    assert losses[-1] < losses[0]


def test_a_pruned_slot_gets_no_pixels_and_changes_no_noise_prediction() -> None:
    aggregator = MetaSlotSpec(num_slots=3, slot_dim=16, feature_dim=16, codebook_size=1, buffer_capacity=16)
    pipeline = build_with_trained_vqvae(tiny_slotdiffusion(aggregator)).eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        output = pipeline(image)
        assert output.keep.tolist() == [[True, False, False]] * 2
        assert torch.equal(output.masks[:, 1:], torch.zeros_like(output.masks[:, 1:]))
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
