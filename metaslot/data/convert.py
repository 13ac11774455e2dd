"""Converters from the raw dataset layouts (reference.md §3.3) to our pickle-free LMDB format.

Output: ``<out>/{train,val}.lmdb`` with msgpack records ``{"image": original JPEG/PNG bytes,
"segment": lossless PNG index map, ...typed arrays}`` that ``metaslot.data.published`` reads.
Deliberate fixes over the reference converters:

- VOC void colour (224, 224, 192) is removed only where all three channels match (the reference
  zeroes each matching channel separately, which can merge instances).
- Black is always label 0 when ranking instance colours, so a picture without background never turns
  its first object into background.
- COCO ``isthing`` is stored as a plain bool array (the reference asserts ``np.bool``).
- VOC train (2012) / val (2007) image overlap is measured by hashing decoded pixels and reported; it is
  only removed when asked (``drop_overlap``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
from jaxtyping import UInt8
from PIL import Image
from tqdm import tqdm

from metaslot.data.decoding import decode_image, encode_index_map_png, rank_colours
from metaslot.data.lmdb_io import write_records
from metaslot.errors import DataError, MissingFileError

VOC_VOID_COLOUR = (224, 224, 192)


class ConversionError(DataError):
    """A raw dataset cannot be converted; the message names the raw file or folder and what to fix."""


@contextlib.contextmanager
def _naming(where: str) -> Iterator[None]:
    """Re-raise any failure inside as a `ConversionError` that names ``where`` (a raw file or record).

    Raw files can fail in many ways (PIL, OpenCV, JSON, missing keys); without this a missing COCO
    image id printed as ``error: 999``.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 - re-raised with the file named, the cause chained
        if isinstance(error, ConversionError):
            if where in str(error):
                raise
            detail = str(error)
        elif isinstance(error, KeyError):
            detail = f"missing key {error}"
        else:
            detail = f"{type(error).__name__}: {error}"
        raise ConversionError(f"{where}: {detail}") from error


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion wrote: record counts per output file and, for VOC, the train/val overlap."""

    counts: dict[str, int]
    overlapping_train_images: list[str] = field(default_factory=list)
    dropped: int = 0


def _read_rgb(path: Path) -> UInt8[numpy.ndarray, "h w 3"]:
    with Image.open(path) as image:
        return numpy.asarray(image.convert("RGB"), dtype=numpy.uint8).copy()


def _progress(items: list[Any], description: str, enabled: bool) -> Any:
    return tqdm(items, desc=description, unit="img", disable=not enabled, dynamic_ncols=True)


def _require_dir(path: Path, what: str, fix: str) -> Path:
    if not path.is_dir():
        raise MissingFileError(f"{what} not found: looked for directory {path.resolve()}. {fix}")
    return path


def _digest_of(path: Path) -> str:
    with _naming(str(path)):
        return image_digest(path.read_bytes())


def image_digest(data: bytes) -> str:
    """sha256 of the decoded pixels (re-encoded files of the same picture hash alike)."""
    pixels = decode_image(data)
    return hashlib.sha256(numpy.asarray(pixels.shape).tobytes() + pixels.tobytes()).hexdigest()


# ---------------------------------------------------------------------------------------------
# VOC


def voc_labels(colours: UInt8[numpy.ndarray, "h w 3"]) -> UInt8[numpy.ndarray, "h w"]:
    """SegmentationObject colours to instance labels: void (all channels match) → 0, black → 0, rest ranked."""
    void = numpy.all(colours == numpy.asarray(VOC_VOID_COLOUR, numpy.uint8), axis=-1)
    cleaned = numpy.where(void[..., None], 0, colours).astype(numpy.uint8)
    return rank_colours(cleaned, background_is_black=True)


def _voc_year_dir(raw_dir: Path, year: str) -> Path:
    for candidate in (raw_dir / f"VOC{year}", raw_dir / "VOCdevkit" / f"VOC{year}"):
        if (candidate / "SegmentationObject").is_dir():
            return candidate
    raise MissingFileError(
        f"VOC{year} not found: looked for {raw_dir.resolve()}/VOC{year}/SegmentationObject and "
        f"{raw_dir.resolve()}/VOCdevkit/VOC{year}/SegmentationObject. Extract the VOC{year} trainval tarball there."
    )


def _voc_items(year_dir: Path) -> list[tuple[str, Path, Path]]:
    items = []
    for segment_path in sorted((year_dir / "SegmentationObject").glob("*.png")):
        image_path = year_dir / "JPEGImages" / f"{segment_path.stem}.jpg"
        if not image_path.is_file():
            raise MissingFileError(f"{segment_path} has no image: looked for {image_path}")
        items.append((segment_path.stem, image_path, segment_path))
    if not items:
        raise ConversionError(
            f"no {year_dir.name} samples: {(year_dir / 'SegmentationObject').resolve()} holds no *.png "
            f"files. Extract the complete {year_dir.name} trainval tarball there."
        )
    return items


def convert_voc(
    raw_dir: Path, out_dir: Path, *, drop_overlap: bool = False, progress: bool = True
) -> ConversionReport:
    """VOC2012 SegmentationObject → ``train.lmdb``; VOC2007 SegmentationObject → ``val.lmdb``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    train_items = _voc_items(_voc_year_dir(raw_dir, "2012"))
    val_items = _voc_items(_voc_year_dir(raw_dir, "2007"))
    val_digests = {_digest_of(path) for _, path, _ in _progress(val_items, "hash VOC2007", progress)}
    overlapping = [
        name
        for name, path, _ in _progress(train_items, "hash VOC2012", progress)
        if _digest_of(path) in val_digests
    ]
    if drop_overlap:
        leaked = set(overlapping)
        train_items = [item for item in train_items if item[0] not in leaked]

    def records(items: list[tuple[str, Path, Path]], description: str) -> Iterator[dict[str, Any]]:
        for name, image_path, segment_path in _progress(items, description, progress):
            with _naming(f"{segment_path} (image {image_path})"):
                image_bytes = image_path.read_bytes()
                labels = voc_labels(_read_rgb(segment_path))
                if decode_image(image_bytes).shape[:2] != labels.shape:
                    raise ConversionError(f"{image_path} and {segment_path} have different sizes")
                record = {"image": image_bytes, "segment": encode_index_map_png(labels), "name": name}
            yield record

    counts = {
        "train.lmdb": write_records(out_dir / "train.lmdb", records(train_items, "VOC2012 → train")),
        "val.lmdb": write_records(out_dir / "val.lmdb", records(val_items, "VOC2007 → val")),
    }
    return ConversionReport(counts, overlapping, len(overlapping) if drop_overlap else 0)


