"""Load a reference ``.pth`` file (lhj-lhj/MetaSlot, Genera1Z/VQ-VFM-OCL) into the preset it was trained as.

``metaslot.load(FILE, model="dinosaur", data="coco", aggregator="metaslot")`` lands here. The file
is read with ``torch.load(weights_only=True)`` onto the CPU (anything but tensors is refused), a
``{"state_dict": ...}`` wrapper is accepted, and every entry is mapped by name and shape onto the
preset's pipeline (`reference_layout`). The pipeline is built without downloads: the frozen ViT comes
from the file. It then behaves as the reference did when its numbers were measured: decoders see every
slot (``honour_keep_downstream=False``; switch it on the returned pipeline), the VQ-VAE sees the
reference's input scaling (``pixel_space="reference"``), MetaSlot's upkeep state starts fresh.

The reference's SLATE and SlotDiffusion files hold their stage 1 without its decoder: they segment and
score, but drawing images needs the stage-1 VQ-VAE file too (``vqvae=FILE``), whose encoder and
codebook must be the ones the stage-2 file holds.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import attrs
import torch
from torch import Tensor

from metaslot.errors import CheckpointError, CheckpointMismatchError, ConfigError
from metaslot.models.aggregators import MetaSlotSpec
from metaslot.models.pipelines import SlateSpec, SlotDiffusionSpec
from metaslot.models.pipelines.vqvae import VQVAESpec
from metaslot.pretrained import reference_layout as layout
from metaslot.pretrained.building import build_for_weights
from metaslot.pretrained.catalog import PresetChoice, PublishedModel, list_models
from metaslot.train.config import TrainConfig
from metaslot.train.presets import preset

FILE_FORMAT = "reference-pth"
_HASH_CHUNK = 1 << 22


@attrs.frozen
class ReferenceFile:
    """A reference checkpoint as read: its tensors and what identifies the file."""

    path: Path
    size: int
    sha256: str
    tensors: dict[str, Tensor]

    def facts(self) -> dict[str, Any]:
        """What a converted folder records about its source file."""
        return {"file": self.path.name, "format": FILE_FORMAT, "size": self.size, "sha256": self.sha256}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_reference_file(path: str | os.PathLike) -> ReferenceFile:
    """The tensors of a reference ``.pth`` (``weights_only=True``, on the CPU), or a one-line CheckpointError."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(
            f"no checkpoint file at {file}: download it first (`python -m cli.download --models`)"
        )
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses any global that is not a tensor type before anything runs.
        first = str(error).strip().splitlines()[0] if str(error).strip() else "a forbidden object"
        raise CheckpointError(
            f"{file} needs more than tensors to load ({first}); refused: a reference checkpoint holds "
            "tensors only, so this file is not one (or was tampered with)"
        ) from error
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{file} is not a readable PyTorch checkpoint ({type(error).__name__}: {first}); it may be "
            "truncated: download it again and compare its size and SHA-256 with `python -m cli.download --models`"
        ) from error
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not loaded:
        raise CheckpointError(
            f"{file} holds a {type(loaded).__name__}, not a state dict of tensors: is it a reference checkpoint?"
        )
    foreign = [
        str(key) for key, value in loaded.items() if not (isinstance(key, str) and isinstance(value, Tensor))
    ]
    if foreign:
        raise CheckpointError(
            f"{file} holds entries that are not named tensors ({', '.join(foreign[:3])}): it is not a "
            "reference checkpoint (a training state with optimiser or step?)"
        )
    return ReferenceFile(path=file, size=file.stat().st_size, sha256=_sha256(file), tensors=dict(loaded))


# --- what the file was trained as ------------------------------------------------------------------

_SLOTS_TO_DATA = {6: "voc", 7: "coco", 11: "clevrtex"}


