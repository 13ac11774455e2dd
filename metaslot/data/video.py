"""MOVi-D videos from the published ``movi_d/{train,val}.lmdb`` (PyAV is an optional extra: ``metaslot[video]``).

Records hold ``video``: an AVI (lossless RGB) and ``segment``: an AVI of gray index maps, each as
``io.BytesIO`` (or bytes), reference.md §3.2. Every frame gets the same crop/flip, and labels are
compacted over the whole clip so an object keeps its label across frames.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import numpy
import torch
from jaxtyping import Float, Int, UInt8
from torch import Tensor
from torch.utils.data import Dataset

from metaslot.data.lmdb_io import RecordFile
from metaslot.data.sampling import ItemKey, item_epoch, item_index
from metaslot.data.transforms import compact_labels, normalize, sample_generator, transform_pair


@dataclass(frozen=True)
class VideoSample:
    """One clip: ``video`` normalised frames, ``segment`` per-frame labels (0 background, 1..K objects)."""

    video: Float[Tensor, "t 3 h w"]
    segment: Int[Tensor, "t h w"]
    num_objects: int


@dataclass(frozen=True)
class VideoBatch:
    video: Float[Tensor, "b t 3 h w"]
    segment: Int[Tensor, "b t h w"]
    num_objects: Int[Tensor, " b"]


def collate_videos(samples: list[VideoSample]) -> VideoBatch:
    """Stack clips (DataLoader ``collate_fn`` for MOVi-D)."""
    return VideoBatch(
        video=torch.stack([s.video for s in samples]),
        segment=torch.stack([s.segment for s in samples]),
        num_objects=torch.tensor([s.num_objects for s in samples], dtype=torch.long),
    )


def _import_av() -> Any:
    try:
        import av
    except ImportError as error:
        raise ImportError(
            "reading MOVi-D videos needs PyAV: pip install 'metaslot[video]' (or pip install av)"
        ) from error
    return av


def _container_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, io.BytesIO):
        return value.getvalue()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise TypeError(f"MOVi {what} field is {type(value).__name__}, expected io.BytesIO or bytes")


def decode_video_frames(data: bytes, pixel_format: str) -> numpy.ndarray:
    """All frames of a video container as a (t, h, w[, 3]) uint8 array (``rgb24`` or ``gray``)."""
    av = _import_av()
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = [frame.to_ndarray(format=pixel_format) for frame in container.decode(video=0)]
    if not frames:
        raise ValueError("video container holds no frames")
    return numpy.stack(frames)


def decode_rgb_video(data: bytes) -> UInt8[numpy.ndarray, "t h w 3"]:
    return decode_video_frames(data, "rgb24")


def decode_label_video(data: bytes) -> UInt8[numpy.ndarray, "t h w"]:
    return decode_video_frames(data, "gray")


class MoviDDataset(Dataset[VideoSample]):
    """``Dataset[VideoSample]`` over a MOVi LMDB; frames share one crop window and one flip."""

    def __init__(
        self, path: Path | str, *, resolution: int = 256, train: bool = False, seed: int = 0
    ) -> None:
        self.records = RecordFile(path, "movi_d")
        self.resolution = resolution
        self.train = train
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | ItemKey) -> VideoSample:
        index = item_index(key)
        record = self.records.record(index)
        video = decode_rgb_video(_container_bytes(record["video"], "video"))
        segment = decode_label_video(_container_bytes(record["segment"], "segment"))
        if video.shape[:3] != segment.shape:
            raise ValueError(
                f"{self.records.path} record {index}: video {video.shape} and segment {segment.shape} differ"
            )
        generator = sample_generator(self.seed, item_epoch(key), index) if self.train else None
        frames, labels = transform_pair(
            torch.from_numpy(video).permute(0, 3, 1, 2),
            torch.from_numpy(segment),
            size=self.resolution,
            generator=generator,
        )
        labels, num_objects = compact_labels(labels)
        return VideoSample(video=normalize(frames), segment=labels, num_objects=num_objects)


@attrs.frozen
class MoviDSpec:
    """MOVi-D clips (24 frames of 256x256); ``<root>/movi_d/{train,val}.lmdb``."""

    root: Path = attrs.field(converter=Path)
    resolution: int = attrs.field(default=256)
    seed: int = 0

    @resolution.validator
    def _check_resolution(self, attribute: attrs.Attribute, value: int) -> None:
        if value <= 0:
            raise ValueError(f"resolution must be positive, got {value}")

    def build(self, split: str = "train", train: bool = False) -> MoviDDataset:
        if split not in ("train", "val"):
            raise ValueError(f"unknown split {split!r}: use 'train' or 'val'")
        return MoviDDataset(
            self.root / "movi_d" / f"{split}.lmdb", resolution=self.resolution, train=train, seed=self.seed
        )
