"""Reference ``.pth`` files in: our tiny pipeline → a state dict in the reference's layout → load → the
same outputs, per pipeline family and aggregator, and the checks a user's file meets on the way in.

The largest output difference per family is printed (``-s`` shows it); the tests require exact
equality, since the same weights run through the same modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec
from metaslot.models.decoders import MLPDecoderSpec
from metaslot.models.decoders.autoregressive import ARDecoderSpec
from metaslot.models.decoders.diffusion import DiffusionDecoderSpec
from metaslot.models.encoders import DinoViTSpec
from metaslot.models.pipelines import DinosaurSpec, SlateSpec, SlotDiffusionSpec
from metaslot.models.pipelines.vqvae import VQVAESpec
from metaslot.pretrained import reference_layout as layout
from metaslot.pretrained.building import build_for_weights
from metaslot.pretrained.reference import as_reference_ran, load_reference_state, read_reference_file

SIDE = 32
VIT = DinoViTSpec(model_name="test_vit", pretrained=False, image_size=SIDE)


def _aggregator(kind: str, width: int) -> MetaSlotSpec | SlotAttentionSpec:
    if kind == "slot-attention":
        # As the presets' baselines: BO-QSA and MLP dropout 0.01 (which moves the reference's ffn.2 to ffn.3).
        return SlotAttentionSpec(
            num_slots=3, slot_dim=width, feature_dim=width, num_iterations=2, bilevel=True, mlp_dropout=0.01
        )
    return MetaSlotSpec(
        num_slots=3, slot_dim=width, feature_dim=width, num_iterations=2, codebook_size=4, buffer_capacity=12
    )


def _vqvae(code_dim: int) -> VQVAESpec:
    return VQVAESpec(code_dim=code_dim, codebook_size=16, width=8, input_scale=1.0)


def tiny_spec(family: str, aggregator: str = "metaslot") -> object:
    """A few thousand weights of each family, shaped like its preset (ViT, projection, decoder)."""
    if family == "dinosaur":
        return DinosaurSpec(
            encoder=VIT,
            aggregator=_aggregator(aggregator, 16),
            decoder=MLPDecoderSpec(hidden_channels=(16, 16)),
            image_size=SIDE,
        )
    if family == "slate":
        return SlateSpec(
            encoder=VIT,
            aggregator=_aggregator(aggregator, 16),
            vqvae=_vqvae(16),
            decoder=ARDecoderSpec(width=16, num_layers=2, num_heads=2, feedforward=32),
            image_size=SIDE,
        )
    if family == "slotdiffusion":
        return SlotDiffusionSpec(
            encoder=VIT,
            aggregator=_aggregator(aggregator, 16),
            vqvae=_vqvae(4),
            decoder=DiffusionDecoderSpec(
                norm_groups=4, block_channels=(8, 16), layers_per_block=1, attention_head_dim=2, dropout=0.0
            ),
            image_size=SIDE,
        )
    return _vqvae(256 if family == "vqvae-c256" else 4)


def _image(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(seed))


def _outputs(pipeline: torch.nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        output = (
            pipeline(image, generator=torch.Generator().manual_seed(1))
            if not isinstance(pipeline.spec, VQVAESpec)
            else pipeline(image)
        )
    named = {"loss": output.loss}
    for field in ("slots", "keep", "masks", "reconstruction"):
        value = getattr(output, field)
        if value is not None:
            named[field] = value
    return named


def _largest_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    assert first.keys() == second.keys()
    return max((first[name].double() - second[name].double()).abs().max().item() for name in first)


def _ours(spec: object, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    pipeline = build_for_weights(spec)
    with torch.no_grad():  # every weight non-trivial, so a swapped or skipped tensor shows
        for tensor in pipeline.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn_like(tensor))
    return pipeline.eval()


def _save(state: dict[str, torch.Tensor], path: Path, wrapped: bool = False) -> Path:
    torch.save({"state_dict": state} if wrapped else state, path)
    return path


FAMILIES = [
    ("dinosaur", "metaslot"),
    ("dinosaur", "slot-attention"),
    ("slate", "metaslot"),
    ("slate", "slot-attention"),
    ("slotdiffusion", "metaslot"),
    ("slotdiffusion", "slot-attention"),
    ("vqvae-c256", None),
    ("vqvae-c4", None),
]


@pytest.mark.parametrize(("family", "aggregator"), FAMILIES)
def test_round_trip_through_the_reference_layout_gives_identical_outputs(
    tmp_path: Path, family: str, aggregator: str | None
) -> None:
    spec = as_reference_ran(tiny_spec(family, aggregator or "metaslot"))
    ours = _ours(spec)
    state = layout.to_reference_layout(ours, spec)
    assert all(key.startswith(layout.PREFIX) for key in state)
    if aggregator == "slot-attention":  # the reference's MLP puts a Dropout at index 2
        assert "m.aggregat.ffn.3.weight" in state and "m.aggregat.ffn.2.weight" not in state
    file = read_reference_file(_save(state, tmp_path / "model.pth", wrapped=family == "dinosaur"))
    loaded = load_reference_state(file, as_reference_ran(spec, renders=False))
    assert not loaded.training
    image = _image()
    difference = _largest_difference(_outputs(ours, image), _outputs(loaded, image))
    print(f"largest output difference, {family} ({aggregator}): {difference}")
    assert difference == 0.0


@pytest.mark.parametrize("family", ["slate", "slotdiffusion"])
def test_stage_one_file_brings_the_decoder_so_the_model_renders(tmp_path: Path, family: str) -> None:
    spec = as_reference_ran(tiny_spec(family))
    ours = _ours(spec)
    stage_two = read_reference_file(_save(layout.to_reference_layout(ours, spec), tmp_path / "stage2.pth"))
    without = load_reference_state(stage_two, as_reference_ran(spec, renders=False))
    assert not without.renders
    with pytest.raises(Exception, match="stage-1 VQ-VAE file"):
        without.reconstruct(_image())
    vqvae_spec = spec.vqvae
    stage_one_state = layout.to_reference_layout(ours.vqvae, vqvae_spec)
    stage_one = read_reference_file(_save(stage_one_state, tmp_path / "stage1.pth"))
    loaded = load_reference_state(stage_two, spec, stage_one)
    assert loaded.renders
    image = _image()
    options = {"num_steps": 2} if family == "slotdiffusion" else {}
    with torch.no_grad():
        expected = ours.reconstruct(image, generator=torch.Generator().manual_seed(3), **options)
        got = loaded.reconstruct(image, generator=torch.Generator().manual_seed(3), **options)
    difference = (expected - got).abs().max().item()
    print(f"largest reconstruction difference, {family} with its stage-1 file: {difference}")
    assert difference == 0.0


def test_a_stage_one_file_of_another_run_is_refused(tmp_path: Path) -> None:
    spec = as_reference_ran(tiny_spec("slate"))
    ours = _ours(spec)
    stage_two = read_reference_file(_save(layout.to_reference_layout(ours, spec), tmp_path / "stage2.pth"))
    other = _ours(spec.vqvae, seed=5)
    stage_one = read_reference_file(
        _save(layout.to_reference_layout(other, spec.vqvae), tmp_path / "other.pth")
    )
    with pytest.raises(Exception, match="is not the VQ-VAE the stage-2 file was trained on"):
        load_reference_state(stage_two, spec, stage_one)


def test_metaslot_state_comes_in_and_the_upkeep_starts_fresh(tmp_path: Path) -> None:
    spec = as_reference_ran(tiny_spec("dinosaur"))
    ours = _ours(spec)
    state = layout.to_reference_layout(ours, spec)
    state[layout.CLUSTER_PROBABILITY] = torch.tensor(1.0)
    state["m.aggregat.vq.buffer_ptr"] = torch.tensor(5)
    loaded = load_reference_state(read_reference_file(_save(state, tmp_path / "m.pth")), spec)
    codebook = loaded.aggregator.codebook_state
    assert torch.equal(codebook.codebook, state["m.aggregat.vq.codebook.templat.weight"])
    assert torch.equal(codebook.buffer_vectors, state["m.aggregat.vq.latent_buffer"])
    assert int(codebook.buffer_pointer) == 5
    assert int(codebook.buffer_fill) == spec.aggregator.buffer_capacity
    assert int(codebook.usage_counters.abs().sum()) == 0
    assert bool(codebook.kmeans_done)
    # clust_prob 1.0 is the step from which start · growth^step reaches 1 (0.02 · 1.001^3913 < 1).
    assert int(codebook.step_counter) == 3913 + 1
    assert not loaded.honour_keep_downstream


def test_alpha_other_than_zero_is_refused(tmp_path: Path) -> None:
    spec = as_reference_ran(tiny_spec("dinosaur"))
    state = layout.to_reference_layout(_ours(spec), spec)
    state[layout.VQ_ALPHA] = torch.tensor(0.5)
    with pytest.raises(Exception, match="alpha = 0.5"):
        load_reference_state(read_reference_file(_save(state, tmp_path / "a.pth")), spec)
