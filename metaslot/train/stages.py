"""Building the pipeline of a config, including the stage-1 VQ-VAE that SLATE and SlotDiffusion need.

Which specs need a stage 1 is a type question (`StageTwoSpec`: SLATE's and SlotDiffusion's specs, which
also say which VQ-VAE variant their presets train first), never a class-name string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs
import torch

from metaslot.errors import CheckpointError, ConfigError
from metaslot.models.pipelines.stage_two import StageTwoSpec
from metaslot.train import checkpoint as checkpoints
from metaslot.train.config import TrainConfig


@runtime_checkable
class PipelineSpec(Protocol):
    """What ``TrainConfig.model`` holds: a spec whose ``build()`` gives the pipeline."""

    def build(self) -> torch.nn.Module: ...


UNNAMED_DATA = "<your dataset>"
"""What the stage-1 command says for a dataset spec no ``--data`` name stands for (a plug-in's)."""


def data_selector(data_spec: object) -> str:
    """The ``--data`` name of a dataset spec; `UNNAMED_DATA` for one no preset names (never another
    dataset's name: a stage-1 command for the wrong data would train the wrong VQ-VAE)."""
    from metaslot.data.published import ClevrTexSpec, COCOSpec, VOCSpec
    from metaslot.data.shapes import ShapesSpec
    from metaslot.data.video import MoviDSpec

    names = {
        ShapesSpec: "shapes",
        VOCSpec: "voc",
        COCOSpec: "coco",
        ClevrTexSpec: "clevrtex",
        MoviDSpec: "movi_d",
    }
    return next((name for kind, name in names.items() if isinstance(data_spec, kind)), UNNAMED_DATA)


def stage_one_command(model_spec: StageTwoSpec, data_spec: object) -> str:
    """The exact command that trains the VQ-VAE a stage-2 preset expects, for the same dataset."""
    data = data_selector(data_spec)
    variant = model_spec.stage_one_variant
    suffix = " --vqvae-variant c4" if variant == "c4" else ""
    return f"python -m cli.train --model vqvae --data {data}{suffix} --name vqvae-{variant}-{data}"


def stage_one_weights(path: Path) -> dict[str, torch.Tensor]:
    """VQ-VAE weights from a run folder or a checkpoint (verified like any checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"--vqvae {path} does not exist; pass the stage-1 run folder or a checkpoint file"
        )
    _, sidecar = checkpoints.resolve_checkpoint(path)
    return checkpoints.read_model_weights(sidecar).tensors


def build_pipeline(config: TrainConfig) -> torch.nn.Module:
    """``config.model.build()``, with the VQ-VAE weights mapped in for stage-2 pipelines and the stage-1
    SPOT run's weights in a SPOT student's teacher."""
    model_spec = config.model
    if not isinstance(model_spec, PipelineSpec):
        raise ConfigError(f"--model holds {model_spec!r}, which has no build(); pass a pipeline spec")
    pipeline = model_spec.build()
    if isinstance(model_spec, StageTwoSpec):
        data = data_selector(config.data)
        if config.vqvae is None:
            name = type(model_spec).__name__.removesuffix("Spec")
            raise ConfigError(
                f"{name} needs a trained VQ-VAE: run `{stage_one_command(model_spec, config.data)}` first, "
                f"then add --vqvae runs/vqvae-{model_spec.stage_one_variant}-{data}"
            )
        load_stage_one(pipeline, stage_one_weights(config.vqvae), config.vqvae, data)
    if needs_teacher(model_spec):
        load_teacher(pipeline, config.teacher)
    elif config.teacher is not None:
        raise ConfigError(
            f"--teacher {config.teacher} was given but the model has no teacher spec: "
            "resolve it with metaslot.train.stages.attach_teacher(config) before building"
        )
    return pipeline


def attach_teacher(config: TrainConfig) -> TrainConfig:
    """A SPOT stage-2 config (``--teacher RUN``) with the teacher's spec read from the stage-1 run's
    ``config.json`` (so the student's own ``config.json`` holds it); any other config as it is."""
    from metaslot.models.pipelines.spot import SpotSpec
    from metaslot.train.config import config_from_json

    model = config.model
    if config.teacher is None or not isinstance(model, SpotSpec) or model.teacher is not None:
        return config
    if not Path(config.teacher).exists():
        raise CheckpointError(f"--teacher {config.teacher} does not exist; pass the stage-1 SPOT run folder")
    run_dir, _ = checkpoints.resolve_checkpoint(Path(config.teacher))
    teacher_spec = config_from_json((run_dir / "config.json").read_text()).model
    if not isinstance(teacher_spec, SpotSpec) or teacher_spec.teacher is not None:
        kind = type(teacher_spec).__name__ + (" with a teacher" if isinstance(teacher_spec, SpotSpec) else "")
        raise ConfigError(
            f"--teacher {config.teacher} is not a stage-1 SPOT run (its model is a {kind}): "
            "train one with `python -m cli.train --model spot --data DATA`"
        )
    return attrs.evolve(config, model=attrs.evolve(model, teacher=teacher_spec))


def needs_teacher(model_spec: object) -> bool:
    """A SPOT stage-2 spec: its frozen teacher's weights come from ``--teacher``."""
    from metaslot.models.pipelines.spot import SpotSpec

    return isinstance(model_spec, SpotSpec) and model_spec.teacher is not None


def load_teacher(pipeline: torch.nn.Module, teacher: Path | None) -> None:
    """The stage-1 run's weights into SPOT's frozen ``teacher`` (every key, shapes checked)."""
    if teacher is None:
        raise ConfigError(
            "this SPOT stage-2 config has a teacher spec but no --teacher run: train stage 1 with "
            "`python -m cli.train --model spot --data DATA`, then add --teacher runs/spot-DATA"
        )
    if not Path(teacher).exists():
        raise CheckpointError(f"--teacher {teacher} does not exist; pass the stage-1 SPOT run folder")
    weights = stage_one_weights(Path(teacher))
    own = pipeline.teacher.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = sorted(key for key in set(own) & set(weights) if own[key].shape != weights[key].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"--teacher {teacher} does not fit the SPOT teacher: {len(missing)} missing "
            f"({', '.join(missing[:3])}), {len(unexpected)} unexpected ({', '.join(unexpected[:3])}), "
            f"{len(wrong)} of another shape ({', '.join(wrong[:3])}); pass the stage-1 run this config was made from"
        )
    pipeline.teacher.load_state_dict(weights)


def load_stage_one(
    pipeline: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path, data: str
) -> None:
    """Map VQ-VAE weights into a stage-2 pipeline (name- and shape-checked by the pipelines' mapping;
    a mismatch raises its CheckpointMismatchError, which names the stage-1 command)."""
    from metaslot.models.pipelines import checkpoint_mapping

    checkpoint_mapping.load_vqvae_into(pipeline, weights, data=data, origin=f"--vqvae {source}")
