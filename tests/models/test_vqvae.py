"""VQ-VAE: TAESD layers, quantiser, losses, training, pretrained TAESD loading and the LPIPS message."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import huggingface_hub
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.models.pipelines.vqvae import (
    LPIPSUnavailableError,
    VQVAESpec,
    in_loss_units,
    latent_grid,
    reference_vqvae,
    vqvae_c4,
    vqvae_c256,
)
from metaslot.models.taesd import (
    FROZEN_ENCODER_LAYERS,
    TAESD_FILE,
    TAESD_REPO,
    TAESDWeightsError,
    imagenet_to_unit,
    unit_to_imagenet,
)
from metaslot.models.vqvae import GridCodebook
from metaslot.ops.imagenet import IMAGENET_STD


def tiny_spec(**overrides: object) -> VQVAESpec:
    fields = dict(code_dim=4, codebook_size=16, width=8, input_scale=0.5)
    fields.update(overrides)
    return VQVAESpec(**fields)


def test_presets_follow_the_reference() -> None:
    assert vqvae_c256().code_dim == 256 and vqvae_c4().code_dim == 4
    spec = vqvae_c256()
    assert (spec.codebook_size, spec.width, spec.input_scale, spec.commit_weight) == (4096, 64, 0.5, 0.25)
    assert latent_grid(256, spec) == 16


def test_forward_shapes_terms_and_finite_loss() -> None:
    torch.manual_seed(0)
    model = tiny_spec().build()
    image = torch.randn(2, 3, 32, 32)
    output = model(image)
    assert output.reconstruction is not None and output.reconstruction.shape == (2, 3, 16, 16)
    assert set(output.terms) == {"recon", "align", "commit"}
    assert torch.isfinite(output.loss)
    assert torch.allclose(output.loss, sum(output.terms.values()))
    # commit is 0.25 × align in value (both are the same MSE between encoding and code vectors)
    assert torch.allclose(output.terms["commit"], 0.25 * output.terms["align"])
    assert output.slots is None and output.masks is None and model.aggregator is None
    quantized = model.tokenize(image)
    assert quantized.codes.shape == (2, 2, 2) and quantized.quantized.shape == (2, 4, 2, 2)


def test_value_ranges_round_trip_and_grey_maps_to_half() -> None:
    grey = torch.full((1, 3, 4, 4), 0.5)
    assert torch.allclose(imagenet_to_unit(unit_to_imagenet(grey)), grey, atol=1e-6)
    normalised = unit_to_imagenet(grey)
    assert torch.allclose(normalised[0, :, 0, 0], torch.tensor([0.0655, 0.1964, 0.4178]), atol=1e-3)
    model = tiny_spec(input_scale=1.0).build()
    assert torch.allclose(model.prepare(normalised), grey, atol=1e-6)


@given(
    batch=st.integers(1, 3),
    side=st.integers(1, 4),
    codebook_size=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_quantiser_picks_the_nearest_code_and_passes_gradient_straight_through(
    batch: int, side: int, codebook_size: int, seed: int
) -> None:
    torch.manual_seed(seed)
    codebook = GridCodebook(codebook_size, 3)
    with torch.no_grad():
        codebook.embedding.weight.normal_()
    encoding = torch.randn(batch, 3, side, side, requires_grad=True)
    quantized = codebook(encoding)
    vectors = encoding.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    distances = torch.cdist(vectors, codebook.embedding.weight.detach())
    best = distances.min(dim=1).values
    chosen = distances.gather(1, quantized.codes.reshape(-1, 1)).squeeze(1)
    assert torch.allclose(chosen, best, atol=1e-5)
    assert torch.allclose(quantized.straight_through, quantized.quantized, atol=1e-6)
    quantized.straight_through.sum().backward()
    assert torch.equal(encoding.grad, torch.ones_like(encoding))


def test_five_steps_lower_the_loss_and_every_parameter_gets_gradient() -> None:
    torch.manual_seed(0)
    model = tiny_spec().build()
    image = torch.randn(2, 3, 32, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(6):
        optimizer.zero_grad()
        output = model(image)
        output.loss.backward()
        if step == 0:
            missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
            assert missing == []
        optimizer.step()
        model.after_optimizer_step(output)
        losses.append(float(output.loss.detach()))
    assert losses[-1] < losses[0]


def _save_tiny_taesd(folder, width: int = 8):
    from diffusers import AutoencoderTiny

    torch.manual_seed(1)
    taesd = AutoencoderTiny(encoder_block_out_channels=(width,) * 4, decoder_block_out_channels=(width,) * 4)
    taesd.save_pretrained(folder)
    return taesd.eval()


def test_pretrained_taesd_layers_compute_what_diffusers_computes(tmp_path) -> None:
    taesd = _save_tiny_taesd(tmp_path / "taesd")
    model = tiny_spec(pretrained=tmp_path / "taesd").build()
    pixels = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ours = model.encoder.layers(pixels)
        theirs = taesd.encoder.layers[:14](pixels)
        assert torch.allclose(ours, theirs, atol=1e-5)
        hidden = torch.randn(1, 8, 2, 2)
        assert torch.allclose(model.decoder.layers(hidden), taesd.decoder.layers[2:](hidden), atol=1e-5)
    # Frozen as the reference: encoder layers 0..10 fixed, everything else trainable.
    for index, layer in enumerate(model.encoder.layers):
        for parameter in layer.parameters():
            assert parameter.requires_grad == (index >= FROZEN_ENCODER_LAYERS)
    output = model(torch.randn(2, 3, 32, 32))
    output.loss.backward()
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == parameter.requires_grad, name
    # A single safetensors file works as well as the folder; freezing can be switched off.
    single = tiny_spec(
        pretrained=tmp_path / "taesd" / "diffusion_pytorch_model.safetensors", freeze_pretrained=False
    )
    assert all(p.requires_grad for p in single.build().parameters())


def test_pretrained_taesd_errors_say_what_to_do(tmp_path) -> None:
    with pytest.raises(TAESDWeightsError, match="huggingface-cli download madebyollin/taesd"):
        tiny_spec(pretrained=tmp_path / "nowhere").build()
    _save_tiny_taesd(tmp_path / "taesd", width=8)
    with pytest.raises(TAESDWeightsError, match="width=64"):
        tiny_spec(width=16, pretrained=tmp_path / "taesd").build()


@pytest.mark.skipif(importlib.util.find_spec("lpips") is not None, reason="lpips is installed here")
def test_lpips_without_the_package_is_a_clear_error() -> None:
    with pytest.raises(LPIPSUnavailableError, match="pip install lpips"):
        tiny_spec(lpips_weight=1.0).build()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("code_dim", 0, "code_dim must be positive"),
        ("input_scale", 1.5, "input_scale must be in"),
        ("commit_weight", -1.0, "commit_weight must be"),
    ],
)
def test_spec_rejects_bad_values(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiny_spec(**{field: value})


def test_latent_grid_rejects_sizes_the_encoder_cannot_divide() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        latent_grid(36, tiny_spec())


# --- stage 1 as the reference trained it (issue 24 item 7) -------------------------------------------

REFERENCE_FREEZE = r"m\.encode\.1\.(?:[0-9]|10)\..*"
"""``freez`` of the reference's vqvae-*-c256/c4.py: ``m.encode.1`` is its TAESD encoder (our ``encoder.layers``)."""


