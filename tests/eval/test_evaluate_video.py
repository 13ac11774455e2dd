"""Clips are evaluated frame by frame: the same numbers as evaluating their frames as images."""

from __future__ import annotations

import pytest
import torch

from metaslot.data.records import Sample
from metaslot.data.video import VideoSample
from metaslot.eval.evaluate import PictureSamples, evaluate
from tests.eval.test_evaluate import Oracle

CLIPS, FRAMES = 3, 4


def _frame(index: int) -> Sample:
    """Frame ``index``: channel 0 holds the label map (objects enter one by one), the rest is noise."""
    generator = torch.Generator().manual_seed(index)
    segment = torch.zeros(8, 8, dtype=torch.long)
    count = index % FRAMES  # the first frame of each clip is empty (FG-ARI undefined there)
    for label in range(1, count + 1):
        segment[2 * label - 1 : 2 * label + 1, label : label + 4] = label
    image = torch.stack(
        [segment.float(), torch.rand(8, 8, generator=generator), torch.rand(8, 8, generator=generator)]
    )
    return Sample(image=image, segment=segment, num_objects=count)


class Frames(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return CLIPS * FRAMES

    def __getitem__(self, index: int) -> Sample:
        return _frame(index)


class Clips(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return CLIPS

    def __getitem__(self, index: int) -> VideoSample:
        frames = [_frame(index * FRAMES + frame) for frame in range(FRAMES)]
        return VideoSample(
            video=torch.stack([frame.image for frame in frames]),
            segment=torch.stack([frame.segment for frame in frames]),
            num_objects=FRAMES - 1,
        )


@pytest.mark.parametrize("clips_per_batch", [1, 2])
def test_clip_metrics_are_means_over_frames(clips_per_batch: int) -> None:
    cpu = torch.device("cpu")
    pictures = PictureSamples(capacity=5)
    on_clips = evaluate(
        Oracle(shift=True), Clips(), batch_size=clips_per_batch, device=cpu, pictures=pictures
    )
    on_frames = evaluate(Oracle(shift=True), Frames(), batch_size=FRAMES, device=cpu)
    assert on_clips.images == CLIPS * FRAMES
    assert on_clips.metrics.keys() == on_frames.metrics.keys()
    for name, value in on_frames.metrics.items():
        assert on_clips.metrics[name] == pytest.approx(value, nan_ok=True), name
    # objects visible per frame, not the clip's total
    assert on_clips.metrics["true_objects"] == pytest.approx(sum(range(FRAMES)) / FRAMES)
    assert on_clips.slot_histogram == on_frames.slot_histogram
    assert pictures.count == 5 and torch.cat(pictures.images).shape == (5, 3, 8, 8)
