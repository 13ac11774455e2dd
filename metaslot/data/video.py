"""MOVi-D videos from the published ``movi_d/{train,val}.lmdb`` (PyAV is an optional extra: ``metaslot[video]``).

Records hold ``video``: an AVI (lossless RGB) and ``segment``: an AVI of gray index maps, each as
``io.BytesIO`` (or bytes), reference.md §3.2. Every frame gets the same crop/flip, and labels are
compacted over the whole clip so an object keeps its label across frames.

Image pipelines on video: every model of the project is an image model, so a clip is a stack of
independent images. `frames_as_images` folds the time axis into the batch (``b t ... -> (b t) ...``)
for images, segments and object counts; it is the only place where this happens (the loaders call it
through `collate_frames`). A batch of B clips therefore trains on B·t images, and every evaluation
metric is a mean over frames. The object count of a frame is the number of objects visible in it.
Training clips can be shortened to ``train_frames`` evenly strided frames (reference STEVE trains on
6-frame strided clips and validates on all 24), which keeps a batch of clips affordable.
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
from metaslot.data.locate import locate_split_file, missing_split
from metaslot.data.records import Batch
from metaslot.data.sampling import ItemKey, item_epoch, item_index
from metaslot.data.transforms import compact_labels, normalize, sample_generator, transform_pair
from metaslot.errors import ConfigError, CorruptDataError, MissingDependencyError
from metaslot.validators import positive, positive_or_none


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
    """Stack clips (a batch of whole clips, for models that see time)."""
    return VideoBatch(
        video=torch.stack([s.video for s in samples]),
        segment=torch.stack([s.segment.long() for s in samples]),
        num_objects=torch.tensor([s.num_objects for s in samples], dtype=torch.long),
    )


def objects_per_frame(segment: Int[Tensor, "n h w"]) -> Int[Tensor, " n"]:
    """How many distinct object labels (not 0) each frame shows."""
    labels = segment.flatten(1).long()
    width = int(labels.max()) + 1 if labels.numel() else 1
    present = torch.zeros(labels.shape[0], width, dtype=torch.bool, device=labels.device)
    present.scatter_(1, labels, True)
    return present[:, 1:].sum(1)


def frames_as_images(batch: VideoBatch) -> Batch:
    """Fold time into the batch, ``b t ... -> (b t) ...``: each frame becomes one image of a `Batch`.

    Labels keep their clip-wide numbering (metrics do not depend on label values); ``num_objects``
    becomes the count of objects visible in each frame.
    """
    segment = batch.segment.flatten(0, 1)
    return Batch(image=batch.video.flatten(0, 1), segment=segment, num_objects=objects_per_frame(segment))


def collate_frames(samples: list[VideoSample]) -> Batch:
    """DataLoader ``collate_fn`` for image pipelines on clips: stack, then fold frames into the batch."""
    return frames_as_images(collate_videos(samples))


def strided_frames(length: int, count: int | None, offset: int = 0) -> list[int]:
    """``count`` frame indices spaced ``length // count`` apart from ``offset`` (all frames when None)."""
    if count is None or count >= length:
        return list(range(length))
    stride = length // count
    return [offset + stride * position for position in range(count)]


def _import_av() -> Any:
    try:
        import av
    except ImportError as error:
        raise MissingDependencyError(
            "reading MOVi-D videos needs PyAV: pip install 'metaslot[video]' (or pip install av)"
        ) from error
    return av


def _container_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, io.BytesIO):
        return value.getvalue()
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    raise CorruptDataError(f"MOVi {what} field is {type(value).__name__}, expected io.BytesIO or bytes")


def decode_video_frames(data: bytes, pixel_format: str) -> numpy.ndarray:
    """All frames of a video container as a (t, h, w[, 3]) uint8 array (``rgb24`` or ``gray``)."""
    av = _import_av()
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = [frame.to_ndarray(format=pixel_format) for frame in container.decode(video=0)]
    if not frames:
        raise CorruptDataError("video container holds no frames")
    return numpy.stack(frames)