def test_the_frozen_layers_are_the_ones_the_reference_regex_freezes() -> None:
    frozen = [index for index in range(14) if re.fullmatch(REFERENCE_FREEZE, f"m.encode.1.{index}.weight")]
    assert frozen == list(range(FROZEN_ENCODER_LAYERS))


def test_reference_vqvae_is_the_reference_recipe() -> None:
    for variant, code_dim, lpips_weight in (("c256", 256, 0.0), ("c4", 4, 1.0)):
        spec = reference_vqvae(variant)
        assert (spec.code_dim, spec.codebook_size, spec.width, spec.input_scale) == (code_dim, 4096, 64, 0.5)
        assert (spec.align_weight, spec.commit_weight, spec.lpips_weight) == (1.0, 0.25, lpips_weight)
        assert (spec.pretrained, spec.freeze_pretrained, spec.loss_units) == (
            Path(TAESD_REPO),
            True,
            "imagenet",
        )


def test_loss_units_weigh_the_same_pixel_error_4_9_times_more_in_imagenet_units() -> None:
    decoded, target = torch.full((1, 3, 2, 2), 0.6), torch.full((1, 3, 2, 2), 0.5)
    signed = torch.nn.functional.mse_loss(in_loss_units(decoded, "signed"), in_loss_units(target, "signed"))
    imagenet = torch.nn.functional.mse_loss(
        in_loss_units(decoded, "imagenet"), in_loss_units(target, "imagenet")
    )
    # By hand: an error of 0.1 in [0, 1] is 0.2 in [−1, 1] (MSE 0.04) and 0.1 / std_c in ImageNet units.
    assert float(signed) == pytest.approx(0.04)
    by_hand = sum(0.01 / std**2 for std in IMAGENET_STD) / 3
    assert float(imagenet) == pytest.approx(by_hand, rel=1e-5)
    assert float(imagenet / signed) == pytest.approx(4.895, abs=1e-3)  # mean(1 / std²) / 4


