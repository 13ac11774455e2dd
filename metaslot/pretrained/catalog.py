"""The published models metaslot can load: where each file is, what it is, and what its publishers report.

``metaslot.list_models()`` (and ``python -m cli.download --models``) lists them. Each entry says where
to get the file, its format, its size and SHA-256 where known (None otherwise: loading a file prints
both, so whoever downloads it can fill them in here), the preset its weights map onto, and the numbers
its publishers report with the protocol they were measured with. The numbers are theirs, copied from
the publication named in ``reported_in``; nothing here re-measured them.

The entries live in tuples beside the code that loads them (this module holds the reference-format
files); :func:`list_models` joins them, each imported by name.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

from metaslot.errors import ConfigError

FileFormat = Literal["reference-pth", "state-dict-pth", "metaslot-folder"]
"""``reference-pth``: ``torch.save`` of the reference code's ``ModelWrap.state_dict()`` (keys ``m.*``),
loaded with ``metaslot.load(FILE, model=..., data=..., aggregator=...)``; ``state-dict-pth``: another
publisher's plain state dict, loaded by its own name; ``metaslot-folder``: a ``save_pretrained`` folder."""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.:-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _check_name(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not _NAME.match(value):
        raise ConfigError(
            f"{attribute.name} {value!r} must be lower-case letters, digits and . _ : - (it is typed on "
            "command lines)"
        )


def _check_sha256(_instance: object, _attribute: attrs.Attribute, value: str | None) -> None:
    if value is not None and not _SHA256.match(value):
        raise ConfigError(f"sha256 {value!r} is not 64 lower-case hex digits")


