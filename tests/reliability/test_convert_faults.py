"""Converters refuse empty raw folders, name the raw file in every error and leave no partial output.

Issue 14, items 9 and 12, through the command line (`python -m cli.convert`) and the writer beneath it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
from PIL import Image

from metaslot.cli.convert import main as convert_main
from metaslot.data.lmdb_io import write_records

SIZE = 8


def _save(path: Path, array: numpy.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _picture(seed: int) -> numpy.ndarray:
    return numpy.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=numpy.uint8)


def _convert(capsys: pytest.CaptureFixture, dataset: str, raw: Path, out: Path) -> str:
    """Run the converter CLI expecting a refusal; returns the one line it printed on stderr."""
    with pytest.raises(SystemExit) as exit_info:
        convert_main([dataset, "--raw-dir", str(raw), "--out", str(out), "--no-progress"])
    assert exit_info.value.code == 1
    printed = capsys.readouterr().err.strip()
    assert printed.startswith("convert: error: ") and "\n" not in printed, printed
    return printed


def _leftovers(out: Path) -> list[str]:
    return sorted(path.name for path in out.rglob("*")) if out.exists() else []


def test_empty_voc_folders_are_refused_naming_the_folder(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    for year in ("2012", "2007"):
        (raw / f"VOC{year}" / "SegmentationObject").mkdir(parents=True)
        (raw / f"VOC{year}" / "JPEGImages").mkdir(parents=True)
    printed = _convert(capsys, "voc", raw, tmp_path / "out")
    assert str(raw.resolve() / "VOC2012" / "SegmentationObject") in printed and "no *.png" in printed
    assert _leftovers(tmp_path / "out") == []


def _voc_tree(raw: Path) -> None:
    for year, name in (("2012", "2012_000001"), ("2012", "2012_000002"), ("2007", "000001")):
        root = raw / f"VOC{year}"
        _save(root / "JPEGImages" / f"{name}.jpg", _picture(len(name)))
        colours = numpy.zeros((SIZE, SIZE, 3), numpy.uint8)
        colours[2:5, 2:5] = (128, 0, 0)
        _save(root / "SegmentationObject" / f"{name}.png", colours)


def test_unreadable_voc_segmentation_is_named_and_no_partial_file_is_left(tmp_path: Path, capsys) -> None:
    raw = tmp_path / "raw"
    _voc_tree(raw)
    broken = raw / "VOC2012" / "SegmentationObject" / "2012_000002.png"
    broken.write_bytes(b"\x89PNG truncated")
    printed = _convert(capsys, "voc", raw, tmp_path / "out")
    assert str(broken) in printed
    assert _leftovers(tmp_path / "out") == []


def _coco_tree(raw: Path, *, image_id: int = 9, category_id: int = 1, annotations: bool = True) -> Path:
    ids = numpy.zeros((SIZE, SIZE), numpy.int64)
    ids[2:5, 2:5] = 300
    colours = numpy.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(numpy.uint8)
    for split in ("train", "val"):
        _save(raw / "annotations" / f"panoptic_{split}2017" / "000000000009.png", colours)
        _save(raw / f"{split}2017" / "000000000009.jpg", _picture(3))
        segments = [{"id": 300, "category_id": category_id, "bbox": [2, 2, 3, 3]}]
        panoptic = {
            "images": [{"id": 9, "file_name": "000000000009.jpg", "width": SIZE, "height": SIZE}],
            "annotations": [
                {"image_id": image_id, "file_name": "000000000009.png", "segments_info": segments}
            ]
            if annotations
            else [],
            "categories": [{"id": 1, "name": "person", "isthing": 1}],
        }
        (raw / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(panoptic))
    return raw / "annotations" / "panoptic_train2017.json"


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"image_id": 999}, "image_id 999 is not in the file's 'images' list"),
        ({"category_id": 77}, "category ids [77] are not in the file's 'categories' list"),
        ({"annotations": False}, "lists no annotations"),
    ],
)
def test_coco_errors_name_the_annotation_file_and_leave_nothing(
    tmp_path: Path, capsys, fault: dict, says: str
) -> None:
    json_path = _coco_tree(tmp_path / "raw", **fault)
    printed = _convert(capsys, "coco", tmp_path / "raw", tmp_path / "out")
    assert str(json_path.resolve() if "annotations" in fault else json_path) in printed and says in printed
    assert _leftovers(tmp_path / "out") == []


def test_writer_removes_its_partial_file_when_a_record_fails(tmp_path: Path) -> None:
    def records():
        yield {"image": b"x"}
        raise KeyboardInterrupt  # Ctrl-C in the middle of a conversion

    with pytest.raises(KeyboardInterrupt):
        write_records(tmp_path / "train.lmdb", records(), commit_every=1)
    assert _leftovers(tmp_path) == []


def test_writer_refuses_to_write_a_file_without_records(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no records to write to .*train\.lmdb"):
        write_records(tmp_path / "train.lmdb", [])
    assert _leftovers(tmp_path) == []
