"""Converter round trips on tiny fake VOCdevkit / COCO panoptic / ClevrTex trees."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest
import torch
from PIL import Image

from metaslot.cli.convert import main as convert_main
from metaslot.data.convert import convert_clevrtex, convert_coco, convert_voc, voc_labels
from metaslot.data.decoding import decode_image
from metaslot.data.lmdb_io import RecordFile
from metaslot.data.published import ClevrTexSpec, COCOSpec, VOCSpec

SIZE = 16


def _save(path: Path, array: numpy.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _picture(seed: int) -> numpy.ndarray:
    return numpy.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=numpy.uint8)


def _voc_tree(raw: Path) -> dict[str, numpy.ndarray]:
    """Two VOC2012 and one VOC2007 pictures; 2007_000001 appears in both years (the leak)."""
    expected = {}
    for year, name, seed in (("2012", "2007_000001", 1), ("2012", "2012_000002", 2), ("2007", "000001", 1)):
        root = raw / "VOCdevkit" / f"VOC{year}"
        _save(root / "JPEGImages" / f"{name}.jpg", _picture(seed))
        colours = numpy.zeros((SIZE, SIZE, 3), numpy.uint8)
        colours[0, :] = (224, 224, 192)  # void border
        colours[2:6, 2:6] = (224, 128, 0)  # R = 224: the reference would zero this channel
        colours[8:12, 8:12] = (128, 0, 0)
        colours[12:14, 0:3] = (0, 0, 192)  # B = 192 alone is not void
        _save(root / "SegmentationObject" / f"{name}.png", colours)
        labels = numpy.zeros((SIZE, SIZE), numpy.int64)
        # codes: (128,0,0) → 128, (224,128,0) → 224 + 256*128, (0,0,192) → 192 * 65536
        labels[8:12, 8:12], labels[2:6, 2:6], labels[12:14, 0:3] = 1, 2, 3
        expected[f"{year}/{name}"] = labels
    return expected


def test_voc_void_is_removed_only_where_all_channels_match() -> None:
    colours = numpy.array([[[224, 224, 192], [224, 10, 10], [5, 224, 192], [0, 0, 0]]], dtype=numpy.uint8)
    # codes: (224,10,10) → 658144 < (5,224,192) → 12640261; both survive, only the exact void goes
    numpy.testing.assert_array_equal(voc_labels(colours), [[0, 1, 2, 0]])


def test_voc_round_trip_and_overlap(tmp_path: Path, capsys) -> None:
    expected = _voc_tree(tmp_path / "raw")
    report = convert_voc(tmp_path / "raw", tmp_path / "data" / "voc", progress=False)
    assert report.counts == {"train.lmdb": 2, "val.lmdb": 1}
    assert report.overlapping_train_images == ["2007_000001"] and report.dropped == 0
    spec = VOCSpec(tmp_path / "data", resolution=SIZE)
    train, val = spec.build("train"), spec.build("val")
    assert train.records.pickle_free
    assert torch.equal(train[1].segment, torch.from_numpy(expected["2012/2012_000002"]))
    assert val[0].num_objects == 3
    jpeg = (tmp_path / "raw" / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg").read_bytes()
    numpy.testing.assert_array_equal(val.raw(0)[0], decode_image(jpeg))

    convert_main(
        [
            "voc",
            "--raw-dir",
            str(tmp_path / "raw"),
            "--out",
            str(tmp_path / "dedup"),
            "--drop-overlap",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr().out
    assert "1 VOC2012 training images are identical" in printed and "dropped" in printed
    assert len(RecordFile(tmp_path / "dedup" / "train.lmdb")) == 1


def _coco_tree(raw: Path) -> dict[str, numpy.ndarray]:
    categories = [{"id": 1, "name": "person", "isthing": 1}, {"id": 187, "name": "sky", "isthing": 0}]
    expected = {}
    for split in ("train", "val"):
        ids = numpy.zeros((SIZE, SIZE), numpy.int64)
        ids[:5] = 5000  # sky, stuff
        ids[6:10, 3:9] = 70000  # person (needs the B channel)
        ids[11:14, 10:15] = 300  # person
        colours = numpy.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(numpy.uint8)
        _save(raw / "annotations" / f"panoptic_{split}2017" / "000000000009.png", colours)
        _save(raw / f"{split}2017" / "000000000009.jpg", _picture(3))
        segments = [
            {"id": 70000, "category_id": 1, "bbox": [3, 6, 6, 4]},
            {"id": 5000, "category_id": 187, "bbox": [0, 0, 16, 5]},
            {"id": 300, "category_id": 1, "bbox": [10, 11, 5, 3]},
        ]
        panoptic = {
            "images": [{"id": 9, "file_name": "000000000009.jpg", "width": SIZE, "height": SIZE}],
            "annotations": [{"image_id": 9, "file_name": "000000000009.png", "segments_info": segments}],
            "categories": categories,
        }
        (raw / "annotations" / f"panoptic_{split}2017.json").write_text(json.dumps(panoptic))
        labels = numpy.zeros((SIZE, SIZE), numpy.int64)
        labels[ids == 300], labels[ids == 5000], labels[ids == 70000] = 1, 2, 3  # ascending id order
        expected[split] = labels
    return expected


def test_coco_round_trip(tmp_path: Path) -> None:
    expected = _coco_tree(tmp_path / "raw")
    report = convert_coco(tmp_path / "raw", tmp_path / "data" / "coco", progress=False)
    assert report.counts == {"train.lmdb": 1, "val.lmdb": 1}
    everything = COCOSpec(tmp_path / "data", resolution=SIZE, things_only=False).build("val")
    assert torch.equal(everything[0].segment, torch.from_numpy(expected["val"]))
    record = everything.records.record(0)
    numpy.testing.assert_array_equal(record["isthing"], [True, False, True])
    numpy.testing.assert_array_equal(record["clazz"], [1, 187, 1])
    numpy.testing.assert_allclose(record["bbox"][0], numpy.array([10, 11, 15, 14]) / SIZE)
    things = COCOSpec(tmp_path / "data", resolution=SIZE).build("val")[0]
    assert things.num_objects == 2
    assert torch.equal(
        things.segment,
        torch.from_numpy(numpy.where(expected["val"] == 3, 2, numpy.where(expected["val"] == 1, 1, 0))),
    )


def test_coco_inconsistent_png_is_reported(tmp_path: Path) -> None:
    _coco_tree(tmp_path / "raw")
    path = tmp_path / "raw" / "annotations" / "panoptic_train2017.json"
    panoptic = json.loads(path.read_text())
    panoptic["annotations"][0]["segments_info"].pop()
    path.write_text(json.dumps(panoptic))
    with pytest.raises(ValueError, match="000000000009.png"):
        convert_coco(tmp_path / "raw", tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "train.lmdb").exists()  # atomic: nothing half-written


def test_clevrtex_round_trip(tmp_path: Path) -> None:
    expected = {}
    for source, count in (("clevrtex_full", 2), ("clevrtex_outd", 1)):
        for index in range(count):
            scene = tmp_path / "raw" / source / "0" / f"CLEVRTEX_{source[9:]}_{index:06d}"
            _save(scene.with_name(scene.name + ".png"), _picture(index))
            flat = numpy.full((SIZE, SIZE, 3), (10, 10, 10), numpy.uint8)  # background: smallest code
            flat[2:7, 2:7] = (200, 50, 50)
            flat[9:14, 4:12] = (20, 200, 40)
            _save(scene.with_name(scene.name + "_flat.png"), flat)
            _save(scene.with_name(scene.name + "_depth_0001.png"), numpy.zeros((SIZE, SIZE, 3), numpy.uint8))
            labels = numpy.zeros((SIZE, SIZE), numpy.int64)
            # codes R + 256 G + 65536 B: (20, 200, 40) → 2672660 < (200, 50, 50) → 3289800
            labels[9:14, 4:12], labels[2:7, 2:7] = 1, 2
            expected[(source, index)] = labels
    report = convert_clevrtex(tmp_path / "raw", tmp_path / "data" / "clevrtex", progress=False)
    assert report.counts == {"train.lmdb": 2, "val.lmdb": 1}
    train = ClevrTexSpec(tmp_path / "data", resolution=SIZE).build("train")
    assert torch.equal(train[1].segment, torch.from_numpy(expected[("clevrtex_full", 1)]))
    numpy.testing.assert_array_equal(train.raw(1)[0], _picture(1))


def test_missing_raw_layout_is_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="VOC2012"):
        convert_voc(tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(FileNotFoundError, match="clevrtex_full"):
        convert_clevrtex(tmp_path, tmp_path / "out", progress=False)
