"""SLATE pipeline: shapes, training on one batch, gradients, frozen VQ-VAE, pruned slots honoured."""

from __future__ import annotations

import pytest
import torch

from metaslot.models.aggregators import SlotAttentionSpec
from metaslot.models.decoders import ARDecoderSpec
from metaslot.models.pipelines import SlateSpec, VQVAESpec
from tests.support.pipeline_checks import (
    STAGE_TWO_ENCODER,
    adam_steps,
    assert_gradients_reach_exactly_the_trainable_parameters,
    assert_only_first_slot_kept,
    build_with_trained_vqvae,
    stage_two_metaslot,
)

VQVAE = VQVAESpec(code_dim=16, codebook_size=32, width=8, input_scale=1.0)


def tiny_slate(aggregator=None, **overrides: object) -> SlateSpec:
    fields = dict(
        encoder=STAGE_TWO_ENCODER,
        aggregator=aggregator or stage_two_metaslot(),
        vqvae=VQVAE,
        decoder=ARDecoderSpec(width=16, num_layers=1, num_heads=2, feedforward=32),
        image_size=32,
    )
    fields.update(overrides)
    return SlateSpec(**fields)


def test_decoder_fields_come_from_the_other_parts() -> None:
    decoder = tiny_slate().decoder_spec()
    assert (decoder.num_tokens, decoder.token_dim, decoder.slot_dim, decoder.vocabulary_size) == (
        16,
        16,
        16,
        32,
    )
    with pytest.raises(ValueError, match="multiple of 8"):
        tiny_slate(image_size=30)


def test_forward_shapes_and_finite_loss() -> None:
    pipeline = build_with_trained_vqvae(tiny_slate())
    image = torch.randn(2, 3, 32, 32)
    output = pipeline(image)
    assert torch.isfinite(output.loss) and output.loss.shape == ()
    assert set(output.terms) == {"cross_entropy"}
    assert output.slots.shape == (2, 3, 16) and output.keep.shape == (2, 3)
    assert output.masks.shape == (2, 3, 32, 32)
    assert output.aggregator is not None and pipeline.aggregator is pipeline.frontend.aggregator
    # Masks are the upsampled attention: a distribution over slots at every pixel.
    assert torch.allclose(output.masks.sum(dim=1), torch.ones(2, 32, 32), atol=1e-4)
    with pytest.raises(ValueError, match="set SlateSpec.image_size"):
        pipeline(torch.randn(1, 3, 40, 40))


def test_slot_attention_aggregator_works_too() -> None:
    aggregator = SlotAttentionSpec(num_slots=2, slot_dim=16, feature_dim=16)
    pipeline = build_with_trained_vqvae(tiny_slate(aggregator))
    output = pipeline(torch.randn(1, 3, 32, 32))
    assert output.keep.all() and torch.isfinite(output.loss)
    pipeline.after_optimizer_step(output)


def test_five_steps_lower_the_loss_and_gradients_reach_exactly_the_trainable_parameters() -> None:
    pipeline = build_with_trained_vqvae(tiny_slate())
    pipeline.train()

    def check_gradients(pipeline) -> None:
        assert_gradients_reach_exactly_the_trainable_parameters(pipeline, frozen_prefix="vqvae.")
        assert all(p.grad is None for p in pipeline.vqvae.parameters())

    losses = adam_steps(
        pipeline, torch.randn(2, 3, 32, 32), seeds=[7] * 6, lr=2e-3, after_first_backward=check_gradients
    )
    assert losses[-1] < losses[0]
    assert not pipeline.vqvae.training  # stays in evaluation mode under pipeline.train()


@pytest.mark.parametrize("honour", [True, False])
def test_a_pruned_slot_gets_no_pixels_and_changes_no_logit(honour: bool) -> None:
    # One prototype: every slot quantises to the same code, so evaluation keeps only slot 0.
    pipeline = build_with_trained_vqvae(
        tiny_slate(stage_two_metaslot(codebook_size=1, honour_keep_downstream=honour))
    )
    pipeline.eval()
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        output = pipeline(image)
        assert_only_first_slot_kept(output, batch=2)
        tokens = pipeline.vqvae.tokenize(image).quantized.flatten(2).transpose(1, 2)
        keep = output.keep if pipeline.honour_keep_downstream else None
        logits = pipeline.decoder(tokens, output.slots, keep)
        changed = output.slots.clone()
        changed[:, 1:] = torch.randn_like(changed[:, 1:]) * 10
        moved = pipeline.decoder(tokens, changed, keep)
    # Honoured: the pruned slots are invisible; reference behaviour (honour False): they are not.
    assert torch.equal(moved, logits) == honour


def test_reconstruct_generates_codes_and_decodes_images() -> None:
    pipeline = build_with_trained_vqvae(tiny_slate()).eval()
    image = torch.randn(2, 3, 32, 32)
    greedy = pipeline.reconstruct(image)
    assert greedy.shape == (2, 3, 32, 32) and torch.isfinite(greedy).all()
    assert torch.equal(pipeline.reconstruct(image), greedy)
    sampled = pipeline.reconstruct(image, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == greedy.shape
