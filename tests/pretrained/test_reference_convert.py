"""`cli.convert checkpoint` end to end: a reference file → a save_pretrained folder that `metaslot.load`,
`cli.eval` and `cli.visualize` take, with the source file's facts in config.json and the model card.

The preset is shrunk (a tiny ViT, 32×32 shapes) so the whole path runs in seconds; the conversion code
is the one a full-size file goes through.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import attrs
import pytest
import torch
from PIL import Image

import metaslot
from metaslot.cli import convert as convert_cli
from metaslot.cli import eval as eval_cli
from metaslot.cli import visualize as visualize_cli
from metaslot.data.shapes import ShapesSpec
from metaslot.pretrained import reference
from metaslot.pretrained import reference_layout as layout
from metaslot.train.config import LoopSpec
from tests.pretrained.test_reference_roundtrip import _image, _ours, tiny_spec

TINY_DATA = ShapesSpec(resolution=32, size_range=(0.15, 0.3), max_objects=3, train_size=8, val_size=4)


@pytest.fixture
def tiny_presets(monkeypatch: pytest.MonkeyPatch):
    """Every preset as the tiny DINOSAUR on 32×32 shapes (the path from file to folder is unchanged)."""
    real = reference.preset

    def tiny(model: str, data: str, **options: str):
        config = real("dinosaur", "shapes")
        return attrs.evolve(
            config, model=tiny_spec(model), data=TINY_DATA, loop=LoopSpec(batch_size=2), device="cpu"
        )

    monkeypatch.setattr(reference, "preset", tiny)


def test_convert_eval_and_visualize_a_reference_file(
    tmp_path: Path, tiny_presets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = reference.as_reference_ran(tiny_spec("dinosaur"))
    ours = _ours(spec)
    source = tmp_path / "metaslot-dinosaur-coco.pth"
    torch.save({"state_dict": layout.to_reference_layout(ours, spec)}, source)
    folder = tmp_path / "converted"
    convert_cli.main(
        ["checkpoint", str(source), "--model", "dinosaur", "--data", "coco", "--out", str(folder)]
    )
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    block = json.loads((folder / "config.json").read_text())["pretrained"]["reference"]
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert block["source_file"] == {
        "file": source.name,
        "format": "reference-pth",
        "size": source.stat().st_size,
        "sha256": digest,
    }
    assert block["catalog"]["name"] == "metaslot-dinosaur-coco"
    card = (folder / "README.md").read_text()
    assert (
        "`--model dinosaur --data coco --aggregator metaslot` (what the reference file was trained as)"
        in card
    )
    assert "cli.train" not in card
    for fact in (digest, str(source.stat().st_size), "reference-pth", "FG-ARI 40.3 ± 0.5", "Protocol:"):
        assert fact in card

    loaded = metaslot.load(folder)
    image = _image()
    with torch.no_grad():
        expected = ours(image, generator=torch.Generator().manual_seed(1))
        got = loaded(image, generator=torch.Generator().manual_seed(1))
    assert torch.equal(expected.masks, got.masks) and torch.equal(expected.slots, got.slots)
    assert not loaded.honour_keep_downstream

    eval_cli.main(
        [str(folder), "--evaluation.max-batches", "1", "--evaluation.pictures", "2", "--device", "cpu"]
    )
    report = json.loads((folder / "eval-val" / "evaluation.json").read_text())
    assert "fg_ari" in report["metrics"]
    assert metaslot.load(folder) is not None  # the report beside the weights leaves the folder loadable

    photo = tmp_path / "photo.png"
    Image.fromarray((torch.rand(40, 56, 3) * 255).byte().numpy()).save(photo)
    visualize_cli.main([str(folder), "--image", str(photo), "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "photo.png:" in printed and "slots kept" in printed
    assert any((folder / "pictures-images").iterdir())


def test_slate_without_its_stage_one_file_converts_and_says_it_draws_nothing(
    tmp_path: Path, tiny_presets: None, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = reference.as_reference_ran(tiny_spec("slate"))
    source = tmp_path / "slate.pth"
    torch.save(layout.to_reference_layout(_ours(spec), spec), source)
    folder = tmp_path / "slate"
    convert_cli.main(["checkpoint", str(source), "--model", "slate", "--data", "voc", "--out", str(folder)])
    assert "--vqvae STAGE1.pth" in capsys.readouterr().out
    assert "draws no images" in (folder / "README.md").read_text()
    loaded = metaslot.load(folder)
    assert not loaded.renders and not any(key.startswith("vqvae.decoder.") for key in loaded.state_dict())
    eval_cli.main(
        [str(folder), "--evaluation.max-batches", "1", "--evaluation.pictures", "2", "--device", "cpu"]
    )
    assert (folder / "eval-val" / "evaluation.json").is_file()