def test_the_reconstruction_term_is_computed_in_the_spec_units() -> None:
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    recon = {}
    for units in ("signed", "imagenet"):
        torch.manual_seed(0)
        model = tiny_spec(loss_units=units).build()
        output = model(image)
        decoded, target = imagenet_to_unit(output.reconstruction), model.prepare(image)
        expected = torch.nn.functional.mse_loss(in_loss_units(decoded, units), in_loss_units(target, units))
        assert torch.allclose(output.terms["recon"], expected, rtol=1e-4), units
        recon[units] = float(output.terms["recon"])
    # Same weights, same error: the ratio is a mean of the per-channel factors 1 / (4 std_c²).
    factors = [1 / (4 * std**2) for std in IMAGENET_STD]
    assert min(factors) - 1e-4 <= recon["imagenet"] / recon["signed"] <= max(factors) + 1e-4


def test_loss_units_reject_other_names() -> None:
    with pytest.raises(ValueError, match="unknown loss_units 'pixels': choose one of 'imagenet', 'signed'"):
        tiny_spec(loss_units="pixels")


def test_frozen_taesd_layers_get_no_gradient_and_do_not_change_in_a_step(tmp_path) -> None:
    _save_tiny_taesd(tmp_path / "taesd")
    torch.manual_seed(0)
    model = tiny_spec(pretrained=tmp_path / "taesd").build()
    before = {name: value.clone() for name, value in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)  # every parameter, as the reference
    model(torch.randn(2, 3, 32, 32)).loss.backward()
    frozen_prefixes = tuple(f"encoder.layers.{index}." for index in range(FROZEN_ENCODER_LAYERS))
    names = [name for name, _ in model.named_parameters()]
    assert any(name.startswith(frozen_prefixes) for name in names)
    assert any(name.startswith("encoder.layers.13.") for name in names)
    for name, parameter in model.named_parameters():
        frozen = name.startswith(frozen_prefixes)
        assert parameter.requires_grad != frozen, name
        assert (parameter.grad is None) == frozen, name
    optimizer.step()
    for name, parameter in model.named_parameters():
        changed = not torch.equal(parameter.detach(), before[name])
        assert changed != name.startswith(frozen_prefixes), name