def trained_as(tensors: dict[str, Tensor]) -> str | None:
    """The preset flags (or a description) a reference state was trained with, when its keys tell."""
    keys = set(tensors)
    if "m.codebook.templat.weight" in keys and "m.encode.1.0.weight" in keys:
        width = tensors["m.codebook.templat.weight"].shape[-1]
        variant = {256: "c256", 4: "c4"}.get(width)
        return f"--model vqvae --vqvae-variant {variant} (any --data)" if variant else None
    if "m.decode.project1.0.weight" in keys:
        return "the reference's SPOT (spot_r-coco), whose layout metaslot does not map yet"
    patch = tensors.get("m.encode_backbone.1.patch_embed.proj.weight")
    if patch is not None and tuple(patch.shape) == (768, 3, 16, 16):
        return "DINOSAUR with a ViT-B/16 backbone (dinosaur_r-coco-ViT_B16), whose layout metaslot does not map yet"
    if "m.decode.bos" in keys:
        model = "slate"
    elif "m.decode.backbone.conv_in.weight" in keys:
        model = "slotdiffusion"
    elif "m.decode.posit_embed.pe" in keys:
        model = "dinosaur"
    else:
        return None
    aggregator = "metaslot" if "m.aggregat.vq.codebook.templat.weight" in keys else "slot-attention"
    mean = tensors.get("m.initializ.mean")
    data = _SLOTS_TO_DATA.get(int(mean.shape[1])) if mean is not None and mean.dim() == 3 else None
    flags = f"--model {model}" + (f" --data {data}" if data else "") + f" --aggregator {aggregator}"
    return flags


def _hint(tensors: dict[str, Tensor], asked: str) -> str:
    found = trained_as(tensors)
    if found is None:
        return ""
    if "--" in found and _flag_pairs(found) <= _flag_pairs(asked):
        return ""  # everything the file tells agrees with what was asked: the keys say the rest
    return f"; the file looks trained as {found}, not {asked}"


def _flag_pairs(flags: str) -> set[tuple[str, str]]:
    """``--model dinosaur --data coco (...)`` → {("--model", "dinosaur"), ("--data", "coco")}."""
    words = flags.split(" (")[0].split()
    return {(word, words[index + 1]) for index, word in enumerate(words[:-1]) if word.startswith("--")}


def as_reference_ran(spec: Any, renders: bool = True) -> Any:
    """A pipeline spec behaving as the reference did: decoders see every slot, the VQ-VAE sees the
    reference's input scaling, and a stage-2 VQ-VAE has a decoder only when ``renders``."""
    if isinstance(spec, VQVAESpec):
        return attrs.evolve(spec, pixel_space="reference")
    if isinstance(spec.aggregator, MetaSlotSpec):
        spec = attrs.evolve(spec, aggregator=attrs.evolve(spec.aggregator, honour_keep_downstream=False))
    if isinstance(spec, SlateSpec | SlotDiffusionSpec):
        spec = attrs.evolve(
            spec, vqvae=attrs.evolve(spec.vqvae, pixel_space="reference", with_decoder=renders)
        )
    return spec


def reference_config(
    model: str, data: str, aggregator: str, vqvae_variant: str | None = None, *, renders: bool = True
) -> TrainConfig:
    """The preset ``--model --data --aggregator`` as a reference file needs it (`as_reference_ran`)."""
    if model == "vqvae":
        config = preset(model, data, vqvae_variant=vqvae_variant or "c256")
    else:
        config = preset(model, data, aggregator=aggregator)
    return attrs.evolve(config, model=as_reference_ran(config.model, renders))


def catalog_entry(choice: PresetChoice) -> PublishedModel | None:
    """The catalog's published model for this preset, when it lists one."""
    for entry in list_models():
        if entry.file_format == FILE_FORMAT and entry.preset == choice:
            return entry
    return None


def _variant_of(tensors: dict[str, Tensor]) -> str | None:
    codebook = tensors.get("m.codebook.templat.weight")
    return {256: "c256", 4: "c4"}.get(int(codebook.shape[-1])) if codebook is not None else None


def _stage_one_decoder(
    stage_one: ReferenceFile, stage_two: dict[str, Tensor], pipeline: torch.nn.Module
) -> dict[str, Tensor]:
    """The stage-1 file's VQ decoder in our names, after checking that its encoder and codebook are the
    ones the stage-2 file holds (training copied them in, so they are equal bit for bit)."""
    own = {
        key.removeprefix("vqvae."): value
        for key, value in pipeline.state_dict().items()
        if key.startswith("vqvae.")
    }
    mapped = layout.map_reference_state(
        stage_one.tensors,
        own,
        layout.VQVAE,
        origin=f"stage-1 file {stage_one.path}",
        hint=_hint(stage_one.tensors, "--model vqvae"),
    ).tensors
    differing = [
        key
        for key, value in mapped.items()
        if not key.startswith("decoder.") and not torch.equal(value, stage_two[f"vqvae.{key}"])
    ]
    if differing:
        raise CheckpointMismatchError(
            f"stage-1 file {stage_one.path} is not the VQ-VAE the stage-2 file was trained on (its "
            f"{', '.join(differing[:3])} differ from the stage-2 file's copy): pass the stage-1 file of that run"
        )
    return {f"vqvae.{key}": value for key, value in mapped.items() if key.startswith("decoder.")}


