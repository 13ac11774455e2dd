"""Clips as images: the fold ``b t ... -> (b t) ...``, per-frame object counts, strided training clips."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.data.loader import collate_images
from metaslot.data.records import Batch, Sample
from metaslot.data.video import (
    MoviDSpec,
    VideoSample,
    collate_videos,
    frames_as_images,
    objects_per_frame,
    strided_frames,
)


def _clip(generator: torch.Generator, frames: int, size: int, labels: int) -> VideoSample:
    segment = torch.randint(0, labels + 1, (frames, size, size), generator=generator)
    return VideoSample(
        video=torch.randn(frames, 3, size, size, generator=generator),
        segment=segment,
        num_objects=int((segment.unique() > 0).sum()),
    )


def test_objects_per_frame_by_hand() -> None:
    segment = torch.zeros(3, 2, 2, dtype=torch.long)
    segment[0] = torch.tensor([[0, 4], [4, 2]])
    segment[1] = torch.tensor([[1, 1], [1, 1]])
    assert objects_per_frame(segment).tolist() == [2, 1, 0]


@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(0, 2**16))
def test_fold_keeps_every_frame_in_order_with_its_visible_objects(
    clips: int, frames: int, labels: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    samples = [_clip(generator, frames, 4, labels) for _ in range(clips)]
    batch = collate_images(samples)
    assert isinstance(batch, Batch) and batch.image.shape == (clips * frames, 3, 4, 4)
    for clip, sample in enumerate(samples):
        for frame in range(frames):
            row = clip * frames + frame
            assert torch.equal(batch.image[row], sample.video[frame])
            assert torch.equal(batch.segment[row], sample.segment[frame])
            visible = set(sample.segment[frame].flatten().tolist()) - {0}
            assert int(batch.num_objects[row]) == len(visible)
    assert torch.equal(frames_as_images(collate_videos(samples)).image, batch.image)


def test_images_are_collated_unchanged() -> None:
    samples = [
        Sample(torch.full((3, 2, 2), float(i)), torch.zeros(2, 2, dtype=torch.long), i) for i in range(3)
    ]
    batch = collate_images(samples)
    assert batch.image[:, 0, 0, 0].tolist() == [0.0, 1.0, 2.0] and batch.num_objects.tolist() == [0, 1, 2]


@given(st.integers(1, 30), st.integers(1, 30))
def test_strided_frames_stay_inside_the_clip(length: int, count: int) -> None:
    stride = max(length // count, 1)
    for offset in range(0, max(length - stride * (count - 1), 1)) if count < length else [0]:
        chosen = strided_frames(length, count, offset)
        assert len(chosen) == min(count, length)
        assert all(0 <= index < length for index in chosen) and chosen == sorted(set(chosen))
    assert strided_frames(length, None) == list(range(length))


@pytest.mark.parametrize("field", ["resolution", "train_frames"])
def test_spec_refuses_non_positive_values(field: str, tmp_path) -> None:
    with pytest.raises(ValueError, match=f"{field} must be positive, got 0"):
        MoviDSpec(root=tmp_path, **{field: 0})
    assert MoviDSpec(root=str(tmp_path), train_frames=None).root == tmp_path
