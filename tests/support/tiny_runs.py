"""Tiny trained runs for the tests of loading, sharing and drawing a trained model (see conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from metaslot.cli import train as train_cli
from tests.support.cli_args import loop_args, model_args


def train_tiny(model: str, runs: Path, name: str, *extra: str) -> Path:
    """``python -m cli.train`` of ``model`` on 32×32 shapes for 3 steps (the tiny overrides), into ``runs/name``."""
    train_cli.main([*model_args(model), *loop_args(runs), "--name", name, *extra])
    return runs / name


@dataclass(frozen=True)
class WeightsRun:
    """A run trained from a weights file that no longer exists; ``backbone`` is what the file held."""

    run_dir: Path
    weights: Path
    backbone: dict[str, torch.Tensor]