# ---------------------------------------------------------------------------------------------
# COCO panoptic


def coco_labels(
    colours: UInt8[numpy.ndarray, "h w 3"], segment_ids: list[int], where: str
) -> UInt8[numpy.ndarray, "h w"]:
    """Panoptic PNG (id = R + 256 G + 256² B) to labels 1..K in ascending id order, 0 = unannotated."""
    wide = colours.astype(numpy.int64)
    ids = wide[..., 0] + 256 * wide[..., 1] + 65536 * wide[..., 2]
    present = set(numpy.unique(ids).tolist()) - {0}
    if present != set(segment_ids):
        raise DataError(
            f"{where}: ids in the PNG {sorted(present)} differ from segments_info ids {sorted(segment_ids)}"
        )
    if len(segment_ids) > 255:
        raise DataError(f"{where}: {len(segment_ids)} segments exceed the 255 labels a uint8 map holds")
    ordered = numpy.asarray([0, *sorted(segment_ids)], dtype=numpy.int64)
    return numpy.searchsorted(ordered, ids).astype(numpy.uint8)


def _coco_records(raw_dir: Path, split: str, progress: bool) -> Iterator[dict[str, Any]]:
    annotations_dir = _require_dir(
        raw_dir / "annotations", "COCO annotations", "Extract panoptic_annotations_trainval2017.zip there."
    )
    json_path = annotations_dir / f"panoptic_{split}2017.json"
    if not json_path.is_file():
        raise MissingFileError(f"COCO panoptic annotations not found: looked for {json_path.resolve()}")
    with _naming(str(json_path)):
        panoptic = json.loads(json_path.read_text())
        isthing = {category["id"]: bool(category["isthing"]) for category in panoptic["categories"]}
        images = {image["id"]: image for image in panoptic["images"]}
        annotations = panoptic["annotations"]
    if not annotations:
        raise ConversionError(
            f"{json_path.resolve()} lists no annotations: nothing to convert. Use the complete "
            "panoptic_annotations_trainval2017.zip."
        )
    png_dir = _require_dir(
        annotations_dir / f"panoptic_{split}2017",
        "COCO panoptic PNGs",
        f"Unzip panoptic_{split}2017.zip there.",
    )
    image_dir = _require_dir(
        raw_dir / f"{split}2017", f"COCO {split}2017 images", f"Extract {split}2017.zip there."
    )
    for position, annotation in enumerate(_progress(annotations, f"COCO {split}", progress)):
        with _naming(f"{json_path} annotation {position} ({annotation.get('file_name', 'no file_name')})"):
            record = _coco_record(annotation, images, isthing, png_dir, image_dir)
        yield record


