"""Building for checkpoint weights: no pretrained source anywhere in the spec tree; stage-1 weights from the checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import metaslot
from metaslot.errors import CheckpointError
from metaslot.models.encoders import CNNEncoderSpec, DinoViTSpec
from metaslot.models.pipelines import DinosaurSpec, SlateSpec, VQVAESpec
from metaslot.models.pipelines.slotdiffusion import SlotDiffusionSpec
from metaslot.pretrained.building import load_weights, without_downloads
from metaslot.train.checkpoint import read_tensors
from tests.support.tiny_runs import train_tiny

VIT = "vit_tiny_patch16_224"


def test_every_pretrained_source_is_switched_off_at_any_depth(tmp_path: Path) -> None:
    dinosaur = DinosaurSpec(encoder=DinoViTSpec(model_name=VIT, weights=tmp_path / "vit", image_size=32))
    offline = without_downloads(dinosaur)
    assert offline.encoder == DinoViTSpec(model_name=VIT, pretrained=False, image_size=32)
    assert offline.decoder == dinosaur.decoder and offline.aggregator == dinosaur.aggregator
    vqvae = VQVAESpec(pretrained=tmp_path / "taesd", lpips_weight=1.0, codebook_size=16)
    assert without_downloads(vqvae) == VQVAESpec(codebook_size=16)
    slotdiffusion = without_downloads(
        SlotDiffusionSpec(encoder=DinoViTSpec(model_name=VIT), aggregator=dinosaur.aggregator, vqvae=vqvae)
    )
    assert not slotdiffusion.encoder.pretrained and slotdiffusion.vqvae.pretrained is None
    assert without_downloads(CNNEncoderSpec()) == CNNEncoderSpec()


def test_the_lpips_copy_of_a_stage_one_checkpoint_is_left_out_and_nothing_else() -> None:
    pipeline = VQVAESpec(width=8, code_dim=4, codebook_size=16, input_scale=1.0).build()
    state = {name: tensor.clone() for name, tensor in pipeline.state_dict().items()}
    load_weights(pipeline, {**state, "perceptual.net.weight": torch.zeros(2)}, Path("stage-1"))
    with pytest.raises(CheckpointError, match=r"1 unexpected \(e.g. other.weight\)"):
        load_weights(pipeline, {**state, "other.weight": torch.zeros(2)}, Path("stage-1"))


def test_a_stage_two_run_loads_without_its_stage_one_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    stage_one = train_tiny("vqvae", runs, "vqvae")
    run_dir = train_tiny("slate", runs, "slate", "--vqvae", str(stage_one))
    stage_one_weights = read_tensors(stage_one / "checkpoints" / "step-0000003.safetensors")  # its last
    shutil.rmtree(stage_one)  # `--vqvae` in the run's config now points nowhere
    pipeline = metaslot.load(run_dir)
    assert isinstance(pipeline.spec, SlateSpec)
    state = pipeline.state_dict()
    saved = read_tensors(run_dir / "checkpoints" / "step-0000003.safetensors")
    assert all(torch.equal(state[name], tensor) for name, tensor in saved.items())
    for name in ("encoder.to_code.weight", "codebook.embedding.weight", "decoder.from_code.weight"):
        assert torch.equal(state[f"vqvae.{name}"], stage_one_weights[name]), name
    result = pipeline.segment(torch.rand(1, 3, 32, 48))
    assert result.masks.shape == (1, 3, 32, 48)
