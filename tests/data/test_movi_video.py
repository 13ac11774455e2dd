"""MOVi-D records (AVI videos in io.BytesIO, pickled like the published files) decode losslessly."""

from __future__ import annotations

import io

import numpy
import pytest
import torch

from metaslot.data.transforms import compact_labels, normalize
from metaslot.data.video import MoviDSpec, collate_videos, decode_label_video, decode_rgb_video

av = pytest.importorskip("av")
FRAMES, SIZE = 3, 16


def _encode(
    frames: numpy.ndarray, codec: str, pixel_format: str, source_format: str, options: dict
) -> io.BytesIO:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="avi") as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, pixel_format
        stream.options = options
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=source_format)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    buffer.seek(0)
    return io.BytesIO(buffer.getvalue())


def _clip(seed: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    generator = numpy.random.default_rng(seed)
    video = generator.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=numpy.uint8)
    labels = numpy.zeros((FRAMES, SIZE, SIZE), numpy.uint8)
    for t in range(FRAMES):
        labels[t, 2 + t : 6 + t, 3:8] = 2
        labels[t, 10:14, 9 + t : 13 + t] = 5
    return video, labels


def test_movi_records_decode_and_load(tmp_path, published_writer) -> None:
    clips = [_clip(seed) for seed in range(2)]
    records = [
        {
            "video": _encode(video, "libx264rgb", "rgb24", "rgb24", {"qp": "0"}),
            "segment": _encode(labels, "ffv1", "gray", "gray", {}),
            "bbox": numpy.zeros((FRAMES, 2, 4), numpy.float32),
        }
        for video, labels in clips
    ]
    video, labels = clips[0]
    numpy.testing.assert_array_equal(decode_rgb_video(records[0]["video"].getvalue()), video)
    numpy.testing.assert_array_equal(decode_label_video(records[0]["segment"].getvalue()), labels)
    (tmp_path / "movi_d").mkdir()
    published_writer(tmp_path / "movi_d" / "val.lmdb", records)
    dataset = MoviDSpec(tmp_path, resolution=SIZE).build("val", train=False)
    sample = dataset[0]
    expected_segment, count = compact_labels(torch.from_numpy(labels))
    assert sample.num_objects == count == 2
    assert torch.equal(sample.segment, expected_segment)
    torch.testing.assert_close(
        sample.video, normalize(torch.from_numpy(video).permute(0, 3, 1, 2).contiguous())
    )
    batch = collate_videos([dataset[0], dataset[1]])
    assert batch.video.shape == (2, FRAMES, 3, SIZE, SIZE) and batch.num_objects.tolist() == [2, 2]


def test_training_clips_share_one_window(tmp_path, published_writer) -> None:
    video = numpy.repeat(_clip(0)[0][:1], FRAMES, axis=0)  # identical frames
    labels = numpy.repeat(_clip(0)[1][:1], FRAMES, axis=0)
    record = {
        "video": _encode(video, "libx264rgb", "rgb24", "rgb24", {"qp": "0"}),
        "segment": _encode(labels, "ffv1", "gray", "gray", {}),
    }
    (tmp_path / "movi_d").mkdir()
    published_writer(tmp_path / "movi_d" / "train.lmdb", [record])
    sample = MoviDSpec(tmp_path, resolution=8).build("train", train=True)[0]
    for t in range(1, FRAMES):
        assert torch.equal(sample.video[t], sample.video[0]) and torch.equal(
            sample.segment[t], sample.segment[0]
        )
