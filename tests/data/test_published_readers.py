"""Fixtures in the published record layout load to the right arrays, and identically through our format."""

from __future__ import annotations

import attrs
import cv2
import numpy
import pytest
import torch

from metaslot.data.decoding import encode_image, encode_index_map_png, encode_index_map_webp
from metaslot.data.lmdb_io import write_records
from metaslot.data.published import (
    ClevrTexSpec,
    COCOSpec,
    LmdbImageDataset,
    PublishedImageSpec,
    VOCSpec,
)
from metaslot.data.sampling import ItemKey
from metaslot.data.transforms import compact_labels, normalize

SIZE = 24


def _scene(seed: int, instances) -> tuple[numpy.ndarray, numpy.ndarray]:
    generator = numpy.random.default_rng(seed)
    labels = instances(generator, SIZE, SIZE, 3)
    image = generator.integers(0, 256, size=(SIZE, SIZE, 3), dtype=numpy.uint8)
    return image, labels


def _expected(image: numpy.ndarray, labels: numpy.ndarray) -> tuple[torch.Tensor, torch.Tensor, int]:
    compacted, count = compact_labels(torch.from_numpy(labels))
    return normalize(torch.from_numpy(image).permute(2, 0, 1).contiguous()), compacted, count


@pytest.mark.parametrize("numpy1", [False, True])
@pytest.mark.parametrize("segment_as", ["bytes", "array"])
def test_voc_style_records_load(tmp_path, published_writer, instances, numpy1: bool, segment_as: str) -> None:
    scenes = [_scene(seed, instances) for seed in range(3)]
    records = []
    for image, labels in scenes:
        webp = encode_index_map_webp(labels)
        records.append(
            {
                "image": encode_image(image, ".png"),
                "segment": webp.tobytes() if segment_as == "bytes" else webp,
            }
        )
    (tmp_path / "voc").mkdir()
    published_writer(tmp_path / "voc" / "val.lmdb", records, numpy1=numpy1)
    dataset = VOCSpec(tmp_path, resolution=SIZE).build("val", train=False)
    assert len(dataset) == 3 and not dataset.records.pickle_free
    for index, (image, labels) in enumerate(scenes):
        sample = dataset[index]
        expected_image, expected_segment, count = _expected(image, labels)
        torch.testing.assert_close(sample.image, expected_image)
        assert torch.equal(sample.segment, expected_segment)
        assert sample.num_objects == count == len(numpy.unique(labels)) - 1


def test_our_format_loads_identically(tmp_path, published_writer, instances) -> None:
    scenes = [_scene(seed, instances) for seed in range(4)]
    published = [{"image": encode_image(i, ".jpg"), "segment": encode_index_map_webp(s)} for i, s in scenes]
    ours = [
        {"image": record["image"], "segment": encode_index_map_png(s)}
        for record, (_, s) in zip(published, scenes, strict=True)
    ]
    published_writer(tmp_path / "published.lmdb", published)
    write_records(tmp_path / "ours.lmdb", ours)
    for train in (False, True):
        first = LmdbImageDataset(
            tmp_path / "published.lmdb", dataset="voc", resolution=16, train=train, seed=3
        )
        second = LmdbImageDataset(tmp_path / "ours.lmdb", dataset="voc", resolution=16, train=train, seed=3)
        assert second.records.pickle_free and not first.records.pickle_free
        for index in range(4):
            key = ItemKey(index, epoch=2)
            assert torch.equal(first[key].image, second[key].image)
            assert torch.equal(first[key].segment, second[key].segment)
            assert first[key].num_objects == second[key].num_objects


def test_gray_and_rgba_images_become_rgb(tmp_path, published_writer, instances) -> None:
    image, labels = _scene(0, instances)
    gray = image[..., 0]
    ok, gray_png = cv2.imencode(".png", gray)
    rgba = numpy.concatenate([image, numpy.full((SIZE, SIZE, 1), 7, numpy.uint8)], axis=2)
    ok, rgba_png = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    segment = encode_index_map_webp(labels).tobytes()
    (tmp_path / "clevrtex").mkdir()
    published_writer(
        tmp_path / "clevrtex" / "train.lmdb",
        [
            {"image": gray_png.tobytes(), "segment": segment},
            {"image": rgba_png.tobytes(), "segment": segment},
        ],
    )
    dataset = ClevrTexSpec(tmp_path, resolution=SIZE).build("train", train=False)
    gray_image, rgba_image = dataset.raw(0)[0], dataset.raw(1)[0]
    numpy.testing.assert_array_equal(gray_image, numpy.repeat(gray[..., None], 3, axis=2))
    numpy.testing.assert_array_equal(rgba_image, image)


