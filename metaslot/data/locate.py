"""Where a published split file lies: ``--data.root`` may name the folder holding ``voc/`` or ``voc/`` itself.

``locate_split_file(Path("/datasets"), "voc", "train")`` and
``locate_split_file(Path("/datasets/voc"), "voc", "train")`` both find ``/datasets/voc/train.lmdb``.
The nested form wins when both exist (it is what the presets' default ``data`` means).
"""

from __future__ import annotations

from pathlib import Path

from metaslot.data.lmdb_io import RELEASE_PAGE, MissingDatasetError
from metaslot.errors import ConfigError

# Folder names of the published datasets (what `python -m cli.download` writes under --root).
DATASET_FOLDERS = ("voc", "coco", "clevrtex", "movi_d")
CONVERTIBLE = ("voc", "coco", "clevrtex")


class DatasetRootError(ConfigError):
    """``--data.root`` names the folder of another dataset."""


def split_file_candidates(root: Path, folder: str, split: str) -> tuple[Path, Path]:
    """(``root/folder/split.lmdb``, ``root/split.lmdb``): root as the parent, then as the folder itself."""
    return root / folder / f"{split}.lmdb", root / f"{split}.lmdb"


def missing_split_message(root: Path, folder: str, split: str) -> str:
    nested, direct = split_file_candidates(root, folder, split)
    ways = [
        f"Download it with `python -m cli.download {folder} --root {root}`",
        f"get {folder}/{split}.lmdb from {RELEASE_PAGE}",
    ]
    if folder in CONVERTIBLE:
        ways.append(
            f"convert the raw dataset with `python -m cli.convert {folder} --raw-dir <raw {folder} dir> "
            f"--out {root / folder}`"
        )
    return (
        f"dataset file {folder}/{split}.lmdb not found: looked for {nested.resolve()} (--data.root as the "
        f"folder holding {folder}/) and {direct.resolve()} (--data.root as the {folder} folder itself). "
        f"{'; or '.join(ways)}."
    )


def missing_split(root: Path, folder: str, split: str) -> str | None:
    """None when `locate_split_file` would find the file, else the message saying where to get it."""
    nested, direct = split_file_candidates(root, folder, split)
    if nested.is_file() or direct.is_file():
        return None
    return missing_split_message(root, folder, split)


def locate_split_file(root: Path, folder: str, split: str) -> Path:
    """The split file of dataset ``folder`` under ``root`` (either form); a clear error when neither exists."""
    nested, direct = split_file_candidates(root, folder, split)
    if nested.is_file():
        return nested
    if direct.is_file():
        # /datasets/voc given to --data coco would read VOC as COCO without a word: refuse.
        if root.name in DATASET_FOLDERS and root.name != folder:
            raise DatasetRootError(
                f"--data.root {root} is the {root.name} dataset folder, but this dataset is {folder}: point "
                f"--data.root at {root.parent} or at the {folder} folder"
            )
        return direct
    raise MissingDatasetError(missing_split_message(root, folder, split))
