"""Tiny command-line override sets for every model (32×32 shapes, a few channels, 3 steps)."""

from __future__ import annotations

from pathlib import Path

TINY_DATA = [
    "--data.resolution",
    "32",
    "--data.size-range",
    "0.15",
    "0.3",
    "--data.max-objects",
    "3",
    "--data.train-size",
    "8",
    "--data.val-size",
    "4",
]
TINY_AGGREGATOR = [
    "--model.aggregator.num-slots",
    "3",
    "--model.aggregator.slot-dim",
    "8",
    "--model.aggregator.feature-dim",
    "8",
    "--model.aggregator.mlp-hidden-dim",
    "16",
    "--model.aggregator.codebook-size",
    "8",
    "--model.aggregator.buffer-capacity",
    "16",
]
# The autoencoder's own parts at their smallest (with TINY_AGGREGATOR): two 3×3 convs of 8 channels.
TINY_AUTOENCODER = [
    *TINY_AGGREGATOR,
    "--model.encoder.channels",
    "8",
    "8",
    "--model.encoder.strides",
    "2",
    "1",
    "--model.encoder.kernel-size",
    "3",
]
TINY_VIT = [
    "--model.encoder.model-name",
    "vit_tiny_patch16_224",
    "--model.encoder.no-pretrained",
    "--model.encoder.image-size",
    "32",
]
TINY_VQVAE = ["width", "8", "codebook-size", "16", "input-scale", "1.0"]


def loop_args(runs_dir: Path, steps: int = 3) -> list[str]:
    return [
        "--runs-dir",
        str(runs_dir),
        "--device",
        "cpu",
        "--no-progress",
        "--loop.steps",
        str(steps),
        "--loop.batch-size",
        "2",
        "--loop.val-every",
        str(steps),
        "--loop.val-batches",
        "1",
        "--loop.checkpoint-every",
        str(steps),
        "--loop.num-workers",
        "0",
        "--loop.log-every",
        "1",
        "--evaluation.max-batches",
        "1",
        "--evaluation.pictures",
        "2",
        "--evaluation.gallery-examples",
        "2",
    ]


def _vqvae(prefix: str, code_dim: int | None) -> list[str]:
    pairs = TINY_VQVAE + (["code-dim", str(code_dim)] if code_dim else [])
    return [f"--{prefix}{pairs[i]}" if i % 2 == 0 else pairs[i] for i in range(len(pairs))]


def without_codebook(arguments: list[str]) -> list[str]:
    """Drop the MetaSlot-only flags (for ``--aggregator slot-attention``)."""
    kept: list[str] = []
    skip = False
    for argument in arguments:
        if skip:
            skip = False
            continue
        if argument in ("--model.aggregator.codebook-size", "--model.aggregator.buffer-capacity"):
            skip = True
            continue
        kept.append(argument)
    return kept


def model_args(model: str) -> list[str]:
    """Selectors and overrides that make ``model`` tiny on 32×32 shapes."""
    common = ["--model", model, "--data", "shapes", *TINY_DATA, "--model.image-size", "32"]
    if model == "autoencoder":
        return [*common, *TINY_AUTOENCODER]
    if model == "dinosaur":
        return [*common, *TINY_AGGREGATOR, *TINY_VIT, "--model.decoder.hidden-channels", "16"]
    if model == "vqvae":
        return ["--model", "vqvae", "--data", "shapes", *TINY_DATA, *_vqvae("model.", 8)]
    if model == "vqvae-c4":
        return [
            "--model",
            "vqvae",
            "--vqvae-variant",
            "c4",
            "--data",
            "shapes",
            *TINY_DATA,
            *_vqvae("model.", None),
        ]
    if model == "slate":
        return [
            *common,
            *TINY_AGGREGATOR,
            *TINY_VIT,
            *_vqvae("model.vqvae.", 8),
            "--model.decoder.width",
            "16",
            "--model.decoder.num-layers",
            "1",
            "--model.decoder.num-heads",
            "2",
            "--model.decoder.feedforward",
            "32",
        ]
    if model == "slotdiffusion":
        return [
            *common,
            *TINY_AGGREGATOR,
            *TINY_VIT,
            *_vqvae("model.vqvae.", None),
            "--model.decoder.norm-groups",
            "8",
            "--model.decoder.block-channels",
            "32",
            "32",
            "--model.decoder.layers-per-block",
            "1",
            "--model.decoder.attention-head-dim",
            "4",
            "--model.decoder.dropout",
            "0.0",
            "--model.sample-steps",
            "2",
        ]
    if model == "spot":
        return [
            *common,
            *TINY_AGGREGATOR,
            *TINY_VIT,
            "--model.decoder.num-layers",
            "1",
            "--model.decoder.feedforward-multiplier",
            "1",
        ]
    raise ValueError(model)