def decode_rgb_video(data: bytes) -> UInt8[numpy.ndarray, "t h w 3"]:
    return decode_video_frames(data, "rgb24")


def decode_label_video(data: bytes) -> UInt8[numpy.ndarray, "t h w"]:
    return decode_video_frames(data, "gray")


class MoviDDataset(Dataset[VideoSample]):
    """``Dataset[VideoSample]`` over a MOVi LMDB; frames share one crop window and one flip."""

    def __init__(
        self,
        path: Path | str,
        *,
        resolution: int = 256,
        train: bool = False,
        seed: int = 0,
        train_frames: int | None = None,
    ) -> None:
        self.records = RecordFile(path, "movi_d")
        self.resolution = resolution
        self.train = train
        self.seed = seed
        self.train_frames = train_frames

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | ItemKey) -> VideoSample:
        index = item_index(key)
        record = self.records.record(index)
        try:
            video = decode_rgb_video(_container_bytes(record["video"], "video"))
            segment = decode_label_video(_container_bytes(record["segment"], "segment"))
        except ImportError:
            raise
        except Exception as error:  # noqa: BLE001 - PyAV raises many types for damaged containers
            key = self.records.keys[index].decode("ascii", "replace")
            raise CorruptDataError(
                f"{self.records.path} record {index} (key {key!r}): cannot decode the clip "
                f"({type(error).__name__}: {error}); the file is truncated or damaged"
            ) from error
        if video.shape[:3] != segment.shape:
            raise CorruptDataError(
                f"{self.records.path} record {index}: video {video.shape} and segment {segment.shape} differ"
            )
        generator = sample_generator(self.seed, item_epoch(key), index) if self.train else None
        if generator is not None and self.train_frames is not None and self.train_frames < len(video):
            # A random start, then evenly strided frames (reference STEVE: 6-frame strided clips).
            stride = len(video) // self.train_frames
            start = int(generator.integers(0, len(video) - stride * (self.train_frames - 1)))
            chosen = strided_frames(len(video), self.train_frames, start)
            video, segment = video[chosen], segment[chosen]
        frames, labels = transform_pair(
            torch.from_numpy(numpy.ascontiguousarray(video)).permute(0, 3, 1, 2),
            torch.from_numpy(numpy.ascontiguousarray(segment)),
            size=self.resolution,
            generator=generator,
        )
        labels, num_objects = compact_labels(labels)
        return VideoSample(video=normalize(frames), segment=labels, num_objects=num_objects)


MOVI_FRAMES = 24
"""Frames of every MOVi-D clip."""


@attrs.frozen
class MoviDSpec:
    """MOVi-D clips (24 frames of 256x256); ``<root>/movi_d/{train,val}.lmdb`` (or ``<root>/{train,val}.lmdb``).

    Image pipelines see each frame as an image (`frames_as_images`): ``--loop.batch-size`` counts
    clips, so one step trains on batch × frames images.
    """

    root: Path = attrs.field(converter=Path)
    resolution: int = attrs.field(default=256, validator=positive)
    seed: int = 0
    train_frames: int | None = attrs.field(default=6, validator=positive_or_none)
    """Frames per training clip, evenly strided (reference STEVE: 6); None: all 24. Validation uses all."""

    def images_per_training_sample(self) -> int:
        """Images one training clip puts through the pipeline (`metaslot.train.memory_check`)."""
        return self.train_frames or MOVI_FRAMES

    def missing_split(self, split: str) -> str | None:
        """None when ``split``'s file is there, else where to get it (`metaslot.train.requirements`)."""
        return missing_split(self.root, "movi_d", split)

    def build(self, split: str = "train", train: bool = False) -> MoviDDataset:
        if split not in ("train", "val"):
            raise ConfigError(f"unknown split {split!r}: use 'train' or 'val'")
        return MoviDDataset(
            locate_split_file(self.root, "movi_d", split),
            resolution=self.resolution,
            train=train,
            seed=self.seed,
            train_frames=self.train_frames,
        )