def test_coco_things_only_removes_stuff(tmp_path, published_writer) -> None:
    labels = numpy.zeros((SIZE, SIZE), numpy.uint8)
    labels[:8] = 1  # stuff (sky)
    labels[10:14, 2:6] = 2  # thing
    labels[16:20, 10:20] = 3  # stuff
    labels[2:6, 12:18] = 4  # thing drawn inside the sky
    record = {
        "image": encode_image(numpy.zeros((SIZE, SIZE, 3), numpy.uint8)),
        "segment": encode_index_map_webp(labels),
        "bbox": numpy.zeros((4, 4), numpy.float32),
        "clazz": numpy.array([187, 1, 150, 3], numpy.uint8),
        "isthing": numpy.array([False, True, False, True]),
    }
    (tmp_path / "coco").mkdir()
    published_writer(tmp_path / "coco" / "val.lmdb", [record])
    things = COCOSpec(tmp_path, resolution=SIZE).build("val")[0]
    expected = numpy.where(labels == 2, 1, numpy.where(labels == 4, 2, 0))
    assert things.num_objects == 2
    numpy.testing.assert_array_equal(things.segment.numpy(), expected)
    everything = COCOSpec(tmp_path, resolution=SIZE, things_only=False).build("val")[0]
    assert everything.num_objects == 4


def test_training_crops_depend_on_epoch_and_index_only(tmp_path, published_writer, instances) -> None:
    image, labels = _scene(5, instances)
    wide = numpy.concatenate([image, image[:, ::-1]], axis=1)
    wide_labels = numpy.concatenate([labels, labels[:, ::-1]], axis=1)
    published_writer(
        tmp_path / "wide.lmdb", [{"image": encode_image(wide), "segment": encode_index_map_webp(wide_labels)}]
    )
    dataset = LmdbImageDataset(tmp_path / "wide.lmdb", dataset="voc", resolution=16, train=True, seed=1)
    again = LmdbImageDataset(tmp_path / "wide.lmdb", dataset="voc", resolution=16, train=True, seed=1)
    assert torch.equal(dataset[ItemKey(0, 0)].image, again[ItemKey(0, 0)].image)
    crops = {dataset[ItemKey(0, epoch)].image.sum().item() for epoch in range(6)}
    assert len(crops) > 1


def test_bad_split_and_spec_values_are_explained(tmp_path) -> None:
    with pytest.raises(ValueError, match="split"):
        VOCSpec(tmp_path).build("test")
    with pytest.raises(ValueError, match="resolution"):
        VOCSpec(tmp_path, resolution=0)


@pytest.mark.parametrize(
    ("spec_class", "folder"), [(VOCSpec, "voc"), (COCOSpec, "coco"), (ClevrTexSpec, "clevrtex")]
)
def test_each_spec_reads_its_own_folder_and_keeps_its_fields(tmp_path, spec_class, folder: str) -> None:
    from metaslot.data.lmdb_io import MissingDatasetError

    extra = {"things_only": True} if spec_class is COCOSpec else {}
    fields = {field.name: field.default for field in attrs.fields(spec_class)}
    assert fields == {"root": attrs.NOTHING, "resolution": 256, "seed": 0, **extra}
    spec = spec_class(str(tmp_path), resolution=8, seed=3)
    assert spec.root == tmp_path and issubclass(spec_class, PublishedImageSpec)
    for split in ("train", "val"):
        # The error names the file, and the convert command for this dataset.
        with pytest.raises(MissingDatasetError, match=rf"cli\.convert {folder} ") as error:
            spec.build(split)
        assert str(tmp_path / folder / f"{split}.lmdb") in str(error.value)


def test_missing_split_file_is_named(tmp_path) -> None:
    from metaslot.data.lmdb_io import MissingDatasetError

    with pytest.raises(MissingDatasetError, match=r"train\.lmdb") as error:
        COCOSpec(tmp_path).build("train")
    assert str(tmp_path / "coco" / "train.lmdb") in str(error.value)


def test_corrupt_image_names_the_record(tmp_path, published_writer) -> None:
    labels = numpy.zeros((4, 4), numpy.uint8)
    published_writer(
        tmp_path / "bad.lmdb", [{"image": b"not an image", "segment": encode_index_map_webp(labels)}]
    )
    with pytest.raises(ValueError, match=r"bad\.lmdb record 0"):
        LmdbImageDataset(tmp_path / "bad.lmdb", dataset="voc", resolution=4)[0]
