"""The catalog of published models: valid entries, each mapping onto a real preset, printed by the CLI."""

from __future__ import annotations

import pytest

import metaslot
from metaslot.cli import download as download_cli
from metaslot.errors import ConfigError
from metaslot.pretrained.catalog import PresetChoice, PublishedModel, ReportedNumber, find_model, list_models
from metaslot.train.presets import preset


def test_every_entry_names_a_preset_that_builds() -> None:
    for model in list_models():
        choice = model.preset
        options = {"aggregator": choice.aggregator} if choice.aggregator is not None else {}
        if choice.model == "vqvae" and choice.variant is not None:
            options["vqvae_variant"] = choice.variant
        config = preset(choice.model, choice.data, **options)
        assert config.data is not None, model.name


def test_names_are_unique_and_found() -> None:
    models = list_models()
    assert len({model.name for model in models}) == len(models)
    assert find_model("metaslot-dinosaur-coco").preset == PresetChoice("dinosaur", "coco", "metaslot")
    with pytest.raises(ConfigError, match="metaslot-dinosaur-coco"):
        find_model("no-such-model")


def test_the_paper_file_carries_table_one_and_the_public_export_lists_it() -> None:
    entry = find_model("metaslot-dinosaur-coco")
    assert [str(number) for number in entry.reported] == [
        "ARI 22.4 ± 0.3",
        "FG-ARI 40.3 ± 0.5",
        "mBO 29.5 ± 0.2",
        "mIoU 27.9 ± 0.2",
    ]
    assert entry in metaslot.list_models()
    assert (
        entry.load_call() == 'metaslot.load("FILE.pth", model="dinosaur", data="coco", aggregator="metaslot")'
    )


def test_two_stage_baselines_say_they_need_the_stage_one_file() -> None:
    for model in list_models():
        needs_stage_one = model.preset.model in ("slate", "slotdiffusion")
        assert (model.companion is not None) == needs_stage_one, model.name


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("sha256", "ABC", "64 lower-case hex"), ("size", 0, "positive"), ("name", "Has Space", "lower-case")],
)
def test_a_bad_entry_is_refused(field: str, value: object, message: str) -> None:
    fields = dict(
        name="x",
        title="x",
        publisher="x",
        source="https://example.org/x.pth",
        source_verified=False,
        file_format="reference-pth",
        size=None,
        sha256=None,
        preset=PresetChoice("dinosaur", "coco", "metaslot"),
        reported=(ReportedNumber("ARI", 1.0),),
        reported_in="x",
        protocol="x",
    )
    fields[field] = value
    with pytest.raises(ConfigError, match=message):
        PublishedModel(**fields)


def test_download_models_prints_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    download_cli.main(["--models"])
    printed = capsys.readouterr().out
    for model in list_models():
        assert f"{model.name}: {model.title}" in printed
        assert model.preset.flags() in printed
    assert "sha256 unknown" in printed
