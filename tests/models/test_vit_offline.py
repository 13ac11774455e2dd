"""The DINO/DINOv2 encoder: offline load of a saved state through timm's file path, tokens, errors."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
import safetensors.torch
import timm
import torch

from metaslot.models.encoders import DinoViTSpec, WeightsNotFoundError
from metaslot.models.encoders.vit import create_backbone

DINOV2 = "vit_small_patch14_dinov2.lvd142m"
TINY = "vit_tiny_patch16_224"


def _save_random_state(model_name: str, path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model(model_name, pretrained=False, img_size=224, num_classes=0)
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    safetensors.torch.save_file(state, str(path))
    return state


def test_dinov2_loads_saved_state_and_gives_16x16_tokens(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    state = _save_random_state(DINOV2, weights)
    encoder = DinoViTSpec(model_name=DINOV2, weights=weights).build()
    loaded = encoder.backbone.state_dict()
    for name, tensor in state.items():
        torch.testing.assert_close(loaded[name], tensor, msg=name)
    tokens = encoder(torch.randn(1, 3, 256, 256))
    assert tokens.shape == (1, 16 * 16, 384)
    assert encoder.grid_size(256, 256) == (16, 16) and encoder.out_channels == 384
    assert torch.isfinite(tokens).all()


def test_folder_with_model_safetensors_is_accepted(tmp_path: Path) -> None:
    _save_random_state(TINY, tmp_path / "model.safetensors")
    encoder = DinoViTSpec(model_name=TINY, weights=tmp_path).build()
    assert encoder(torch.randn(1, 3, 256, 256)).shape == (1, 14 * 14, 192)


def test_frozen_encoder_has_no_gradients_and_stays_in_eval() -> None:
    encoder = DinoViTSpec(model_name=TINY, pretrained=False).build()
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    encoder.train()
    assert not encoder.backbone.training
    image = torch.randn(1, 3, 64, 64, requires_grad=True)
    tokens = encoder(image)
    assert not tokens.requires_grad


def test_final_norm_switch_changes_only_the_norm() -> None:
    torch.manual_seed(0)
    with_norm = DinoViTSpec(model_name=TINY, pretrained=False).build()
    without_norm = DinoViTSpec(model_name=TINY, pretrained=False, final_norm=False).build()
    without_norm.backbone.load_state_dict(with_norm.backbone.state_dict())
    image = torch.randn(1, 3, 224, 224)
    raw = without_norm(image)
    torch.testing.assert_close(with_norm.backbone.norm(raw), with_norm(image))


def test_trainable_variant_passes_gradients() -> None:
    encoder = DinoViTSpec(model_name=TINY, pretrained=False, frozen=False).build()
    encoder(torch.randn(1, 3, 32, 32)).mean().backward()
    assert encoder.backbone.patch_embed.proj.weight.grad is not None


def test_missing_file_names_the_download_and_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(WeightsNotFoundError) as raised:
        DinoViTSpec(model_name=DINOV2, weights=missing).build()
    message = str(raised.value)
    assert str(missing) in message and "does not exist" in message
    assert f"timm/{DINOV2}" in message and "model.safetensors" in message
    assert "--model.encoder.weights" in message


def test_empty_folder_names_the_download(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="no weight file"):
        DinoViTSpec(model_name=TINY, weights=tmp_path).build()


def test_corrupt_file_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsNotFoundError, match="--model.encoder.weights"):
        DinoViTSpec(model_name=TINY, weights=broken).build()


def test_offline_hub_names_the_download_and_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(huggingface_hub.try_to_load_from_cache(f"timm/{DINOV2}", "model.safetensors"), str):
        pytest.skip("the DINOv2 weights are in the local hub cache, so the offline path succeeds")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # conftest sets it before import; this keeps the test explicit
    with pytest.raises(WeightsNotFoundError) as raised:
        create_backbone(DinoViTSpec(model_name=DINOV2))
    message = str(raised.value)
    assert "HF_HUB_OFFLINE" in message and f"timm/{DINOV2}" in message
    assert "model.safetensors" in message and "--model.encoder.weights" in message


def test_spec_errors() -> None:
    with pytest.raises(ValueError, match="unknown timm model"):
        DinoViTSpec(model_name="not_a_vit")
    with pytest.raises(ValueError, match="pretrained=False"):
        DinoViTSpec(pretrained=False, weights=Path("x.safetensors"))
