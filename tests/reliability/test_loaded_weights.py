"""Loaded weights are finite and of the expected kind (issue 28, item 7, its weights part).

All-NaN or integer-typed weights in a shared model's ``model.safetensors`` (which has no hash to
check) loaded and segmented without a word. They are refused now, naming the file and a tensor.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

import metaslot
from metaslot.errors import CheckpointError
from tests.support.helpers import tiny_config, train


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_runs import train_tiny

    run = train_tiny("autoencoder", tmp_path_factory.mktemp("runs"), "a")
    return metaslot.save_pretrained(run, tmp_path_factory.mktemp("shared") / "model")


def edited(folder: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "model"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    tensors = safetensors.torch.load_file(str(copy / "model.safetensors"))
    change(tensors)
    safetensors.torch.save_file(tensors, str(copy / "model.safetensors"))
    return copy


def first_float(tensors: dict[str, torch.Tensor]) -> str:
    return next(name for name, value in tensors.items() if value.is_floating_point() and value.numel() > 1)


def test_nan_weights_are_refused(shared: Path, tmp_path: Path) -> None:
    def poison(tensors: dict[str, torch.Tensor]) -> None:
        name = first_float(tensors)
        tensors[name] = torch.full_like(tensors[name], float("nan"))

    with pytest.raises(CheckpointError, match="NaN or infinite"):
        metaslot.load(edited(shared, tmp_path, poison))


def test_integer_weights_where_floats_belong_are_refused(shared: Path, tmp_path: Path) -> None:
    def as_integers(tensors: dict[str, torch.Tensor]) -> None:
        name = first_float(tensors)
        tensors[name] = tensors[name].round().to(torch.int64)

    with pytest.raises(CheckpointError, match="int64"):
        metaslot.load(edited(shared, tmp_path, as_integers))


def test_a_run_checkpoint_still_loads(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, steps=2, val_every=2, checkpoint_every=2)
    train(config)
    assert metaslot.load(config.run_dir) is not None
