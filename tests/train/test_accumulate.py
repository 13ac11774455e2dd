"""Gradient accumulation: the codebook upkeep runs once per optimiser step on the kept slots of every
micro-batch of that step (not only the last one), and counts the whole step's images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metaslot.cli import train as train_cli
from metaslot.models.records import AggregatorOutput, join_aggregator_outputs
from metaslot.train import preparation
from metaslot.train.checkpoint import read_tensors
from tests.support.cli_args import loop_args, model_args
from tests.support.helpers import tiny_config, train


def spy_on_upkeep(monkeypatch: pytest.MonkeyPatch) -> tuple[list[AggregatorOutput], list[AggregatorOutput]]:
    """(aggregator outputs of every training forward, what each upkeep received) of the next run."""
    forwards: list[AggregatorOutput] = []
    upkeeps: list[AggregatorOutput] = []
    build = preparation.build_pipeline

    def build_and_watch(config):
        pipeline = build(config)
        forward, after_step = pipeline.forward, pipeline.after_optimizer_step

        def watched_forward(image):
            output = forward(image)
            if pipeline.training:
                forwards.append(output.aggregator)
            return output

        def watched_after_step(output):
            upkeeps.append(output.aggregator)
            after_step(output)

        pipeline.forward, pipeline.after_optimizer_step = watched_forward, watched_after_step
        return pipeline

    monkeypatch.setattr(preparation, "build_pipeline", build_and_watch)
    return forwards, upkeeps


def test_upkeep_receives_the_kept_slots_of_all_micro_batches_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwards, upkeeps = spy_on_upkeep(monkeypatch)
    train(tiny_config(tmp_path, steps=2, batch_size=6, accumulate=3, val_every=10, checkpoint_every=10))
    assert len(forwards) == 6 and len(upkeeps) == 2  # three micro-batches of 2 per step, one upkeep per step
    for step, received in enumerate(upkeeps):
        micro_batches = forwards[3 * step : 3 * step + 3]
        assert received.slots.shape[0] == 6
        for name in ("slots", "attention", "keep", "codes"):
            expected = torch.cat([getattr(output, name).detach() for output in micro_batches])
            assert torch.equal(getattr(received, name), expected), name
        assert not received.slots.requires_grad


def test_without_accumulation_the_upkeep_gets_the_forward_output_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forwards, upkeeps = spy_on_upkeep(monkeypatch)
    train(tiny_config(tmp_path, steps=2, batch_size=4, val_every=10, checkpoint_every=10))
    assert len(upkeeps) == 2 and all(seen is made for seen, made in zip(upkeeps, forwards, strict=True))


def test_join_keeps_the_batch_order_and_detaches() -> None:
    def output(offset: int, batch: int) -> AggregatorOutput:
        slots = torch.arange(batch * 2 * 3, dtype=torch.float32).reshape(batch, 2, 3) + offset
        return AggregatorOutput(
            slots=slots.requires_grad_(),
            attention=torch.full((batch, 2, 5), 0.5),
            keep=torch.tensor([[True, offset > 0]]).expand(batch, 2),
            codes=torch.full((batch, 2), offset, dtype=torch.long),
        )

    joined = join_aggregator_outputs([output(0, 1), output(100, 2)])
    assert joined.slots.shape == (3, 2, 3) and not joined.slots.requires_grad
    assert joined.codes[:, 0].tolist() == [0, 100, 100]
    assert joined.keep[:, 1].tolist() == [False, True, True]
    with pytest.raises(ValueError, match="at least one"):
        join_aggregator_outputs([])


def test_metaslot_upkeep_counts_every_image_of_the_step_once(tmp_path: Path) -> None:
    arguments = [*model_args("autoencoder"), *loop_args(tmp_path, steps=2)]
    train_cli.main([*arguments, "--loop.batch-size", "4", "--loop.accumulate", "2", "--name", "accumulated"])
    state = read_tensors(tmp_path / "accumulated" / "checkpoints" / "step-0000002.safetensors")
    assert (
        int(state["frontend.aggregator.codebook_state.images_seen"]) == 2 * 4
    )  # both micro-batches of both steps
    assert (
        int(state["frontend.aggregator.codebook_state.step_counter"]) == 2
    )  # one upkeep (one timeout tick) per step
    assert (
        int(state["frontend.aggregator.codebook_state.buffer_fill"]) >= 8
    )  # every image keeps at least one slot
