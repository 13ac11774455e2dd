"""``--data.root`` may be the folder holding ``voc/`` or the ``voc`` folder itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from metaslot.data.lmdb_io import MissingDatasetError
from metaslot.data.locate import DatasetRootError, locate_split_file
from metaslot.data.published import ClevrTexSpec, COCOSpec, VOCSpec
from metaslot.data.video import MoviDSpec


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_parent_and_dataset_folder_both_resolve(tmp_path: Path) -> None:
    train = touch(tmp_path / "voc" / "train.lmdb")
    assert locate_split_file(tmp_path, "voc", "train") == train
    assert locate_split_file(tmp_path / "voc", "voc", "train") == train


def test_dataset_folder_may_have_any_name(tmp_path: Path) -> None:
    val = touch(tmp_path / "my-voc-copy" / "val.lmdb")
    assert locate_split_file(tmp_path / "my-voc-copy", "voc", "val") == val


def test_nested_form_wins_when_both_exist(tmp_path: Path) -> None:
    nested = touch(tmp_path / "voc" / "voc" / "train.lmdb")
    touch(tmp_path / "voc" / "train.lmdb")
    assert locate_split_file(tmp_path / "voc", "voc", "train") == nested


def test_folder_of_another_dataset_is_refused(tmp_path: Path) -> None:
    touch(tmp_path / "voc" / "train.lmdb")
    with pytest.raises(DatasetRootError, match=r"is the voc dataset folder, but this dataset is coco"):
        locate_split_file(tmp_path / "voc", "coco", "train")


def test_missing_file_names_both_places_and_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(MissingDatasetError) as error:
        locate_split_file(tmp_path, "clevrtex", "val")
    message = str(error.value)
    assert str(tmp_path / "clevrtex" / "val.lmdb") in message and str(tmp_path / "val.lmdb") in message
    assert f"python -m cli.download clevrtex --root {tmp_path}" in message
    assert "cli.convert clevrtex" in message and "\n" not in message
    with pytest.raises(MissingDatasetError) as error:
        locate_split_file(tmp_path, "movi_d", "train")
    assert "cli.convert" not in str(error.value)  # MOVi-D has no converter


@pytest.mark.parametrize("spec_class", [VOCSpec, COCOSpec, ClevrTexSpec])
def test_image_specs_read_from_the_dataset_folder_itself(
    tmp_path: Path, spec_class, published_writer
) -> None:
    folder = tmp_path / spec_class.folder
    folder.mkdir()
    published_writer(folder / "val.lmdb", [{"image": b"", "segment": b"", "isthing": [True]}] * 3)
    for root in (tmp_path, folder):
        dataset = spec_class(root, resolution=8).build("val")
        assert dataset.records.path == folder / "val.lmdb" and len(dataset) == 3


def test_movi_spec_reads_from_the_dataset_folder_itself(tmp_path: Path, published_writer) -> None:
    folder = tmp_path / "movi_d"
    folder.mkdir()
    published_writer(folder / "train.lmdb", [{"video": b"", "segment": b""}] * 2)
    for root in (tmp_path, folder):
        assert MoviDSpec(root).build("train").records.path == folder / "train.lmdb"
