"""Autoencoder pipeline: shapes, training lowers the loss, gradients, keep honoured, spec errors."""

from __future__ import annotations

import attrs
import pytest
import torch

from metaslot.models.decoders import AttentionColourDecoderSpec, BroadcastPixelDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec, ProjectionSpec
from metaslot.models.pipelines import AutoencoderSpec
from tests.support.pipeline_checks import (
    AGGREGATORS,
    adam_steps,
    assert_gradients_reach_exactly_the_trainable_parameters,
    outputs_with_first_slot_pruned,
    seeded_loss,
    tiny_aggregator,
)

IMAGE_SIZE = 8
DECODERS = {
    "broadcast": BroadcastPixelDecoderSpec(hidden_channels=8, broadcast_size=2, num_convs=1),
    "attention-colour": AttentionColourDecoderSpec(),
}


def tiny_autoencoder(
    kind: str,
    honour_keep_downstream: bool = True,
    projection: ProjectionSpec | None = None,
    decoder: str = "broadcast",
):
    torch.manual_seed(0)
    return AutoencoderSpec(
        encoder=CNNEncoderSpec(channels=(8, 8), kernel_size=3, strides=(2, 1)),
        projection=projection,
        aggregator=tiny_aggregator(kind, feature_dim=8, honour_keep_downstream=honour_keep_downstream),
        decoder=DECODERS[decoder],
        image_size=IMAGE_SIZE,
    ).build()


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", AGGREGATORS)
def test_forward_shapes_and_finite_loss(kind: str, decoder: str) -> None:
    pipeline = tiny_autoencoder(kind, decoder=decoder)
    output = pipeline(images())
    assert output.loss.shape == () and torch.isfinite(output.loss)
    assert set(output.terms) == {"reconstruction"}
    assert output.slots.shape == (2, 3, 8) and output.keep.shape == (2, 3)
    assert output.masks.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert output.reconstruction.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert output.aggregator is not None and pipeline.aggregator is pipeline.frontend.aggregator
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))
    torch.testing.assert_close(output.loss, torch.nn.functional.mse_loss(output.reconstruction, images()))


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", AGGREGATORS)
def test_five_adam_steps_lower_the_loss(kind: str, decoder: str) -> None:
    pipeline = tiny_autoencoder(kind, projection=ProjectionSpec(), decoder=decoder)
    batch = images(4)
    before = seeded_loss(pipeline, batch, seed=2)
    adam_steps(pipeline, batch, seeds=range(100, 105), lr=3e-3)
    assert seeded_loss(pipeline, batch, seed=2) < before


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("kind", AGGREGATORS)
def test_gradients_reach_every_trainable_parameter(kind: str, decoder: str) -> None:
    pipeline = tiny_autoencoder(kind, projection=ProjectionSpec(), decoder=decoder)
    pipeline(images(), generator=torch.Generator().manual_seed(0)).loss.backward()
    # Nothing in the autoencoder is frozen.
    assert_gradients_reach_exactly_the_trainable_parameters(pipeline, frozen_prefix=None)


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_pruned_slot_gets_no_pixels_and_does_not_change_the_reconstruction(kind: str) -> None:
    plain, shifted = outputs_with_first_slot_pruned(tiny_autoencoder(kind).eval(), images())
    assert not plain.keep[:, 0].any()
    assert (plain.masks[:, 0] == 0).all() and (shifted.masks[:, 0] == 0).all()
    torch.testing.assert_close(shifted.reconstruction, plain.reconstruction)
    torch.testing.assert_close(plain.masks.sum(dim=1), torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))


def test_attention_colour_decoder_paints_only_the_kept_slot() -> None:
    # One prototype: evaluation keeps slot 0 alone, which then holds all the attention and all the paint.
    torch.manual_seed(0)
    spec = AutoencoderSpec(
        encoder=CNNEncoderSpec(channels=(8, 8), kernel_size=1, strides=(1, 1)),
        aggregator=attrs.evolve(tiny_aggregator("metaslot", feature_dim=8), codebook_size=1),
        decoder=AttentionColourDecoderSpec(),
        image_size=IMAGE_SIZE,
    )
    pipeline = spec.build().eval()
    with torch.no_grad():
        output = pipeline(images())
    assert output.keep.tolist() == [[True, False, False]] * 2
    assert (output.masks[:, 1:] == 0).all()
    torch.testing.assert_close(output.masks[:, 0], torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))
    colour = pipeline.decoder.colour(output.slots[:, 0])
    torch.testing.assert_close(
        output.reconstruction, colour[:, :, None, None].expand_as(output.reconstruction)
    )


def test_reference_behaviour_decodes_pruned_slots_and_keeps_their_masks() -> None:
    pipeline = tiny_autoencoder("metaslot", honour_keep_downstream=False).eval()
    plain, shifted = outputs_with_first_slot_pruned(pipeline, images())
    assert not torch.allclose(shifted.reconstruction, plain.reconstruction)
    assert not plain.keep[:, 0].any() and (plain.masks[:, 0] > 0).all()
    torch.testing.assert_close(plain.masks.sum(dim=1), torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))
    assert not plain.honour_keep_downstream


def test_after_optimizer_step_runs_the_codebook_upkeep() -> None:
    pipeline = tiny_autoencoder("metaslot")
    output = pipeline(images(), generator=torch.Generator().manual_seed(0))
    state = pipeline.aggregator.codebook_state
    before = state.step_counter.clone()
    pipeline.after_optimizer_step(output)
    assert state.step_counter == before + 1


def test_errors_name_the_fix() -> None:
    pipeline = tiny_autoencoder("slot_attention")
    with pytest.raises(ValueError, match="image_size=16"):
        pipeline(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="feature_dim"):
        AutoencoderSpec(
            encoder=CNNEncoderSpec(channels=(4,)), aggregator=tiny_aggregator("slot_attention", feature_dim=8)
        ).build()
    with pytest.raises(ValueError, match="image_size must be at least 1, got 0"):
        AutoencoderSpec(image_size=0)
