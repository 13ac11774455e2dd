"""Autoencoder pipeline: shapes, training lowers the loss, gradients, keep honoured, spec errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.decoders import BroadcastPixelDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec, ProjectionSpec
from metaslot.models.pipelines import AutoencoderSpec
from metaslot.models.records import AggregatorOutput

IMAGE_SIZE = 8
AGGREGATORS = ["slot_attention", "metaslot"]


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


def tiny_autoencoder(kind: str, honour_keep: bool = True, projection: ProjectionSpec | None = None):
    torch.manual_seed(0)
    return AutoencoderSpec(
        encoder=CNNEncoderSpec(channels=(8, 8), kernel_size=3, strides=(2, 1)),
        projection=projection,
        aggregator=tiny_aggregator(kind, feature_dim=8, honour_keep=honour_keep),
        decoder=BroadcastPixelDecoderSpec(hidden_channels=8, broadcast_size=2, num_convs=1),
        image_size=IMAGE_SIZE,
    ).build()


def images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))


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

    def update_codebook(self, output: AggregatorOutput) -> None:
        self.inner.update_codebook(output)


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_forward_shapes_and_finite_loss(kind: str) -> None:
    pipeline = tiny_autoencoder(kind)
    output = pipeline(images())
    assert output.loss.shape == () and torch.isfinite(output.loss)
    assert set(output.terms) == {"reconstruction"}
    assert output.slots.shape == (2, 3, 8) and output.keep.shape == (2, 3)
    assert output.masks.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert output.reconstruction.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert output.aggregator is not None and pipeline.aggregator is pipeline.frontend.aggregator
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_five_adam_steps_lower_the_loss(kind: str) -> None:
    pipeline = tiny_autoencoder(kind, projection=ProjectionSpec())
    optimizer = torch.optim.Adam(pipeline.parameters(), lr=3e-3)
    batch = images(4)

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
def test_gradients_reach_every_trainable_parameter(kind: str) -> None:
    pipeline = tiny_autoencoder(kind, projection=ProjectionSpec())
    pipeline(images(), generator=torch.Generator().manual_seed(0)).loss.backward()
    for name, parameter in pipeline.named_parameters():
        assert parameter.requires_grad, name  # nothing in the autoencoder is frozen
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_pruned_slot_gets_no_pixels_and_does_not_change_the_reconstruction(kind: str) -> None:
    pipeline = tiny_autoencoder(kind).eval()
    inner = pipeline.frontend.aggregator
    pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=0.0)
    with torch.no_grad():
        plain = pipeline(images())
        pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=5.0)
        shifted = pipeline(images())
    assert not plain.keep[:, 0].any()
    assert (plain.masks[:, 0] == 0).all() and (shifted.masks[:, 0] == 0).all()
    torch.testing.assert_close(shifted.reconstruction, plain.reconstruction)
    torch.testing.assert_close(plain.masks.sum(dim=1), torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))


def test_reference_behaviour_decodes_pruned_slots_but_masks_still_drop_them() -> None:
    pipeline = tiny_autoencoder("metaslot", honour_keep=False).eval()
    inner = pipeline.frontend.aggregator
    pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=0.0)
    with torch.no_grad():
        plain = pipeline(images())
        pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=5.0)
        shifted = pipeline(images())
    assert not torch.allclose(shifted.reconstruction, plain.reconstruction)
    assert (plain.masks[:, 0] == 0).all()


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
