"""Two-stage loading: a trained VQ-VAE checkpoint into the ``vqvae`` part of SLATE / SlotDiffusion.

Keys are mapped by name (``encoder.*`` → ``vqvae.encoder.*`` and so on) and every mapped tensor must
have the target's shape. The reference copied positionally and checked nothing (reference §1.11), so a
wrong checkpoint loaded silently; here it is a :class:`CheckpointMismatchError` that says which
checkpoint is expected and how to produce it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from metaslot.errors import CheckpointMismatchError
from metaslot.models.pipelines.vqvae import VQVAE

VQVAE_PARTS = ("encoder.", "codebook.", "decoder.")


def _how_to_produce(data: str, code_dim: int | None) -> str:
    variant = "" if code_dim is None else f" (code_dim {code_dim}: the c{code_dim} variant)"
    # The training CLI picks the c4 variant with --vqvae-variant (metaslot/train/stages.py).
    flag = " --vqvae-variant c4" if code_dim == 4 else ""
    return (
        f"expected the safetensors state_dict of a trained VQ-VAE pipeline{variant} with keys "
        f"{', '.join(part + '*' for part in VQVAE_PARTS)}; produce it with "
        f"`python -m cli.train --model vqvae --data {data}{flag}`"
    )


def _held_code_dim(pipeline: nn.Module, target_prefix: str) -> int | None:
    """``code_dim`` of the VQ-VAE ``pipeline`` holds under ``target_prefix`` (None if it holds none there)."""
    try:
        held = pipeline.get_submodule(target_prefix.rstrip("."))
    except AttributeError:
        return None
    return held.spec.code_dim if isinstance(held, VQVAE) else None


def map_vqvae_keys(
    source: Mapping[str, Tensor], target_prefix: str = "vqvae.", source_prefix: str = ""
) -> dict[str, Tensor]:
    """Rename ``{source_prefix}encoder.*`` etc. to ``{target_prefix}encoder.*``; other keys are dropped."""
    mapped: dict[str, Tensor] = {}
    for key, value in source.items():
        if not key.startswith(source_prefix):
            continue
        name = key[len(source_prefix) :]
        if name.startswith(VQVAE_PARTS):
            mapped[target_prefix + name] = value
    return mapped


def load_vqvae_into(
    pipeline: nn.Module,
    source: Mapping[str, Tensor],
    *,
    data: str = "<data>",
    target_prefix: str = "vqvae.",
    source_prefix: str = "",
    origin: str = "the given state",
) -> list[str]:
    """Copy a VQ-VAE state into ``pipeline``'s ``target_prefix`` part; returns the keys loaded.

    Every key of the target part must be present with the same shape; anything else is a
    :class:`CheckpointMismatchError` naming ``origin`` and the command for ``data``.
    """
    target = pipeline.state_dict()
    expected = {key for key in target if key.startswith(tuple(target_prefix + part for part in VQVAE_PARTS))}
    code_dim = _held_code_dim(pipeline, target_prefix)
    mapped = map_vqvae_keys(source, target_prefix, source_prefix)
    matched = sorted(set(mapped) & expected)
    if not matched:
        sample = ", ".join(sorted(source)[:4]) or "no keys at all"
        raise CheckpointMismatchError(
            f"{origin} matches none of the pipeline's {len(expected)} VQ-VAE keys (it starts with: {sample}); "
            + _how_to_produce(data, code_dim)
        )
    wrong = [
        f"{key}: checkpoint {tuple(mapped[key].shape)} vs pipeline {tuple(target[key].shape)}"
        for key in matched
        if mapped[key].shape != target[key].shape
    ]
    if wrong:
        raise CheckpointMismatchError(
            f"{origin} has {len(wrong)} VQ-VAE tensors of the wrong shape ({'; '.join(wrong[:3])}): "
            "it was trained with another code_dim/codebook_size/width; " + _how_to_produce(data, code_dim)
        )
    missing = sorted(expected - set(matched))
    if missing:
        raise CheckpointMismatchError(
            f"{origin} lacks {len(missing)} VQ-VAE keys (e.g. {', '.join(missing[:3])}); "
            + _how_to_produce(data, code_dim)
        )
    with torch.no_grad():
        for key in matched:
            target[key].copy_(mapped[key])
    return matched


def load_vqvae_checkpoint(
    pipeline: nn.Module,
    path: str | Path,
    *,
    data: str = "<data>",
    target_prefix: str = "vqvae.",
    source_prefix: str = "",
) -> list[str]:
    """Read a VQ-VAE safetensors checkpoint and load it into ``pipeline`` (see :func:`load_vqvae_into`)."""
    from safetensors.torch import load_file

    file = Path(path)
    if not file.is_file():
        raise CheckpointMismatchError(
            f"no VQ-VAE checkpoint at {str(file)!r}; " + _how_to_produce(data, None)
        )
    try:
        state = load_file(str(file))
    except Exception as error:  # safetensors raises several types for a corrupt or foreign file
        raise CheckpointMismatchError(
            f"cannot read {str(file)!r} as safetensors ({error}); " + _how_to_produce(data, None)
        ) from error
    return load_vqvae_into(
        pipeline,
        state,
        data=data,
        target_prefix=target_prefix,
        source_prefix=source_prefix,
        origin=f"checkpoint {str(file)!r}",
    )
