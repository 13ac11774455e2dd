"""Shared pieces of the pipeline tests: tiny specs, a slot-pruning wrapper, training and gradient checks.

Imported as ``tests.support.pipeline_checks``: ``tests`` is a package, so pytest (prepend import mode)
puts the repository root, the folder above the outermost ``__init__.py``, on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.encoders import CNNEncoderSpec
from metaslot.models.pipelines import load_vqvae_into
from metaslot.models.records import AggregatorOutput, PipelineOutput

AGGREGATORS = ["slot_attention", "metaslot"]

# SLATE / SlotDiffusion: a 32×32 image → 8×8 tokens 16 wide; 3 slots of width 16.
STAGE_TWO_ENCODER = CNNEncoderSpec(channels=(16, 16), kernel_size=3, strides=(2, 2))


def tiny_aggregator(
    kind: str, feature_dim: int, honour_keep_downstream: bool = True
) -> SlotAttentionSpec | MetaSlotSpec:
    """3 slots of width 8, 2 iterations; MetaSlot with 6 prototypes (Autoencoder and DINOSAUR tests)."""
    if kind == "slot_attention":
        return SlotAttentionSpec(num_slots=3, slot_dim=8, feature_dim=feature_dim, num_iterations=2)
    return MetaSlotSpec(
        num_slots=3,
        slot_dim=8,
        feature_dim=feature_dim,
        num_iterations=2,
        codebook_size=6,
        buffer_capacity=12,
        honour_keep_downstream=honour_keep_downstream,
    )


def stage_two_metaslot(codebook_size: int = 8, honour_keep_downstream: bool = True) -> MetaSlotSpec:
    """MetaSlot for the SLATE / SlotDiffusion tests; ``codebook_size=1`` makes evaluation keep slot 0 only."""
    return MetaSlotSpec(
        num_slots=3,
        slot_dim=16,
        feature_dim=16,
        codebook_size=codebook_size,
        buffer_capacity=16,
        honour_keep_downstream=honour_keep_downstream,
    )


def build_with_trained_vqvae(spec) -> nn.Module:
    """A stage-2 pipeline with a stage-1 VQ-VAE whose codes vary (a fresh codebook maps everything alike)."""
    torch.manual_seed(0)
    stage_one = spec.vqvae.build()
    with torch.no_grad():
        stage_one.codebook.embedding.weight.normal_()
    pipeline = spec.build()
    load_vqvae_into(pipeline, stage_one.state_dict(), data="shapes")
    return pipeline


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


def outputs_with_first_slot_pruned(
    pipeline: nn.Module, image: torch.Tensor
) -> tuple[PipelineOutput, PipelineOutput]:
    """Outputs (no grad) with slot 0 pruned as it is and pruned after a large shift of its vector.

    If the decoder honours keep, the two reconstructions agree; under the reference behaviour they do not.
    """
    inner = pipeline.frontend.aggregator
    with torch.no_grad():
        pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=0.0)
        plain = pipeline(image)
        pipeline.frontend.aggregator = PruneFirstSlot(inner, offset=5.0)
        shifted = pipeline(image)
    return plain, shifted


def assert_only_first_slot_kept(output: PipelineOutput, batch: int) -> None:
    """A one-prototype MetaSlot keeps slot 0 of 3 in evaluation; the pruned slots get no pixels."""
    assert output.keep.tolist() == [[True, False, False]] * batch
    assert torch.equal(output.masks[:, 1:], torch.zeros_like(output.masks[:, 1:]))


def seeded_loss(pipeline: nn.Module, image: torch.Tensor, seed: int) -> float:
    """The loss (no grad) with the slot initialiser (and any noise) drawn from ``seed``."""
    with torch.no_grad():
        return pipeline(image, generator=torch.Generator().manual_seed(seed)).loss.item()


def adam_steps(
    pipeline: nn.Module,
    image: torch.Tensor,
    seeds: Iterable[int],
    lr: float,
    after_first_backward: Callable[[nn.Module], None] | None = None,
) -> list[float]:
    """One Adam step on ``image`` per seed (each step's generator), with the codebook upkeep after it.

    Only trainable parameters are optimised. ``after_first_backward(pipeline)`` runs once, between the
    first backward and the first optimiser step (to inspect the gradients). Returns each step's loss.
    """
    optimizer = torch.optim.Adam([p for p in pipeline.parameters() if p.requires_grad], lr=lr)
    losses = []
    for step, seed in enumerate(seeds):
        optimizer.zero_grad()
        output = pipeline(image, generator=torch.Generator().manual_seed(seed))
        output.loss.backward()
        if step == 0 and after_first_backward is not None:
            after_first_backward(pipeline)
        optimizer.step()
        pipeline.after_optimizer_step(output)
        losses.append(float(output.loss.detach()))
    return losses


def assert_gradients_reach_exactly_the_trainable_parameters(
    pipeline: nn.Module, frozen_prefix: str | None
) -> None:
    """After a backward: every trainable parameter has a finite, non-zero gradient and every frozen one
    none; the frozen parameters are exactly those under ``frozen_prefix`` (and there are some), or there
    are none when ``frozen_prefix`` is None."""
    frozen = [name for name, parameter in pipeline.named_parameters() if not parameter.requires_grad]
    if frozen_prefix is None:
        assert frozen == []
    else:
        assert frozen and all(name.startswith(frozen_prefix) for name in frozen), frozen
    for name, parameter in pipeline.named_parameters():
        if not parameter.requires_grad:
            assert parameter.grad is None, name
            continue
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