def _coco_record(
    annotation: dict[str, Any],
    images: dict[int, Any],
    isthing: dict[int, bool],
    png_dir: Path,
    image_dir: Path,
) -> dict[str, Any]:
    if annotation["image_id"] not in images:
        raise ConversionError(
            f"image_id {annotation['image_id']} is not in the file's 'images' list; the annotation file "
            "is incomplete or from another release"
        )
    image_info = images[annotation["image_id"]]
    width, height = float(image_info["width"]), float(image_info["height"])
    segments = sorted(annotation["segments_info"], key=lambda segment: segment["id"])
    unknown = sorted({s["category_id"] for s in segments} - set(isthing))
    if unknown:
        raise ConversionError(f"category ids {unknown} are not in the file's 'categories' list")
    png_path = png_dir / annotation["file_name"]
    labels = coco_labels(_read_rgb(png_path), [s["id"] for s in segments], str(png_path))
    boxes = numpy.asarray([s["bbox"] for s in segments], dtype=numpy.float32).reshape(-1, 4)
    ltrb = numpy.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1) / numpy.float32(
        [width, height, width, height]
    )
    return {
        "image": (image_dir / image_info["file_name"]).read_bytes(),
        "segment": encode_index_map_png(labels),
        "bbox": ltrb.astype(numpy.float32),
        "clazz": numpy.asarray([s["category_id"] for s in segments], dtype=numpy.uint8),
        "isthing": numpy.asarray([isthing[s["category_id"]] for s in segments], dtype=bool),
    }


def convert_coco(raw_dir: Path, out_dir: Path, *, progress: bool = True) -> ConversionReport:
    """COCO 2017 panoptic train/val → ``train.lmdb`` / ``val.lmdb`` (things and stuff; readers filter)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    counts = {
        f"{split}.lmdb": write_records(out_dir / f"{split}.lmdb", _coco_records(raw_dir, split, progress))
        for split in ("train", "val")
    }
    return ConversionReport(counts)


# ---------------------------------------------------------------------------------------------
# ClevrTex


def _clevrtex_scenes(split_dir: Path) -> list[tuple[Path, Path]]:
    """(image, flat) pairs: each ``<scene>_flat.png`` next to its render ``<scene>.png``."""
    scenes = []
    for flat in sorted(split_dir.rglob("*_flat.png")):
        image = flat.with_name(flat.name[: -len("_flat.png")] + ".png")
        if not image.is_file():
            raise MissingFileError(f"{flat} has no render: looked for {image}")
        scenes.append((image, flat))
    if not scenes:
        raise MissingFileError(f"no ClevrTex scenes (*_flat.png) found under {split_dir.resolve()}")
    return scenes


def convert_clevrtex(raw_dir: Path, out_dir: Path, *, progress: bool = True) -> ConversionReport:
    """``clevrtex_full`` → ``train.lmdb``, ``clevrtex_outd`` (OOD test set) → ``val.lmdb``.

    Labels rank the flat render's colours with the smallest code as background (the reference's rule:
    the ClevrTex background has the smallest colour code).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    counts = {}
    for source, split in (("clevrtex_full", "train"), ("clevrtex_outd", "val")):
        split_dir = _require_dir(
            raw_dir / source, f"ClevrTex {source}", f"Extract {source}.tar.gz into {raw_dir}."
        )
        scenes = _clevrtex_scenes(split_dir)

        def records(scenes: list[tuple[Path, Path]] = scenes, split: str = split) -> Iterator[dict[str, Any]]:
            for image_path, flat_path in _progress(scenes, f"ClevrTex {split}", progress):
                with _naming(f"{flat_path} (image {image_path})"):
                    labels = rank_colours(_read_rgb(flat_path), background_is_black=False)
                    record = {
                        "image": image_path.read_bytes(),
                        "segment": encode_index_map_png(labels),
                        "name": image_path.stem,
                    }
                yield record

        counts[f"{split}.lmdb"] = write_records(out_dir / f"{split}.lmdb", records())
    return ConversionReport(counts)
