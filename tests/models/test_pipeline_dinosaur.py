"""DINOSAUR pipeline: shapes, training lowers the loss, frozen backbone, keep honoured, masks from alpha."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.decoders import MLPDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec, DinoViTSpec, ProjectionSpec
from metaslot.models.pipelines import DinosaurSpec
from metaslot.models.records import AggregatorOutput

IMAGE_SIZE = 8
AGGREGATORS = ["slot_attention", "metaslot"]
TINY_VIT = DinoViTSpec(model_name="vit_tiny_patch16_224", pretrained=False, image_size=32)


def tiny_aggregator(
    kind: str, feature_dim: int, honour_keep: bool = True
) -> SlotAttentionSpec | MetaSlotSpec:
    if kind == "slot_attention":
        return SlotAttentionSpec(num_slots=3, slot_dim=8, feature_dim=feature_dim, num_iterations=2)
    return MetaSlotSpec(
        num_slots=3,
        slot_dim=8,
        feature_dim=feature_dim,
        num_iterations=2,
        codebook_size=6,
        buffer_capacity=12,
        honour_keep_downstream=honour_keep,
    )


class PruneFirstSlot(nn.Module):
    """Wraps an aggregator: slot 0 is pruned (and shifted by ``offset``), slot 1 forced live."""

    def __init__(self, inner: nn.Module, offset: float = 0.0) -> None:
        super().__init__()
        self.inner = inner
        self.offset = offset

    def forward(self, features, initial_slots=None, generator=None) -> AggregatorOutput:
        output = self.inner(features, initial_slots, generator)
        keep = output.keep.clone()
        keep[:, 0], keep[:, 1] = False, True
        slots = output.slots.clone()
        slots[:, 0] = slots[:, 0] + self.offset
        return AggregatorOutput(
            slots=slots,
            attention=output.attention * keep[..., None],
            keep=keep,
            codes=output.codes.masked_fill(~keep, -1),
        )


def tiny_dinosaur(kind: str, encoder=None, honour_keep: bool = True, image_size: int = IMAGE_SIZE):
    torch.manual_seed(0)
    return DinosaurSpec(
        encoder=encoder
        if encoder is not None
        else CNNEncoderSpec(channels=(6, 6), kernel_size=3, strides=(2, 2)),
        projection=ProjectionSpec(),
        aggregator=tiny_aggregator(kind, feature_dim=8, honour_keep=honour_keep),
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
    optimizer = torch.optim.Adam([p for p in pipeline.parameters() if p.requires_grad], lr=3e-3)
    batch = images(4, size=32)

    def loss_now() -> float:
        with torch.no_grad():
            return pipeline(batch, generator=torch.Generator().manual_seed(2)).loss.item()

    before = loss_now()
    for step in range(5):
        output = pipeline(batch, generator=torch.Generator().manual_seed(100 + step))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        pipeline.after_optimizer_step(output)
    assert loss_now() < before


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(kind: str) -> None:
    pipeline = tiny_dinosaur(kind, encoder=TINY_VIT, image_size=32)
    pipeline.train()
    assert not pipeline.frontend.encoder.backbone.training
    pipeline(images(size=32), generator=torch.Generator().manual_seed(0)).loss.backward()
    frozen = [name for name, p in pipeline.named_parameters() if not p.requires_grad]
    assert frozen and all(name.startswith("frontend.encoder.backbone.") for name in frozen)
    for name, parameter in pipeline.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name


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
    pipeline = tiny_dinosaur(kind).eval()
    inner = pipeline.frontend.aggregator
    pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=0.0)
    with torch.no_grad():
        plain = pipeline(images())
        pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=5.0)
        shifted = pipeline(images())
    assert (plain.masks[:, 0] == 0).all() and (shifted.masks[:, 0] == 0).all()
    torch.testing.assert_close(shifted.reconstruction, plain.reconstruction)


def test_reference_behaviour_decodes_pruned_slots() -> None:
    pipeline = tiny_dinosaur("metaslot", honour_keep=False).eval()
    inner = pipeline.frontend.aggregator
    pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=0.0)
    with torch.no_grad():
        plain = pipeline(images())
        pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=5.0)
        shifted = pipeline(images())
    assert not torch.allclose(shifted.reconstruction, plain.reconstruction)
    assert (plain.masks[:, 0] == 0).all()


def test_default_spec_is_the_reference_dinosaur() -> None:
    spec = DinosaurSpec()
    assert spec.encoder == DinoViTSpec() and spec.encoder.model_name == "vit_small_patch14_dinov2.lvd142m"
    assert spec.decoder.hidden_channels == (2048, 2048, 2048)
    assert spec.aggregator.feature_dim == 256 and spec.image_size == 256
    assert isinstance(spec.aggregator, MetaSlotSpec | SlotAttentionSpec)