def load_reference_state(
    file: ReferenceFile, model_spec: Any, stage_one: ReferenceFile | None = None, *, asked: str = ""
) -> torch.nn.Module:
    """The pipeline of ``model_spec`` (built without downloads) holding every tensor of ``file``, and
    the stage-1 file's VQ decoder when given, in evaluation mode on the CPU. ``asked`` (the preset's
    flags) lets a mismatch say which preset the file looks trained as instead."""
    pipeline = build_for_weights(model_spec)
    mapped = layout.map_reference_state(
        file.tensors,
        pipeline.state_dict(),
        layout.renames_for(model_spec),
        optional=("vqvae.decoder.",),
        origin=str(file.path),
        hint=_hint(file.tensors, asked) if asked else "",
    )
    tensors = dict(mapped.tensors)
    if stage_one is not None:
        tensors.update(_stage_one_decoder(stage_one, tensors, pipeline))
    result = pipeline.load_state_dict(tensors, strict=False)
    left = [key for key in result.missing_keys if key not in layout.FRESH]
    if left or result.unexpected_keys:  # map_reference_state checked both already
        unloaded = (left + result.unexpected_keys)[:5]
        raise CheckpointMismatchError(f"{file.path}: keys left unloaded: {', '.join(unloaded)}")
    aggregator = None if isinstance(model_spec, VQVAESpec) else model_spec.aggregator
    if isinstance(aggregator, MetaSlotSpec):
        layout.fresh_upkeep_state(pipeline, aggregator, mapped.cluster_probability)
    return pipeline.eval()


def load_reference(
    path: str | os.PathLike,
    model: str,
    data: str,
    aggregator: str = "metaslot",
    *,
    vqvae: str | os.PathLike | None = None,
) -> tuple[torch.nn.Module, TrainConfig, dict[str, Any]]:
    """The preset's pipeline (eval mode, CPU) with every weight from the reference file at ``path``.

    Returns the pipeline, its config and the facts a converted folder records (source file and, for
    SLATE/SlotDiffusion, the stage-1 file). ``vqvae`` is the stage-1 VQ-VAE file of a SLATE or
    SlotDiffusion file (without it, those render nothing).
    """
    if vqvae is not None and model not in ("slate", "slotdiffusion"):
        raise ConfigError(
            f"vqvae= is the stage-1 file of a SLATE or SlotDiffusion file; --model {model} has none"
        )
    file = read_reference_file(path)
    # Printed so that whoever downloaded the file can compare it with the catalog (or fill it in).
    print(f"{file.path}: {file.size} bytes, sha256 {file.sha256}", file=sys.stderr)
    stage_one = read_reference_file(vqvae) if vqvae is not None else None
    variant = _variant_of(file.tensors) if model == "vqvae" else None
    config = reference_config(model, data, aggregator, variant, renders=stage_one is not None)
    asked = f"--model {model} --data {data}" + (f" --aggregator {aggregator}" if model != "vqvae" else "")
    pipeline = load_reference_state(file, config.model, stage_one, asked=asked)
    choice = PresetChoice(model, data, None if model == "vqvae" else aggregator, variant)
    entry = catalog_entry(choice)
    facts: dict[str, Any] = {
        "source_file": file.facts(),
        "preset": {"model": model, "data": data, "aggregator": choice.aggregator, "vqvae_variant": variant},
        "stage_one_file": stage_one.facts() if stage_one is not None else None,
        "renders": model not in ("slate", "slotdiffusion") or stage_one is not None,
        "catalog": None
        if entry is None
        else {
            "name": entry.name,
            "title": entry.title,
            "source": entry.source,
            "reported": [str(number) for number in entry.reported],
            "reported_in": entry.reported_in,
            "protocol": entry.protocol,
        },
    }
    return pipeline, config, facts
