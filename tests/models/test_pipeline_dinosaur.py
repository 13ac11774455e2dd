"""DINOSAUR pipeline: shapes, training lowers the loss, frozen backbone, keep honoured, masks from alpha."""

from __future__ import annotations

import pytest
import torch

from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.decoders import MLPDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec, DinoViTSpec, ProjectionSpec
from metaslot.models.pipelines import DinosaurSpec
from tests.support.pipeline_checks import (
    AGGREGATORS,
    adam_steps,
    assert_gradients_reach_exactly_the_trainable_parameters,
    outputs_with_first_slot_pruned,
    seeded_loss,
    tiny_aggregator,
)

IMAGE_SIZE = 8
TINY_VIT = DinoViTSpec(model_name="vit_tiny_patch16_224", pretrained=False, image_size=32)


def tiny_dinosaur(kind: str, encoder=None, honour_keep_downstream: bool = True, image_size: int = IMAGE_SIZE):
    torch.manual_seed(0)
    return DinosaurSpec(
        encoder=encoder
        if encoder is not None
        else CNNEncoderSpec(channels=(6, 6), kernel_size=3, strides=(2, 2)),
        projection=ProjectionSpec(),
        aggregator=tiny_aggregator(kind, feature_dim=8, honour_keep_downstream=honour_keep_downstream),
        decoder=MLPDecoderSpec(hidden_channels=(16, 16)),
        image_size=image_size,
    ).build()


def images(batch: int = 2, size: int = IMAGE_SIZE) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_forward_shapes_and_finite_loss(kind: str) -> None:
    pipeline = tiny_dinosaur(kind)
    output = pipeline(images())
    assert output.loss.shape == () and torch.isfinite(output.loss)
    assert set(output.terms) == {"reconstruction"}
    assert output.slots.shape == (2, 3, 8) and output.keep.shape == (2, 3)
    assert output.reconstruction.shape == (2, 2 * 2, 6)  # tokens of the 2×2 grid, encoder width 6
    assert output.masks.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_five_adam_steps_lower_the_loss(kind: str) -> None:
    pipeline = tiny_dinosaur(kind, encoder=TINY_VIT, image_size=32)
    batch = images(4, size=32)
    before = seeded_loss(pipeline, batch, seed=2)
    adam_steps(pipeline, batch, seeds=range(100, 105), lr=3e-3)
    assert seeded_loss(pipeline, batch, seed=2) < before


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(kind: str) -> None:
    pipeline = tiny_dinosaur(kind, encoder=TINY_VIT, image_size=32)
    pipeline.train()
    assert not pipeline.frontend.encoder.backbone.training
    pipeline(images(size=32), generator=torch.Generator().manual_seed(0)).loss.backward()
    assert_gradients_reach_exactly_the_trainable_parameters(
        pipeline, frozen_prefix="frontend.encoder.backbone."
    )


def test_target_is_detached_for_a_trainable_encoder() -> None:
    """The CNN is trained through the slots only, never by pulling the target towards the reconstruction."""
    pipeline = tiny_dinosaur("slot_attention")
    output = pipeline(images())
    grad_via_loss = torch.autograd.grad(output.loss, output.reconstruction, retain_graph=True)[0]
    assert grad_via_loss.abs().sum() > 0
    # Gradients still reach the encoder (through projection → aggregator).
    output.loss.backward()
    assert pipeline.frontend.encoder.convolutions[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_pruned_slot_gets_no_pixels_and_does_not_change_the_reconstruction(kind: str) -> None:
    plain, shifted = outputs_with_first_slot_pruned(tiny_dinosaur(kind).eval(), images())
    assert (plain.masks[:, 0] == 0).all() and (shifted.masks[:, 0] == 0).all()
    torch.testing.assert_close(shifted.reconstruction, plain.reconstruction)


def test_reference_behaviour_decodes_pruned_slots_and_keeps_their_masks() -> None:
    """honour_keep_downstream=False reproduces the reference: the decoder alpha of a pruned slot is a
    mask like any other, so it can win pixels (the reference's segmentation is argmax of that alpha)."""
    plain, shifted = outputs_with_first_slot_pruned(
        tiny_dinosaur("metaslot", honour_keep_downstream=False).eval(), images()
    )
    assert not torch.allclose(shifted.reconstruction, plain.reconstruction)
    assert not plain.keep[:, 0].any() and (plain.masks[:, 0] > 0).all()
    torch.testing.assert_close(plain.masks.sum(dim=1), torch.ones_like(plain.masks[:, 0]))
    assert not plain.honour_keep_downstream


def test_default_spec_is_the_reference_dinosaur() -> None:
    spec = DinosaurSpec()
    assert spec.encoder == DinoViTSpec() and spec.encoder.model_name == "vit_small_patch14_dinov2.lvd142m"
    assert spec.decoder.hidden_channels == (2048, 2048, 2048)
    assert spec.aggregator.feature_dim == 256 and spec.image_size == 256
    assert isinstance(spec.aggregator, MetaSlotSpec | SlotAttentionSpec)


def test_wrong_image_size_names_the_fix() -> None:
    with pytest.raises(ValueError, match="DINOSAUR was built for 8×8 .* image_size=16 in DinosaurSpec"):
        tiny_dinosaur("slot_attention")(images(size=16))