def _check_size(_instance: object, _attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ConfigError(f"size must be a positive number of bytes or None (unknown), got {value}")


@attrs.frozen
class PresetChoice:
    """The preset a published model's weights map onto: ``--model``, ``--data`` and, where they
    apply, ``--aggregator`` and a variant (the VQ-VAE's ``--vqvae-variant``, a model family's size)."""

    model: str = attrs.field(validator=_check_name)
    data: str = attrs.field(validator=_check_name)
    aggregator: str | None = None
    """None for models without an aggregator (the VQ-VAE)."""
    variant: str | None = None

    def flags(self) -> str:
        """The command-line options that select this preset (``--model dinosaur --data coco ...``)."""
        parts = [f"--model {self.model}", f"--data {self.data}"]
        if self.aggregator is not None:
            parts.append(f"--aggregator {self.aggregator}")
        if self.variant is not None:
            parts.append(
                f"--vqvae-variant {self.variant}" if self.model == "vqvae" else f"--variant {self.variant}"
            )
        return " ".join(parts)


@attrs.frozen
class ReportedNumber:
    """One number as its publisher printed it (percent for the segmentation metrics)."""

    metric: str
    value: float
    std: float | None = None
    """The ± the publisher printed (over seeds), when it did."""

    def __str__(self) -> str:
        return f"{self.metric} {self.value}" + (f" ± {self.std}" if self.std is not None else "")


@attrs.frozen
class PublishedModel:
    """One published weights file and what is known about it."""

    name: str = attrs.field(validator=_check_name)
    """The catalog's name for it (``metaslot-dinosaur-coco``)."""
    title: str
    """What it is, in words (``MetaSlot_Mlp (DINOSAUR with MetaSlot), COCO``)."""
    publisher: str
    source: str
    """Where the file is published (a URL, or a Hugging Face ``repo/file``)."""
    source_verified: bool
    """Whether the source was seen to serve this file (False: e.g. a release page whose asset names
    could not be read where this entry was written)."""
    file_format: FileFormat
    size: int | None = attrs.field(validator=_check_size)
    """Bytes; None where unknown."""
    sha256: str | None = attrs.field(validator=_check_sha256)
    """Lower-case hex digest; None where unknown."""
    preset: PresetChoice
    reported: tuple[ReportedNumber, ...]
    reported_in: str
    """Where the numbers were published (paper table, README figure)."""
    protocol: str
    """How the numbers were measured: split, resolution, metrics, seeds, what the file is among them."""
    load_name: str | None = None
    """The name ``metaslot.load`` fetches itself (``ftdinosaur:NAME``); None: download the file by
    hand and pass its path (with the preset for a ``reference-pth`` file)."""
    companion: str | None = None
    """Another file some uses need (a SLATE file's stage-1 VQ-VAE, without which nothing is rendered)."""

    def load_call(self) -> str:
        """The Python call that loads it."""
        if self.load_name is not None:
            return f'metaslot.load("{self.load_name}")'
        if self.file_format == "reference-pth":
            arguments = [f'model="{self.preset.model}"', f'data="{self.preset.data}"']
            if self.preset.aggregator is not None:
                arguments.append(f'aggregator="{self.preset.aggregator}"')
            return f'metaslot.load("FILE.pth", {", ".join(arguments)})'
        return 'metaslot.load("FOLDER")'


# --- the reference-format files --------------------------------------------------------------------

METASLOT_DRIVE = "https://drive.google.com/file/d/1dt3zt5yppH7r1FD0576k8fQHj2X2t35E/view"
"""The MetaSlot README's link ("Results (Teaser)") to the authors' MetaSlot-DINOSAUR COCO file."""
VQ_VFM_OCL_RELEASES = "https://github.com/Genera1Z/VQ-VFM-OCL/releases/tag"
"""The parent framework's release tags (its README, "Model Checkpoints"): one per model family, each
holding the ClevrTex, COCO and VOC files. The asset names inside could not be read from here."""

PAPER_PROTOCOL = (
    "object discovery on the val split of the converted LMDB datasets (VQ-VFM-OCL releases), images "
    "centre-cropped and resized to 256x256 (224x224 into DINOv2 ViT-S/14), masks compared at 256x256, "
    "argmax over all slots (pruned ones included); ARI, FG-ARI, mBO, mIoU in percent; mean ± std over "
    "training seeds (the group's repos use 42, 43, 44); the reference's eval.py under CUDA fp16 autocast"
)
METASLOT_TABLE = "MetaSlot (NeurIPS 2025, arXiv 2505.20772), Table 1"
VQ_VFM_OCL_TABLE = "VQ-VFM-OCL README, res/acc_vqdino_all.png (arXiv 2502.20263)"
_METRICS = ("ARI", "FG-ARI", "mBO", "mIoU")
_DATA_TITLES = {"coco": "COCO", "voc": "VOC", "clevrtex": "ClevrTex"}


def _numbers(*pairs: tuple[float, float]) -> tuple[ReportedNumber, ...]:
    return tuple(
        ReportedNumber(metric, value, std) for metric, (value, std) in zip(_METRICS, pairs, strict=True)
    )


METASLOT_DINOSAUR_COCO = PublishedModel(
    name="metaslot-dinosaur-coco",
    title="MetaSlot_Mlp (DINOSAUR with MetaSlot), COCO, 7 slots",
    publisher="MetaSlot authors (lhj-lhj/MetaSlot)",
    source=METASLOT_DRIVE,
    source_verified=False,
    file_format="reference-pth",
    size=None,
    sha256=None,
    preset=PresetChoice("dinosaur", "coco", "metaslot"),
    reported=_numbers((22.4, 0.3), (40.3, 0.5), (29.5, 0.2), (27.9, 0.2)),
    reported_in=f"{METASLOT_TABLE}, COCO, MetaSlot_Mlp",
    protocol=PAPER_PROTOCOL + "; the file is one of the runs (which seed is not stated)",
)

# The Slot Attention baselines of Table 1, as published by the parent framework (same code, same
# checkpoint layout, Slot Attention with BO-QSA in place of MetaSlot). Its numbers equal Table 1's
# baselines except DINOSAUR FG-ARI (COCO 37.0 vs 35.0, VOC 36.2 vs 35.2) and SlotDiffusion COCO
# FG-ARI (29.0 vs 28.7); the entries carry the publisher's own figure.
_BASELINE_NUMBERS: dict[tuple[str, str], tuple[tuple[float, float], ...]] = {
    ("slate", "clevrtex"): ((17.4, 2.9), (87.4, 1.7), (44.5, 2.2), (43.3, 2.4)),
    ("slate", "coco"): ((17.5, 0.6), (28.8, 0.3), (26.8, 0.3), (25.4, 0.3)),
    ("slate", "voc"): ((18.6, 0.1), (26.2, 0.8), (37.2, 0.5), (36.1, 0.4)),
    ("dinosaur", "clevrtex"): ((50.7, 24.1), (89.4, 0.3), (53.3, 5.0), (52.8, 5.2)),
    ("dinosaur", "coco"): ((18.2, 1.0), (37.0, 1.2), (28.3, 0.5), (26.9, 0.5)),
    ("dinosaur", "voc"): ((21.5, 0.7), (36.2, 1.3), (40.6, 0.6), (39.7, 0.6)),
    ("slotdiffusion", "clevrtex"): ((66.1, 1.3), (82.7, 1.6), (54.3, 0.5), (53.4, 0.8)),
    ("slotdiffusion", "coco"): ((17.7, 0.5), (29.0, 0.1), (27.0, 0.4), (25.6, 0.4)),
    ("slotdiffusion", "voc"): ((17.0, 1.2), (21.7, 1.8), (35.2, 0.9), (34.0, 1.0)),
}
_BASELINE_RELEASES = {"slate": "slatesteve", "dinosaur": "dinosaur", "slotdiffusion": "slotdiffusion"}
_BASELINE_TITLES = {"slate": "SLATE-DINO", "dinosaur": "DINOSAUR-DINO", "slotdiffusion": "SlotDiffusion-DINO"}
_STAGE_ONE = {"slate": "c256", "slotdiffusion": "c4"}


def _baseline(model: str, data: str) -> PublishedModel:
    variant = _STAGE_ONE.get(model)
    companion = (
        f"the stage-1 VQ-VAE file (vqvae-{data}-{variant}) to render images: the file holds no VQ decoder"
        if variant is not None
        else None
    )
    return PublishedModel(
        name=f"{model}-{data}-sa",
        title=f"{_BASELINE_TITLES[model]} (Slot Attention, BO-QSA), {_DATA_TITLES[data]}",
        publisher="VQ-VFM-OCL authors (Genera1Z/VQ-VFM-OCL), the MetaSlot code's parent framework",
        source=f"{VQ_VFM_OCL_RELEASES}/{_BASELINE_RELEASES[model]}",
        source_verified=False,
        file_format="reference-pth",
        size=None,
        sha256=None,
        preset=PresetChoice(model, data, "slot-attention"),
        reported=_numbers(*_BASELINE_NUMBERS[(model, data)]),
        reported_in=f"{VQ_VFM_OCL_TABLE}, {_DATA_TITLES[data]}, {_BASELINE_TITLES[model]}",
        protocol=PAPER_PROTOCOL + "; which seeds the release holds was not seen here",
        companion=companion,
    )


REFERENCE_MODELS: tuple[PublishedModel, ...] = (
    METASLOT_DINOSAUR_COCO,
    *(
        _baseline(model, data)
        for model in ("dinosaur", "slate", "slotdiffusion")
        for data in ("coco", "voc", "clevrtex")
    ),
)
"""The files in the reference's checkpoint format (``reference-pth``)."""


# --- the registry ----------------------------------------------------------------------------------


def list_models() -> tuple[PublishedModel, ...]:
    """Every published model metaslot can load, in a stable order (reference-format files first)."""
    # Each family's entries live beside its loader, as a tuple of PublishedModel; add a family by
    # importing its tuple here (inside the function: those modules import this one's records).
    from metaslot.pretrained.ftdinosaur import FTDINOSAUR_MODELS

    models = (*REFERENCE_MODELS, *FTDINOSAUR_MODELS)
    names = [model.name for model in models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"the model catalog names {', '.join(duplicates)} more than once")
    return models


def find_model(name: str) -> PublishedModel:
    """The catalog entry called ``name``; a ConfigError listing the names otherwise."""
    for model in list_models():
        if model.name == name:
            return model
    known = ", ".join(model.name for model in list_models())
    raise ConfigError(f"no published model called {name!r}: choose one of {known}")
