"""A tiny MOVi-D in the published layout: ``<root>/movi_d/{train,val}.lmdb`` with pickled dict records
whose ``video`` (lossless RGB AVI) and ``segment`` (FFV1 gray AVI) are ``io.BytesIO`` (reference.md §3.2)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import lmdb
import numpy


def encode_avi(frames: numpy.ndarray, *, labels: bool) -> io.BytesIO:
    """Frames (t, h, w, 3) uint8 as libx264rgb qp=0, or label maps (t, h, w) as FFV1 gray."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="avi") as container:
        stream = container.add_stream("ffv1" if labels else "libx264rgb", rate=12)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "gray" if labels else "rgb24"
        stream.options = {} if labels else {"qp": "0"}
        for frame in frames:
            picture = av.VideoFrame.from_ndarray(frame, format="gray" if labels else "rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return io.BytesIO(buffer.getvalue())


def movi_clip(
    generator: numpy.random.Generator, frames: int, size: int
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Coloured squares moving over noise; object 3 leaves after the first half, so counts vary per frame."""
    video = generator.integers(0, 60, (frames, size, size, 3), dtype=numpy.uint8)
    labels = numpy.zeros((frames, size, size), numpy.uint8)
    side = size // 4
    for label, colour in ((1, (250, 30, 30)), (2, (30, 250, 30)), (3, (30, 30, 250))):
        for t in range(frames):
            if label == 3 and t >= frames // 2:
                continue
            top = (label * side + t) % (size - side)
            left = (label * 3 + 2 * t) % (size - side)
            video[t, top : top + side, left : left + side] = colour
            labels[t, top : top + side, left : left + side] = label
    return video, labels


def write_movi_d(root: Path, *, clips: int = 2, frames: int = 4, size: int = 16, seed: int = 0) -> dict:
    """Write train and val splits; returns the label maps per split for checking metrics."""
    generator = numpy.random.default_rng(seed)
    (root / "movi_d").mkdir(parents=True, exist_ok=True)
    written = {}
    for split in ("train", "val"):
        records, label_maps = [], []
        for _ in range(clips):
            video, labels = movi_clip(generator, frames, size)
            records.append(
                {"video": encode_avi(video, labels=False), "segment": encode_avi(labels, labels=True)}
            )
            label_maps.append(labels)
        environment = lmdb.open(str(root / "movi_d" / f"{split}.lmdb"), subdir=False, map_size=1 << 26)
        keys = [b"%06d" % index for index in range(len(records))]
        with environment.begin(write=True) as transaction:
            for key, record in zip(keys, records, strict=True):
                transaction.put(key, pickle.dumps(record, protocol=4))
            transaction.put(b"__keys__", pickle.dumps(keys, protocol=4))
        environment.close()
        written[split] = numpy.stack(label_maps)
    return written
