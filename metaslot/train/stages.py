"""Building the pipeline of a config, including the stage-1 VQ-VAE that SLATE and SlotDiffusion need."""

from __future__ import annotations

from pathlib import Path

import torch

from metaslot.errors import CheckpointError, ConfigError
from metaslot.train import checkpoint as checkpoints

# Stage-2 spec class → the VQ-VAE variant its preset expects (reference: c256 for SLATE, c4 for SlotDiffusion).
STAGE_TWO_VARIANTS = {"SlateSpec": "c256", "SlotDiffusionSpec": "c4"}
_DATA_SELECTORS = {
    "ShapesSpec": "shapes",
    "VOCSpec": "voc",
    "COCOSpec": "coco",
    "ClevrTexSpec": "clevrtex",
    "MoviDSpec": "movi_d",
}


def needs_stage_one(model_spec: object) -> bool:
    return type(model_spec).__name__ in STAGE_TWO_VARIANTS


def data_selector(data_spec: object) -> str:
    return _DATA_SELECTORS.get(type(data_spec).__name__, "shapes")


def stage_one_command(model_spec: object, data_spec: object) -> str:
    """The exact command that trains the VQ-VAE a stage-2 preset expects, for the same dataset."""
    data = data_selector(data_spec)
    variant = STAGE_TWO_VARIANTS.get(type(model_spec).__name__, "c256")
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
    document = checkpoints.read_sidecar(sidecar)
    model_path = checkpoints._verify(sidecar.parent, document["model"], sidecar)
    return checkpoints.read_tensors(model_path)


def build_pipeline(config: object) -> torch.nn.Module:
    """``config.model.build()``, with the VQ-VAE weights mapped in for stage-2 pipelines."""
    model_spec = config.model  # type: ignore[attr-defined]
    pipeline = model_spec.build()
    if needs_stage_one(model_spec):
        vqvae = config.vqvae  # type: ignore[attr-defined]
        if vqvae is None:
            raise ConfigError(
                f"{type(model_spec).__name__.removesuffix('Spec')} needs a trained VQ-VAE: run "
                f"`{stage_one_command(model_spec, config.data)}` first, then add "  # type: ignore[attr-defined]
                f"--vqvae runs/vqvae-{STAGE_TWO_VARIANTS[type(model_spec).__name__]}-{data_selector(config.data)}"  # type: ignore[attr-defined]
            )
        load_stage_one(pipeline, stage_one_weights(vqvae), vqvae, data_selector(config.data))  # type: ignore[attr-defined]
    return pipeline


def load_stage_one(
    pipeline: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path, data: str
) -> None:
    """Map VQ-VAE weights into a stage-2 pipeline (name- and shape-checked by the pipelines' mapping;
    a mismatch raises its CheckpointMismatchError, which names the stage-1 command)."""
    from metaslot.models.pipelines import checkpoint_mapping

    checkpoint_mapping.load_vqvae_into(pipeline, weights, data=data, origin=f"--vqvae {source}")
