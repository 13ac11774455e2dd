"""Evaluation aggregates per-image metrics over the whole split; pictures and the table are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from metaslot.data.records import Sample
from metaslot.eval.evaluate import PictureSamples, evaluate
from metaslot.eval.pictures import write_pictures
from metaslot.eval.report import format_table, write_json
from metaslot.models.records import AggregatorOutput, PipelineOutput

SLOTS = 4


class LabelImages(torch.utils.data.Dataset):
    """Channel 0 of each image holds its label map, so an oracle can read the segmentation off it.

    Image i has i % 3 objects (image 0 has none: FG-ARI is undefined there).
    """

    def __len__(self) -> int:
        return 7

    def __getitem__(self, index: int) -> Sample:
        segment = torch.zeros(8, 8, dtype=torch.long)
        count = index % 3
        for label in range(1, count + 1):
            segment[2 * label : 2 * label + 2, 1:6] = label
        image = torch.stack([segment.float(), torch.rand(8, 8), torch.rand(8, 8)])
        return Sample(image=image, segment=segment, num_objects=count)


class OracleAggregator(nn.Module):
    codebook_size = 6

    def update_codebook(self, output: AggregatorOutput) -> None:
        return None


class Oracle(nn.Module):
    """Perfect masks (slot j = label j); slots without a segment are pruned (unless ``keep_empty``:
    then the last slot, which never wins a pixel, is kept too); code = slot index."""

    def __init__(self, shift: bool = False, keep_empty: bool = False) -> None:
        super().__init__()
        self.shift = shift
        self.keep_empty = keep_empty
        self.aggregator = OracleAggregator()

    @property
    def aggregator(self) -> OracleAggregator:
        return self._modules["aggregator"]  # type: ignore[return-value]

    def codebook_statistics(self) -> None:
        return None

    def forward(self, image: torch.Tensor) -> PipelineOutput:
        labels = image[:, 0].round().long()
        if self.shift:  # a wrong segmentation: everything one row down
            labels = torch.roll(labels, 1, dims=1)
        masks = torch.nn.functional.one_hot(labels, SLOTS).permute(0, 3, 1, 2).float()
        keep = masks.flatten(2).amax(2) > 0
        if self.keep_empty:
            keep[:, -1] = True
        codes = torch.where(keep, torch.arange(SLOTS).expand_as(keep), -1)
        batch = image.shape[0]
        aggregated = AggregatorOutput(
            slots=torch.zeros(batch, SLOTS, 2), attention=masks.flatten(2), keep=keep, codes=codes
        )
        return PipelineOutput(loss=image[:, 1].mean(), masks=masks, keep=keep, aggregator=aggregated)

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        return None


@pytest.mark.parametrize("batch_size", [1, 3, 7])
def test_perfect_masks_score_one_and_batching_does_not_matter(batch_size: int) -> None:
    result = evaluate(Oracle(), LabelImages(), batch_size=batch_size, device=torch.device("cpu"))
    metrics = result.metrics
    for name in ("ari", "fg_ari", "mbo", "mbo_fg", "miou", "miou_fg"):
        assert metrics[name] == pytest.approx(1.0), name
    assert result.images == 7
    assert metrics["slot_count_abs_error"] == pytest.approx(1.0)  # kept slots = objects + background
    assert metrics["slot_count_abs_error_with_background"] == pytest.approx(0.0)
    assert metrics["segments"] == pytest.approx(metrics["active_slots"])
    assert metrics["segment_count_abs_error_with_background"] == pytest.approx(0.0)
    assert metrics["true_objects"] == pytest.approx(sum(i % 3 for i in range(7)) / 7)
    assert metrics["codes_in_use"] == 3.0  # codes 0,1,2 (no image has 3 objects)
    histogram = torch.tensor(result.slot_histogram)
    assert histogram.sum() == 7 and histogram[0, 1] == 3 and histogram[1, 2] == 2 and histogram[2, 3] == 2


def test_a_kept_slot_that_wins_no_pixel_counts_as_kept_but_not_as_a_segment() -> None:
    metrics = evaluate(
        Oracle(keep_empty=True), LabelImages(), batch_size=3, device=torch.device("cpu")
    ).metrics
    assert metrics["fg_ari"] == pytest.approx(1.0)
    assert metrics["active_slots"] == pytest.approx(metrics["true_objects"] + 2)
    assert metrics["slot_count_abs_error_with_background"] == pytest.approx(1.0)
    assert metrics["segments"] == pytest.approx(metrics["true_objects"] + 1)
    assert metrics["segment_count_abs_error_with_background"] == pytest.approx(0.0)


def test_wrong_masks_score_lower_and_per_image_means_ignore_nan() -> None:
    result = evaluate(Oracle(shift=True), LabelImages(), batch_size=2, device=torch.device("cpu"))
    assert result.metrics["mbo_fg"] < 1.0 and result.metrics["miou"] < 1.0
    assert all(value == value for value in result.metrics.values())  # no NaN leaks into the means


class PrunedOracle(Oracle):
    """Perfect masks whose object slots are all marked pruned, as a decoder that never saw keep gives."""

    def __init__(self, honour_keep_downstream: bool) -> None:
        super().__init__()
        self.honour_keep_downstream = honour_keep_downstream

    def forward(self, image: torch.Tensor) -> PipelineOutput:
        output = super().forward(image)
        keep = torch.zeros_like(output.keep)
        keep[:, 0] = True  # only the background slot survives
        return PipelineOutput(
            loss=output.loss,
            masks=output.masks,
            keep=keep,
            aggregator=output.aggregator,
            honour_keep_downstream=self.honour_keep_downstream,
        )


def test_pruned_slots_win_pixels_only_when_the_pipeline_reproduces_the_reference() -> None:
    reference = evaluate(
        PrunedOracle(honour_keep_downstream=False), LabelImages(), batch_size=3, device=torch.device("cpu")
    )
    assert reference.metrics["ari"] == pytest.approx(1.0) and reference.metrics["mbo"] == pytest.approx(1.0)
    honoured = evaluate(
        PrunedOracle(honour_keep_downstream=True), LabelImages(), batch_size=3, device=torch.device("cpu")
    )
    # Everything goes to the one kept slot: images with objects are no longer segmented.
    assert honoured.metrics["mbo"] < 1.0
    assert honoured.metrics["active_slots"] == pytest.approx(1.0) == reference.metrics["active_slots"]


def test_batch_averaging_reproduces_the_reference_mean_of_batch_means() -> None:
    # 7 images with 0,1,2,0,1,2,0 objects in batches of 3, 3, 1: batch means 1, 1, 0.
    by_image = evaluate(Oracle(), LabelImages(), batch_size=3, device=torch.device("cpu"))
    by_batch = evaluate(Oracle(), LabelImages(), batch_size=3, device=torch.device("cpu"), average="batch")
    assert by_image.metrics["true_objects"] == pytest.approx(6 / 7)
    assert by_batch.metrics["true_objects"] == pytest.approx(2 / 3)
    assert by_batch.images == by_image.images == 7
    assert by_batch.metrics["ari"] == pytest.approx(1.0)


def test_max_batches_caps_the_images() -> None:
    result = evaluate(Oracle(), LabelImages(), batch_size=2, device=torch.device("cpu"), max_batches=2)
    assert result.images == 4


def test_pictures_table_and_json(tmp_path: Path) -> None:
    samples = PictureSamples(capacity=5)
    result = evaluate(Oracle(), LabelImages(), batch_size=3, device=torch.device("cpu"), pictures=samples)
    assert samples.count == 5
    written = write_pictures(samples, result, tmp_path, max_images=3, gallery_codes=3, gallery_examples=2)
    assert {path.name for path in written} == {"segmentation.png", "slot_count.png", "prototypes.png"}
    assert all(path.stat().st_size > 1000 for path in written)
    table = format_table(result, "oracle")
    assert "FG-ARI" in table and "1.0000" in table
    document = json.loads(write_json(result, tmp_path / "evaluation.json").read_text())
    assert document["images"] == 7 and document["metrics"]["ari"] == pytest.approx(1.0)
