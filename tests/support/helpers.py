"""Shared builders for the training tests (tiny fake runs)."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch

from metaslot.eval.session import SplitEvaluation
from metaslot.eval_settings import EvalSpec
from metaslot.train import loop
from metaslot.train.checkpoint import read_tensors
from metaslot.train.config import LoopSpec, TrainConfig
from tests.support.train_fakes import FakeDataSpec, FakePipelineSpec


def train(config: TrainConfig, **options: object) -> loop.TrainResult:
    """`metaslot.train.loop.train` with the standard evaluation, as the command line runs it."""
    return loop.train(config, evaluation=SplitEvaluation(), **options)


def tiny_config(runs_dir: Path, name: str = "run", **loop: object) -> TrainConfig:
    loop_fields = dict(
        steps=6, batch_size=4, val_every=3, val_batches=1, checkpoint_every=3, log_every=1, num_workers=0
    )
    loop_fields.update(loop)
    return TrainConfig(
        name=name,
        model=FakePipelineSpec(),
        data=FakeDataSpec(),
        runs_dir=runs_dir,
        loop=LoopSpec(**loop_fields),
        evaluation=EvalSpec(pictures=2, gallery_codes=2, gallery_examples=2),
        device="cpu",
        progress=False,
    )


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    import json

    name = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["checkpoint"]
    return read_tensors(run_dir / "checkpoints" / f"{name}.safetensors")


def without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if not key.startswith("time/")} for row in rows]


def evolve_loop(config: TrainConfig, **changes: object) -> TrainConfig:
    return attrs.evolve(config, loop=attrs.evolve(config.loop, **changes))
