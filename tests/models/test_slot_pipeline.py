"""The shared slot-pipeline pieces: keep policy, codebook upkeep guard, output records, size errors."""

from __future__ import annotations

import attrs
import pytest
import torch

from metaslot.models.encoders import CNNEncoderSpec
from metaslot.models.pipelines import SlotPipeline, attention_masks, reconstruction_output, slot_output
from metaslot.models.pipelines.slot_pipeline import require_image_size
from metaslot.models.records import PipelineOutput
from metaslot.validators import at_least_one
from tests.support.pipeline_checks import tiny_aggregator

ENCODER = CNNEncoderSpec(channels=(8,), kernel_size=3, strides=(2,))


def front_of(pipeline: SlotPipeline, size: int = 8):
    image = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    return pipeline.frontend(image, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    ("kind", "honour", "downstream_sees_keep"),
    [("slot_attention", True, True), ("metaslot", True, True), ("metaslot", False, False)],
)
def test_downstream_keep_follows_the_aggregator_spec(
    kind: str, honour: bool, downstream_sees_keep: bool
) -> None:
    torch.manual_seed(0)
    pipeline = SlotPipeline(
        ENCODER, None, tiny_aggregator(kind, feature_dim=8, honour_keep_downstream=honour)
    )
    aggregated = front_of(pipeline).aggregator
    keep = pipeline.downstream_keep(aggregated)
    assert (keep is aggregated.keep) if downstream_sees_keep else (keep is None)
    assert pipeline.aggregator is pipeline.frontend.aggregator


def test_upkeep_needs_the_aggregator_output() -> None:
    pipeline = SlotPipeline(ENCODER, None, tiny_aggregator("metaslot", feature_dim=8))
    with pytest.raises(ValueError, match="output.aggregator is None: pass the PipelineOutput"):
        pipeline.after_optimizer_step(PipelineOutput(loss=torch.tensor(0.0)))
    output = slot_output(front_of(pipeline).aggregator, torch.tensor(1.0), "loss", torch.zeros(2, 3, 8, 8))
    counter = pipeline.aggregator.codebook_state.step_counter.clone()
    pipeline.after_optimizer_step(output)
    assert pipeline.aggregator.codebook_state.step_counter == counter + 1


def test_output_records_carry_the_aggregator_and_a_detached_term() -> None:
    pipeline = SlotPipeline(ENCODER, None, tiny_aggregator("metaslot", feature_dim=8))
    front = front_of(pipeline)
    masks = attention_masks(front, (8, 8), front.aggregator.keep)
    assert masks.shape == (2, 3, 8, 8)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, 8, 8))
    reconstruction = torch.randn(2, 5, 4, requires_grad=True)
    target = torch.randn(2, 5, 4)
    output = reconstruction_output(front.aggregator, reconstruction, target, masks)
    torch.testing.assert_close(output.loss, ((reconstruction - target) ** 2).mean())
    assert output.loss.requires_grad and not output.terms["reconstruction"].requires_grad
    assert output.reconstruction is reconstruction and output.aggregator is front.aggregator
    assert output.slots is front.aggregator.slots and output.keep is front.aggregator.keep


def test_spec_and_input_errors_name_the_fix() -> None:
    @attrs.frozen
    class Sized:
        image_size: int = attrs.field(validator=at_least_one)

    with pytest.raises(ValueError, match="image_size must be at least 1, got 0"):
        Sized(0)
    require_image_size(torch.zeros(1, 3, 8, 8), 8, "the thing", "ThingSpec")
    with pytest.raises(ValueError, match=r"the thing was built for 8×8 .* image_size=6 in ThingSpec"):
        require_image_size(torch.zeros(1, 3, 6, 6), 8, "the thing", "ThingSpec")


def test_the_keep_policy_follows_the_aggregator_spec() -> None:
    from metaslot.models.pipelines import honour_keep_downstream

    spec = tiny_aggregator("metaslot", feature_dim=8, honour_keep_downstream=False)
    pipeline = SlotPipeline(ENCODER, None, spec)
    assert honour_keep_downstream(spec) is pipeline.honour_keep_downstream is False
