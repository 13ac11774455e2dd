"""Every entry of every reference config's checkpoint maps, by name and shape, onto its full-size preset.

The manifests (``tests/fixtures/reference_checkpoints``) list the saved entries of the 17 paper configs;
the pipelines are built on the ``meta`` device, so nothing big is allocated. The Slot Attention
baselines are the same files without MetaSlot's ``vq.*`` and ``clust_prob`` entries, and with the
aggregator MLP's second layer at ``ffn.3`` (their MLP dropout of 0.01 adds a ``Dropout`` at index 2).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from metaslot.errors import CheckpointMismatchError
from metaslot.pretrained import reference_layout as layout
from metaslot.pretrained.building import build_for_weights
from metaslot.pretrained.reference import _hint, reference_config, trained_as

MANIFESTS = sorted(
    (Path(__file__).resolve().parents[1] / "fixtures" / "reference_checkpoints").glob("*.json")
)
DTYPES = {"float32": torch.float32, "int64": torch.long, "bool": torch.bool}
NO_PRESET = ("spot_r-coco", "dinosaur_r-coco-ViT_B16")
METASLOT_ONLY = ("m.aggregat.vq.", "m.aggregat.clust_prob")


def _entries(path: Path) -> dict[str, torch.Tensor]:
    document = json.loads(path.read_text())
    assert len(document["entries"]) == document["counts"]["entries"]
    return {
        key: torch.empty(shape, dtype=DTYPES[dtype], device="meta")
        for key, shape, dtype, *_ in document["entries"]
    }


def _preset_of(name: str) -> tuple[str, str, str | None]:
    match = re.fullmatch(r"(dinosaur|slate|slotdiffusion)_r(?:_vqvae)?-(\w+)|vqvae-(\w+)-(c256|c4)", name)
    assert match, name
    if match.group(1):
        return match.group(1), match.group(2), None
    return "vqvae", match.group(3), match.group(4)


def _baseline(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Slot Attention baseline's entries of the same config (VQ-VFM-OCL's SlotAttention, dropout 0.01)."""
    return {
        key.replace("m.aggregat.ffn.2.", "m.aggregat.ffn.3."): value
        for key, value in tensors.items()
        if not key.startswith(METASLOT_ONLY)
    }


def _map(
    tensors: dict[str, torch.Tensor], model: str, data: str, aggregator: str, variant: str | None
) -> None:
    config = reference_config(model, data, aggregator, variant, renders=False)
    with torch.device("meta"):
        pipeline = build_for_weights(config.model)
    asked = f"--model {model} --data {data} --aggregator {aggregator}"
    layout.map_reference_state(
        tensors,
        pipeline.state_dict(),
        layout.renames_for(config.model),
        origin="manifest",
        hint=_hint(tensors, asked),
    )


def test_there_is_a_manifest_per_paper_config() -> None:
    assert len(MANIFESTS) == 17


@pytest.mark.parametrize(
    "path", [p for p in MANIFESTS if p.name.split("@")[0] not in NO_PRESET], ids=lambda p: p.stem
)
def test_every_entry_maps_onto_the_full_size_preset(path: Path) -> None:
    name = path.name.split("@")[0]
    model, data, variant = _preset_of(name)
    tensors = _entries(path)
    _map(tensors, model, data, "metaslot", variant)
    expected = (
        f"--model {model} --data {data} --aggregator metaslot"
        if model != "vqvae"
        else f"--vqvae-variant {variant}"
    )
    assert expected in (trained_as(tensors) or "")
    if model != "vqvae":
        baseline = _baseline(tensors)
        _map(baseline, model, data, "slot-attention", None)
        assert trained_as(baseline) == f"--model {model} --data {data} --aggregator slot-attention"


@pytest.mark.parametrize(
    ("aggregator", "other"), [("slot-attention", "metaslot"), ("metaslot", "slot-attention")]
)
def test_the_other_aggregator_is_refused_naming_the_one_the_file_was_trained_with(
    aggregator: str, other: str
) -> None:
    tensors = _entries(next(p for p in MANIFESTS if p.name.startswith("dinosaur_r-voc@")))
    if other == "slot-attention":
        tensors = _baseline(tensors)
    with pytest.raises(CheckpointMismatchError) as caught:
        _map(tensors, "dinosaur", "voc", aggregator, None)
    message = str(caught.value)
    assert "\n" not in message
    assert f"looks trained as --model dinosaur --data voc --aggregator {other}" in message
    assert ("unexpected" if other == "metaslot" else "missing") in message


def test_another_dataset_is_refused_naming_the_shapes_and_the_preset() -> None:
    tensors = _entries(next(p for p in MANIFESTS if p.name.startswith("slate_r_vqvae-clevrtex@")))
    with pytest.raises(
        CheckpointMismatchError, match=r"m\.initializ\.mean \(1, 11, 256\) vs \(1, 7, 256\).*--data clevrtex"
    ):
        _map(tensors, "slate", "coco", "metaslot", None)


@pytest.mark.parametrize("name", NO_PRESET)
def test_files_without_a_preset_are_refused_saying_what_they_are(name: str) -> None:
    tensors = _entries(next(p for p in MANIFESTS if p.name.startswith(f"{name}@")))
    with pytest.raises(CheckpointMismatchError, match="whose layout metaslot does not map yet"):
        _map(tensors, "dinosaur", "coco", "metaslot", None)
