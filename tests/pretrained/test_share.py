"""save_pretrained / push_to_hub / load round trips, bit for bit, through a folder and a faked hub cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
import torch

import metaslot
from metaslot.errors import ConfigError
from metaslot.pretrained import HubError, OutputFolderError
from metaslot.pretrained.loading import PRETRAINED_FILES
from metaslot.train.config import config_from_json

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(cache: Path, repo_id: str, files: Path) -> None:
    """The layout huggingface_hub's cache has after downloading ``repo_id`` (refs/main → a snapshot)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name in PRETRAINED_FILES:
        shutil.copy(files / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def assert_bit_exact(first: torch.nn.Module, second: torch.nn.Module) -> None:
    one, two = first.state_dict(), second.state_dict()
    assert sorted(one) == sorted(two)
    for name in one:
        assert one[name].dtype == two[name].dtype and torch.equal(one[name], two[name]), name


def images() -> torch.Tensor:
    return torch.randint(
        0, 256, (2, 3, 36, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_save_pretrained_then_load_is_bit_exact(autoencoder_run: Path, tmp_path: Path) -> None:
    original = metaslot.load(autoencoder_run)
    folder = metaslot.save_pretrained(original, tmp_path / "shared")
    assert sorted(path.name for path in folder.iterdir()) == sorted(PRETRAINED_FILES)
    config = config_from_json((folder / "config.json").read_text())
    assert config == config_from_json((autoencoder_run / "config.json").read_text())
    loaded = metaslot.load(folder)
    assert type(loaded) is type(original) and not loaded.training
    assert_bit_exact(original, loaded)
    first, second = original.segment(images()), loaded.segment(images())
    assert torch.equal(first.masks, second.masks) and torch.equal(first.labels, second.labels)
    # A run folder saves directly; the copy of a copy is still the same model.
    assert_bit_exact(metaslot.load(metaslot.save_pretrained(autoencoder_run, tmp_path / "direct")), original)
    assert_bit_exact(metaslot.load(metaslot.save_pretrained(loaded, tmp_path / "again")), original)
    assert (tmp_path / "again" / "README.md").read_text().count("step-0000003") == 1


def test_the_model_card_says_what_was_trained_and_how_it_scored(
    autoencoder_run: Path, tmp_path: Path
) -> None:
    folder = metaslot.save_pretrained(autoencoder_run, tmp_path / "card", name_for_loading="alice/shapes")
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: metaslot\n")
    assert "`python -m cli.train --model autoencoder --data shapes`" in card
    assert "`ShapesSpec` at 32×32 px" in card and "`MetaSlotSpec`, 3 slots of width 8" in card
    assert "3 of 3 optimiser steps (checkpoint `step-0000003`)" in card
    assert 'metaslot.load("alice/shapes")' in card
    evaluation = json.loads((autoencoder_run / "eval" / "evaluation.json").read_text())
    assert (
        f"FG-ARI  {evaluation['metrics']['fg_ari']:>10.4f}".split()
        == [line for line in card.splitlines() if line.startswith("FG-ARI")][0].split()
    )
    # best.json was saved at the last step: the end-of-run evaluation is of the same weights.
    best = metaslot.save_pretrained(autoencoder_run, tmp_path / "best", checkpoint="best")
    assert (
        "checkpoint `best`" in (best / "README.md").read_text()
        and "FG-ARI" in (best / "README.md").read_text()
    )
    unevaluated = tmp_path / "unevaluated"
    shutil.copytree(autoencoder_run, unevaluated, ignore=shutil.ignore_patterns("eval"))
    card = (metaslot.save_pretrained(unevaluated, tmp_path / "none") / "README.md").read_text()
    assert "No evaluation of these weights was recorded" in card and "FG-ARI" not in card


def test_load_from_a_faked_hub_cache_offline(autoencoder_run: Path, tmp_path: Path) -> None:
    folder = metaslot.save_pretrained(autoencoder_run, tmp_path / "shared")
    fake_hub_cache(tmp_path / "hub", "alice/tiny-shapes", folder)
    loaded = metaslot.load("alice/tiny-shapes", cache_dir=tmp_path / "hub")
    assert_bit_exact(loaded, metaslot.load(folder))
    with pytest.raises(HubError, match="alice/other is not in the local cache"):
        metaslot.load("alice/other", cache_dir=tmp_path / "hub")


def test_push_to_hub_uploads_the_folder(
    autoencoder_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, Any]] = []

    def create_repo(self: Any, repo_id: str, **options: Any) -> None:
        calls.append(("create", repo_id, options))

    def upload_folder(self: Any, *, repo_id: str, folder_path: Path, **options: Any) -> Any:
        calls.append(("upload", repo_id, options))
        fake_hub_cache(tmp_path / "hub", repo_id, Path(folder_path))  # what a download would then see
        return huggingface_hub.CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}",
            commit_message="",
            commit_description="",
            oid=COMMIT,
        )

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    url = metaslot.push_to_hub(autoencoder_run, "alice/pushed", private=True)
    assert url == f"https://huggingface.co/alice/pushed/commit/{COMMIT}"
    assert calls[0] == ("create", "alice/pushed", {"private": True, "exist_ok": True})
    assert calls[1][2]["allow_patterns"] == list(PRETRAINED_FILES)
    snapshot = tmp_path / "hub" / "models--alice--pushed" / "snapshots" / COMMIT
    assert 'metaslot.load("alice/pushed")' in (snapshot / "README.md").read_text()
    assert_bit_exact(
        metaslot.load("alice/pushed", cache_dir=tmp_path / "hub"), metaslot.load(autoencoder_run)
    )


def test_push_while_offline_is_one_clear_error(autoencoder_run: Path, tmp_path: Path) -> None:
    folder = metaslot.save_pretrained(autoencoder_run, tmp_path / "shared")
    with pytest.raises(HubError, match="cannot upload to alice/x while HF_HUB_OFFLINE is set"):
        metaslot.push_to_hub(folder, "alice/x")


def test_save_never_overwrites_files_it_did_not_write(autoencoder_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "README.md").write_text("my notes")
    with pytest.raises(OutputFolderError, match=r"already holds README.md not written by save_pretrained"):
        metaslot.save_pretrained(autoencoder_run, folder)
    assert (folder / "README.md").read_text() == "my notes"
    assert sorted(path.name for path in folder.iterdir()) == ["README.md"]
    with pytest.raises(OutputFolderError, match="is a run folder"):
        metaslot.save_pretrained(autoencoder_run, autoencoder_run)


def test_a_pipeline_built_by_hand_needs_its_config(autoencoder_run: Path, tmp_path: Path) -> None:
    config = config_from_json((autoencoder_run / "config.json").read_text())
    pipeline = config.model.build()
    with pytest.raises(ConfigError, match="not loaded with metaslot.load"):
        metaslot.save_pretrained(pipeline, tmp_path / "hand")
    folder = metaslot.save_pretrained(pipeline, tmp_path / "hand", config=config)
    assert_bit_exact(metaslot.load(folder), pipeline)
