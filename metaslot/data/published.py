"""Readers for the image datasets in the published LMDB layout (and our pickle-free one): VOC, COCO, ClevrTex.

Expected on disk: ``<root>/voc/{train,val}.lmdb``, ``<root>/coco/{train,val}.lmdb``,
``<root>/clevrtex/{train,val}.lmdb`` (reference.md §3.1-3.2); the root may also be the dataset
folder itself (``<root>/{train,val}.lmdb``, see `metaslot.data.locate`). Every record has ``image`` (PNG/JPEG
bytes) and ``segment`` (lossless WebP/PNG index map, bytes or uint8 array); COCO adds ``isthing``,
which the things-only option uses to turn stuff segments into background. After the transforms the
labels are compacted with 0 kept as background.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import attrs
import cv2
import numpy
import torch
from jaxtyping import UInt8
from torch.utils.data import Dataset

from metaslot.data.decoding import decode_image, decode_index_map
from metaslot.data.lmdb_io import RecordFile
from metaslot.data.locate import locate_split_file, missing_split
from metaslot.data.records import Sample
from metaslot.data.sampling import ItemKey, item_epoch, item_index
from metaslot.data.transforms import compact_labels, normalize, sample_generator, transform_pair
from metaslot.errors import ConfigError, CorruptDataError
from metaslot.validators import non_negative, positive

SPLITS = ("train", "val")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: the published files are {SPLITS}")


class LmdbImageDataset(Dataset[Sample]):
    """``Dataset[Sample]`` over one LMDB file of image + segment records.

    ``train=True`` draws a random resized crop and flip per (seed, epoch, index); otherwise the
    largest centred square is used. ``things_only`` (COCO) sets every stuff segment to background.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        dataset: str,
        resolution: int = 256,
        train: bool = False,
        seed: int = 0,
        things_only: bool = False,
    ) -> None:
        self.records = RecordFile(path, dataset)
        self.dataset = dataset
        self.resolution = resolution
        self.train = train
        self.seed = seed
        self.things_only = things_only

    def __len__(self) -> int:
        return len(self.records)

    def raw(self, index: int) -> tuple[UInt8[numpy.ndarray, "h w 3"], UInt8[numpy.ndarray, "h w"]]:
        """Decoded full-size image and label map of record ``index`` (stuff removed if things_only)."""
        record = self.records.record(index)
        where = f"{self.records.path} record {index} (key {self.records.keys[index].decode('ascii', 'replace')!r})"
        for field in ("image", "segment"):
            if field not in record:
                raise CorruptDataError(f"{where} has no {field!r} field (fields: {sorted(record)})")
        try:
            image = decode_image(record["image"])
            segment = decode_index_map(record["segment"])
        except (ValueError, TypeError, cv2.error) as error:
            raise CorruptDataError(f"{where}: {error}; the file is truncated or damaged") from error
        if image.shape[:2] != segment.shape:
            raise CorruptDataError(
                f"{where}: image {image.shape[:2]} and segment {segment.shape} sizes differ"
            )
        if self.things_only:
            segment = remove_stuff(segment, record, where)
        return image, segment

    def __getitem__(self, key: int | ItemKey) -> Sample:
        index = item_index(key)
        image, segment = self.raw(index)
        generator = sample_generator(self.seed, item_epoch(key), index) if self.train else None
        image_tensor, segment_tensor = transform_pair(
            torch.from_numpy(image).permute(2, 0, 1),
            torch.from_numpy(segment),
            size=self.resolution,
            generator=generator,
        )
        labels, num_objects = compact_labels(segment_tensor)
        return Sample(image=normalize(image_tensor), segment=labels, num_objects=num_objects)


def remove_stuff(
    segment: UInt8[numpy.ndarray, "h w"], record: dict[str, Any], where: str
) -> UInt8[numpy.ndarray, "h w"]:
    """COCO things-only: segment id i (1-based) is stuff when ``isthing[i - 1]`` is False; set it to 0."""
    if "isthing" not in record:
        raise ConfigError(
            f"{where} has no 'isthing' field, so things_only cannot be applied; set things_only=False"
        )
    isthing = numpy.asarray(record["isthing"], dtype=bool).reshape(-1)
    if int(segment.max()) > isthing.size:
        raise CorruptDataError(
            f"{where}: segment id {int(segment.max())} exceeds the {isthing.size} isthing flags"
        )
    keep = numpy.concatenate([numpy.zeros(1, bool), isthing])  # label 0 stays 0
    return numpy.where(keep[segment], segment, 0).astype(numpy.uint8)


@attrs.frozen
class PublishedImageSpec:
    """Where one published image dataset lies (``<root>/<folder>/{train,val}.lmdb``) and how to read it.

    The concrete specs (:class:`VOCSpec`, :class:`COCOSpec`, :class:`ClevrTexSpec`) name the folder.
    """

    folder: ClassVar[str]
    root: Path = attrs.field(converter=Path)
    resolution: int = attrs.field(default=256, validator=positive)
    seed: int = attrs.field(default=0, validator=non_negative)

    def stuff_is_background(self) -> bool:
        """Whether stuff segments become background (only COCO records carry the ``isthing`` flags)."""
        return False

    def missing_split(self, split: str) -> str | None:
        """None when ``split``'s file is there, else where to get it (`metaslot.train.requirements`)."""
        return missing_split(self.root, self.folder, split)

    def build(self, split: str = "train", train: bool = False) -> LmdbImageDataset:
        _check_split(split)
        return LmdbImageDataset(
            locate_split_file(self.root, self.folder, split),
            dataset=self.folder,
            resolution=self.resolution,
            train=train,
            seed=self.seed,
            things_only=self.stuff_is_background(),
        )


@attrs.frozen
class VOCSpec(PublishedImageSpec):
    """Pascal VOC instances: train = VOC2012 SegmentationObject, val = VOC2007 (the MetaSlot protocol)."""

    folder: ClassVar[str] = "voc"


@attrs.frozen
class COCOSpec(PublishedImageSpec):
    """COCO 2017 panoptic; ``things_only`` (default) makes stuff segments background (instance objects)."""

    folder: ClassVar[str] = "coco"
    things_only: bool = True

    def stuff_is_background(self) -> bool:
        return self.things_only


@attrs.frozen
class ClevrTexSpec(PublishedImageSpec):
    """ClevrTex: train = clevrtex_full, val = clevrtex_outd (the out-of-distribution test set)."""

    folder: ClassVar[str] = "clevrtex"
