"""`metaslot.load`: run folder, checkpoint, frozen backbone from the checkpoint, and one clear error per bad source."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import metaslot
from metaslot.errors import CheckpointError, ConfigError
from metaslot.models.encoders import WeightsNotFoundError
from metaslot.pretrained import HubError, ModelNotFoundError
from metaslot.train.checkpoint import read_tensors
from metaslot.train.config import config_from_json
from tests.support.tiny_runs import WeightsRun


def weights_of(run_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return read_tensors(run_dir / "checkpoints" / f"{name}.safetensors")


def assert_same_state(pipeline: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = pipeline.state_dict()
    assert sorted(state) == sorted(expected)
    for name, tensor in expected.items():
        assert torch.equal(state[name].cpu(), tensor), name


def test_run_folder_gives_the_last_checkpoint_in_eval_mode(autoencoder_run: Path) -> None:
    pipeline = metaslot.load(autoencoder_run)
    assert not pipeline.training
    assert next(pipeline.parameters()).device == torch.device("cpu")
    assert_same_state(pipeline, weights_of(autoencoder_run, "step-0000003"))
    for same in (
        autoencoder_run / "checkpoints",
        autoencoder_run / "checkpoints" / "step-0000003.json",
        str(autoencoder_run / "checkpoints" / "step-0000003.safetensors"),
    ):
        assert_same_state(metaslot.load(same), weights_of(autoencoder_run, "step-0000003"))
    assert_same_state(metaslot.load(autoencoder_run, checkpoint="best"), weights_of(autoencoder_run, "best"))


def test_loading_leaves_the_callers_random_streams_alone(autoencoder_run: Path) -> None:
    state = torch.get_rng_state()
    metaslot.load(autoencoder_run)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_checkpoint_holds_the_frozen_backbone_it_was_trained_with(dinosaur_run: WeightsRun) -> None:
    saved = weights_of(dinosaur_run.run_dir, "step-0000003")
    prefix = "frontend.encoder.backbone."
    backbone = {
        name.removeprefix(prefix): tensor for name, tensor in saved.items() if name.startswith(prefix)
    }
    assert sorted(backbone) == sorted(dinosaur_run.backbone)
    for name, tensor in dinosaur_run.backbone.items():
        if name != "pos_embed":  # resampled from 224 to the 32-pixel grid when the file was loaded
            assert torch.equal(backbone[name], tensor), name


def test_a_run_trained_from_a_weights_file_loads_without_it(dinosaur_run: WeightsRun) -> None:
    run_dir = dinosaur_run.run_dir
    assert not dinosaur_run.weights.exists()
    config = config_from_json((run_dir / "config.json").read_text())
    assert config.model.encoder.weights == dinosaur_run.weights
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        config.model.build()  # what building from the config alone would need
    pipeline = metaslot.load(run_dir)
    assert_same_state(pipeline, weights_of(run_dir, "step-0000003"))
    result = pipeline.segment(torch.randint(0, 256, (1, 3, 40, 32), dtype=torch.uint8))
    assert result.masks.shape == (1, 3, 40, 32) and result.labels.shape == (1, 40, 32)


def test_public_names_resolve_to_their_modules() -> None:
    import metaslot.pretrained
    from metaslot.pretrained import loading, sharing

    for name in metaslot.pretrained.__all__:
        assert getattr(metaslot.pretrained, name) is not None and name in dir(metaslot.pretrained), name
    assert metaslot.load is loading.load and metaslot.pretrained.load is loading.load
    assert metaslot.save_pretrained is sharing.save_pretrained and metaslot.push_to_hub is sharing.push_to_hub


def test_import_metaslot_stays_torch_free_and_exports_load() -> None:
    code = "import sys, metaslot; assert 'load' in dir(metaslot); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_missing_sources_name_what_was_looked_for(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="nowhere/run/x does not exist: pass a run folder"):
        metaslot.load(tmp_path / "nowhere" / "run" / "x")
    # Looks like a hub id and is not a path: offline and not cached, both are said.
    with pytest.raises(
        HubError, match=r"'runs/missing' is no local path, and the Hugging Face repo runs/missing"
    ):
        metaslot.load("runs/missing", cache_dir=tmp_path / "hub")
    with pytest.raises(ModelNotFoundError, match="neither a run folder"):
        metaslot.load(tmp_path)


def test_runs_without_the_asked_checkpoint(autoencoder_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(autoencoder_run / "config.json", run_dir / "config.json")
    with pytest.raises(CheckpointError, match=r"has no checkpoint yet \(no .*latest.json\)"):
        metaslot.load(run_dir)
    with pytest.raises(CheckpointError, match="has no best checkpoint"):
        metaslot.load(run_dir, checkpoint="best")
    with pytest.raises(ConfigError, match="checkpoint='best' picks among a run folder's checkpoints"):
        metaslot.load(autoencoder_run / "checkpoints" / "step-0000003.json", checkpoint="best")


def test_a_checkpoint_of_another_model_is_refused(
    autoencoder_run: Path, dinosaur_run: WeightsRun, tmp_path: Path
) -> None:
    run_dir = tmp_path / "mixed"
    shutil.copytree(autoencoder_run / "checkpoints", run_dir / "checkpoints")
    shutil.copy(dinosaur_run.run_dir / "config.json", run_dir / "config.json")
    with pytest.raises(CheckpointError, match="does not fit this model: .* missing .* unexpected"):
        metaslot.load(run_dir)


def test_damaged_checkpoints_and_configs(autoencoder_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "damaged"
    shutil.copytree(autoencoder_run, run_dir)
    weights = run_dir / "checkpoints" / "step-0000003.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="is truncated or altered"):
        metaslot.load(run_dir)
    (run_dir / "config.json").write_text(json.dumps({"config": {"name": "x"}}))
    with pytest.raises(CheckpointError, match="does not hold a TrainConfig"):
        metaslot.load(run_dir, checkpoint="best")
