"""Two-stage loading: VQ-VAE checkpoint → SLATE / SlotDiffusion by name, and the errors that name the fix."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from metaslot.models.aggregators import SlotAttentionSpec
from metaslot.models.decoders.autoregressive import ARDecoderSpec
from metaslot.models.decoders.diffusion import DiffusionDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec
from metaslot.models.pipelines.checkpoint_mapping import (
    CheckpointMismatchError,
    load_vqvae_checkpoint,
    load_vqvae_into,
    map_vqvae_keys,
)
from metaslot.models.pipelines.slate import SlateSpec
from metaslot.models.pipelines.slotdiffusion import SlotDiffusionSpec
from metaslot.models.pipelines.vqvae import VQVAESpec

ENCODER = CNNEncoderSpec(channels=(8,), kernel_size=3, strides=(4,))
AGGREGATOR = SlotAttentionSpec(num_slots=2, slot_dim=8, feature_dim=8, num_iterations=1)


def slate(code_dim: int = 8):
    spec = SlateSpec(
        encoder=ENCODER,
        aggregator=AGGREGATOR,
        projection=None,
        vqvae=VQVAESpec(code_dim=code_dim, codebook_size=16, width=8, input_scale=1.0),
        decoder=ARDecoderSpec(width=8, num_layers=1, num_heads=1, feedforward=8),
        image_size=16,
    )
    return spec


def save_vqvae(spec: VQVAESpec, path) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    model = spec.build()
    with torch.no_grad():
        # Standard-normal weights made every latent NaN (all codes 0, so comparing codes proved nothing).
        for parameter in model.parameters():
            parameter.normal_(std=0.5)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(path))
    return state


def test_key_mapping_is_by_name_and_drops_foreign_keys() -> None:
    tensor = torch.zeros(1)
    source = {
        "encoder.to_code.weight": tensor,
        "codebook.embedding.weight": tensor,
        "decoder.norm.bias": tensor,
        "perceptual.net.weight": tensor,
    }
    assert sorted(map_vqvae_keys(source)) == [
        "vqvae.codebook.embedding.weight",
        "vqvae.decoder.norm.bias",
        "vqvae.encoder.to_code.weight",
    ]
    prefixed = {"model." + key: value for key, value in source.items()}
    assert sorted(map_vqvae_keys(prefixed, source_prefix="model.")) == sorted(map_vqvae_keys(source))


def test_round_trip_into_slate(tmp_path) -> None:
    spec = slate()
    state = save_vqvae(spec.vqvae, tmp_path / "vqvae.safetensors")
    pipeline = spec.build()
    loaded = load_vqvae_checkpoint(pipeline, tmp_path / "vqvae.safetensors", data="shapes")
    assert len(loaded) == len(state)
    target = pipeline.state_dict()
    for key, value in state.items():
        assert torch.equal(target["vqvae." + key], value), key
    # The stage-2 copy tokenises exactly as the stage-1 model would.
    stage_one = spec.vqvae.build()
    stage_one.load_state_dict(state)
    image = torch.randn(2, 3, 16, 16)
    codes = pipeline.vqvae.tokenize(image).codes
    assert codes.unique().numel() > 1
    assert torch.equal(codes, stage_one.tokenize(image).codes)


def test_round_trip_into_slotdiffusion(tmp_path) -> None:
    spec = SlotDiffusionSpec(
        encoder=ENCODER,
        aggregator=AGGREGATOR,
        projection=None,
        vqvae=VQVAESpec(code_dim=4, codebook_size=16, width=8, input_scale=1.0),
        decoder=DiffusionDecoderSpec(
            norm_groups=8, block_channels=(8, 8), layers_per_block=1, attention_head_dim=2
        ),
        image_size=16,
    )
    state = save_vqvae(spec.vqvae, tmp_path / "c4.safetensors")
    pipeline = spec.build()
    load_vqvae_checkpoint(pipeline, tmp_path / "c4.safetensors")
    assert torch.equal(pipeline.vqvae.codebook.embedding.weight, state["codebook.embedding.weight"])
    # A c256-style checkpoint (other code_dim) in the c4 pipeline names the c4 command.
    save_vqvae(VQVAESpec(code_dim=8, codebook_size=16, width=8), tmp_path / "c8.safetensors")
    with pytest.raises(CheckpointMismatchError, match="--data voc --vqvae-variant c4"):
        load_vqvae_checkpoint(pipeline, tmp_path / "c8.safetensors", data="voc")


def test_a_checkpoint_matching_no_key_is_an_error_naming_the_command(tmp_path) -> None:
    pipeline = slate().build()
    # A stage-2 checkpoint is not a VQ-VAE checkpoint: its keys start with frontend./vqvae./decoder.
    # (its AR decoder's names never coincide with the VQ-VAE decoder's).
    foreign = slate().build().state_dict()
    with pytest.raises(
        CheckpointMismatchError, match=r"matches none.*python -m cli.train --model vqvae --data coco"
    ):
        load_vqvae_into(pipeline, foreign, data="coco")


def test_wrong_shapes_are_an_error(tmp_path) -> None:
    save_vqvae(VQVAESpec(code_dim=4, codebook_size=16, width=8), tmp_path / "c4.safetensors")
    pipeline = slate(code_dim=8).build()
    before = {key: value.clone() for key, value in pipeline.state_dict().items()}
    with pytest.raises(
        CheckpointMismatchError, match=r"wrong shape.*codebook\.embedding\.weight.*--data shapes`"
    ):
        load_vqvae_checkpoint(pipeline, tmp_path / "c4.safetensors", data="shapes")
    # Nothing was half-loaded.
    assert all(torch.equal(before[key], value) for key, value in pipeline.state_dict().items())


def test_missing_parts_and_missing_files_are_errors(tmp_path) -> None:
    spec = slate()
    state = save_vqvae(spec.vqvae, tmp_path / "full.safetensors")
    without_decoder = {key: value for key, value in state.items() if not key.startswith("decoder.")}
    with pytest.raises(CheckpointMismatchError, match="lacks"):
        load_vqvae_into(spec.build(), without_decoder)
    with pytest.raises(CheckpointMismatchError, match="no VQ-VAE checkpoint at"):
        load_vqvae_checkpoint(spec.build(), tmp_path / "missing.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointMismatchError, match="cannot read"):
        load_vqvae_checkpoint(spec.build(), tmp_path / "garbage.safetensors")
