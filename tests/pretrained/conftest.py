"""Tiny trained runs shared by the tests of loading, sharing and drawing a trained model.

Made once per test session through the real training command with the tiny overrides of
``tests/support/cli_args.py``: an autoencoder on 32×32 shapes, and a DINOSAUR whose ViT weights came
from a file that is deleted after training (the "trained elsewhere" case).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

from tests.support.tiny_runs import WeightsRun, train_tiny


@pytest.fixture(scope="session")
def autoencoder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny("autoencoder", tmp_path_factory.mktemp("runs"), "autoencoder")


@pytest.fixture(scope="session")
def dinosaur_run(tmp_path_factory: pytest.TempPathFactory) -> WeightsRun:
    folder = tmp_path_factory.mktemp("dinosaur")
    torch.manual_seed(3)
    backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    state = {name: tensor.contiguous() for name, tensor in backbone.state_dict().items()}
    weights = folder / "weights" / "model.safetensors"
    weights.parent.mkdir()
    safetensors.torch.save_file(state, str(weights))
    # The tiny ViT of the other tests, but pretrained from the file (the later flag wins).
    pretrained = ["--model.encoder.pretrained", "--model.encoder.weights", str(weights)]
    run_dir = train_tiny("dinosaur", folder / "runs", "dinosaur", *pretrained)
    weights.unlink()  # as on another machine: the file the run was trained with is not here
    return WeightsRun(run_dir=run_dir, weights=weights, backbone=state)