def _fake_hub_cache(cache: Path, weights: Path) -> None:
    """huggingface_hub's cache after downloading TAESD_REPO's weight file (refs/main → a snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{TAESD_REPO.replace('/', '--')}"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / TAESD_FILE).write_bytes(weights.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache that is only read, never downloaded into."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_taesd_weights_come_from_the_hub_cache_by_repo_id(tmp_path, offline_hub) -> None:
    taesd = _save_tiny_taesd(tmp_path / "taesd")
    _fake_hub_cache(offline_hub, tmp_path / "taesd" / TAESD_FILE)
    model = tiny_spec(pretrained=TAESD_REPO).build()
    pixels = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model.encoder.layers(pixels), taesd.encoder.layers[:14](pixels), atol=1e-5)
    assert model.encoder.frozen_layers == FROZEN_ENCODER_LAYERS


def test_taesd_missing_from_the_hub_cache_is_one_line_naming_file_and_flags(offline_hub) -> None:
    with pytest.raises(TAESDWeightsError) as caught:
        tiny_spec(pretrained=TAESD_REPO).build()
    message = str(caught.value)
    assert "\n" not in message
    for part in (TAESD_FILE, "huggingface-cli download madebyollin/taesd", "--model.pretrained None"):
        assert part in message


def test_the_paper_vqvae_command_without_taesd_weights_prints_one_line(
    tmp_path, offline_hub, monkeypatch, capsys
) -> None:
    from metaslot.cli.train import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "vqvae", "--data", "voc", "--device", "cpu"])
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    # Issue 28 item 11: the TAESD weights are listed with everything else the run lacks (here the data).
    assert len(lines) == 1 and lines[0].startswith("train: error: ") and "TAESD weights" in lines[0], lines
    assert "madebyollin/taesd" in lines[0] and "--model.pretrained None" in lines[0]


@pytest.mark.skipif(importlib.util.find_spec("lpips") is not None, reason="lpips is installed here")
def test_the_paper_c4_command_without_lpips_prints_one_line_naming_the_flag(
    tmp_path, monkeypatch, capsys
) -> None:
    from metaslot.cli.train import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["--model", "vqvae", "--data", "voc", "--vqvae-variant", "c4", "--model.pretrained", "None"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "pip install lpips" in lines[0] and "--model.lpips-weight 0" in lines[0]


def test_the_reference_recipe_at_tiny_shape_lowers_the_loss(tmp_path) -> None:
    _save_tiny_taesd(tmp_path / "taesd")
    torch.manual_seed(0)
    model = tiny_spec(pretrained=tmp_path / "taesd", loss_units="imagenet").build()
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        output = model(image)
        output.loss.backward()
        optimizer.step()
        losses.append(float(output.loss.detach()))
    assert losses[-1] < losses[0]


def test_a_training_run_from_taesd_keeps_the_frozen_layers_as_loaded(tmp_path) -> None:
    from safetensors.torch import load_file

    from metaslot.cli.train import main

    taesd = _save_tiny_taesd(tmp_path / "taesd")
    runs = tmp_path / "runs"
    main([
        "--model", "vqvae", "--data", "shapes", "--runs-dir", str(runs), "--name", "taesd",
        "--device", "cpu", "--no-progress",
        "--data.resolution", "32", "--data.train-size", "8", "--data.val-size", "4",
        "--model.width", "8", "--model.codebook-size", "16", "--model.input-scale", "1.0",
        "--model.pretrained", str(tmp_path / "taesd"), "--model.loss-units", "imagenet",
        "--loop.steps", "3", "--loop.batch-size", "2", "--loop.val-every", "3", "--loop.val-batches", "1",
        "--loop.checkpoint-every", "3", "--loop.num-workers", "0", "--no-evaluate-at-end",
    ])  # fmt: skip
    trained = load_file(str(runs / "taesd" / "checkpoints" / "step-0000003.safetensors"))
    for index, layer in enumerate(taesd.encoder.layers[:14]):
        for name, loaded in layer.state_dict().items():
            same = torch.equal(trained[f"encoder.layers.{index}.{name}"], loaded.float())
            assert same == (index < FROZEN_ENCODER_LAYERS), (index, name)
