"""Presets reproduce reference.md §2; configs survive the JSON round trip; overrides are plain flags."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import numpy
import pytest
from PIL import Image

from metaslot.cli.train import parse_train_arguments
from metaslot.data.records import collate
from metaslot.ops import prune_probability
from metaslot.train.config import config_from_json, config_to_json
from metaslot.train.presets import DATASETS, MODELS, PRESETS, preset
from tests.support.cli_args import loop_args

PAPER = {"voc": 6, "coco": 7, "clevrtex": 11}


@pytest.mark.parametrize("data", sorted(PAPER))
@pytest.mark.parametrize("model", ["dinosaur", "slate", "slotdiffusion"])
def test_paper_presets_match_the_reference_configs(model: str, data: str) -> None:
    config = preset(model, data)
    aggregator = config.model.aggregator
    assert aggregator.num_slots == PAPER[data]
    assert (aggregator.slot_dim, aggregator.codebook_size, aggregator.num_iterations) == (256, 512, 3)
    assert aggregator.buffer_capacity == 4 * 32 * PAPER[data]
    assert (config.loop.steps, config.loop.batch_size, config.loop.val_every) == (50_000, 32, 1_250)
    assert (config.optim.learning_rate, config.optim.betas, config.optim.eps, config.optim.weight_decay) == (
        2e-4,
        (0.9, 0.999),
        1e-8,
        0.0,
    )
    assert (config.optim.clip_norm, config.optim.clip_norm_type) == (1.0, "l2")
    assert (config.schedule.warmup_fraction, config.schedule.final_learning_rate) == (0.05, 0.0)
    assert config.model.image_size == 256 and config.data.resolution == 256


@pytest.mark.parametrize("variant", ["c256", "c4"])
def test_vqvae_presets_match_the_reference_configs(variant: str) -> None:
    config = preset("vqvae", "voc", vqvae_variant=variant)
    assert (config.loop.steps, config.loop.batch_size, config.optim.learning_rate) == (30_000, 64, 2e-3)
    assert config.model.codebook_size == 4096 and config.model.code_dim == (256 if variant == "c256" else 4)
    assert (config.loop.best_metric, config.loop.best_mode) == ("loss", "min")


@pytest.mark.parametrize("variant", ["c256", "c4"])
@pytest.mark.parametrize("data", ["voc", "coco", "clevrtex", "movi_d"])
def test_vqvae_paper_presets_train_stage_one_as_the_reference(data: str, variant: str) -> None:
    """vqvae-*-c256/c4.py: TAESD start, encoder layers 0..10 frozen, losses in ImageNet units, LPIPS(alex)
    at weight 1 for c4; recon 1, align 1, commit 0.25; 30k steps, batch 64, Adam 2e-3, clip 1, cosine to 0."""
    from metaslot.models.taesd import FROZEN_ENCODER_LAYERS

    config = preset("vqvae", data, vqvae_variant=variant)
    model = config.model
    assert (model.pretrained, model.freeze_pretrained, FROZEN_ENCODER_LAYERS) == (
        Path("madebyollin/taesd"),
        True,
        11,
    )
    assert (model.loss_units, model.lpips_weight) == ("imagenet", 1.0 if variant == "c4" else 0.0)
    assert (model.code_dim, model.codebook_size, model.width, model.input_scale) == (
        4 if variant == "c4" else 256,
        4096,
        64,
        0.5,
    )
    assert (model.align_weight, model.commit_weight) == (1.0, 0.25)
    assert (config.loop.steps, config.loop.batch_size, config.optim.learning_rate) == (30_000, 64, 2e-3)
    assert (config.optim.clip_norm, config.optim.clip_norm_type) == (1.0, "l2")
    assert (config.schedule.warmup_fraction, config.schedule.final_learning_rate) == (0.05, 0.0)


@pytest.mark.parametrize("variant", ["c256", "c4"])
def test_vqvae_shapes_preset_keeps_random_weights_and_signed_units(variant: str) -> None:
    model = preset("vqvae", "shapes", vqvae_variant=variant).model
    assert (model.pretrained, model.lpips_weight, model.loss_units) == (None, 0.0, "signed")


def test_slot_attention_selector_keeps_widths() -> None:
    config = preset("dinosaur", "coco", "slot-attention")
    assert type(config.model.aggregator).__name__ == "SlotAttentionSpec"
    assert (config.model.aggregator.num_slots, config.model.aggregator.slot_dim) == (7, 256)
    assert config.name == "dinosaur-coco-sa"


@pytest.mark.parametrize("data", ["voc", "coco", "clevrtex", "movi_d"])
@pytest.mark.parametrize("model", ["dinosaur", "slate", "slotdiffusion"])
def test_slot_attention_on_paper_presets_is_the_table_1_baseline(model: str, data: str) -> None:
    """The parent framework's baseline configs: bi-level, MLP dropout 0.01, cosine to lr/1000."""
    metaslot_config = preset(model, data)
    config = preset(model, data, "slot-attention")
    aggregator = config.model.aggregator
    assert type(aggregator).__name__ == "SlotAttentionSpec"
    assert aggregator.bilevel and aggregator.mlp_dropout == pytest.approx(0.01)
    assert config.schedule.final_learning_rate == pytest.approx(config.optim.learning_rate / 1000)
    # MetaSlot's own configs decay to 0 and have no dropout.
    assert metaslot_config.schedule.final_learning_rate == 0.0
    assert metaslot_config.model.aggregator.mlp_dropout == 0.0


@pytest.mark.parametrize(
    ("model", "data"), [("autoencoder", "shapes"), ("dinosaur", "shapes"), ("autoencoder", "voc")]
)
def test_slot_attention_elsewhere_only_swaps_the_aggregator(model: str, data: str) -> None:
    metaslot_config = preset(model, data)
    config = preset(model, data, "slot-attention")
    aggregator = config.model.aggregator
    assert not aggregator.bilevel and aggregator.mlp_dropout == 0.0
    assert config.schedule == metaslot_config.schedule


def test_the_default_job_prunes_for_certain_from_a_sixth_of_its_run() -> None:
    """The shapes preset trains mostly on the path evaluation takes (docs/results.md, the prune ramp);
    the paper presets keep the reference's slow ramp."""
    config = preset("autoencoder", "shapes")
    aggregator = config.model.aggregator
    certain_from = config.loop.steps // 6
    assert prune_probability(certain_from - 10, aggregator.prune_start, aggregator.prune_growth) < 1.0
    assert prune_probability(certain_from + 1, aggregator.prune_start, aggregator.prune_growth) == 1.0
    assert preset("dinosaur", "voc").model.aggregator.prune_growth == pytest.approx(1.001)


@pytest.mark.parametrize("data", [d for d in DATASETS if d != "movi_d"])
@pytest.mark.parametrize("model", MODELS)
def test_every_preset_round_trips_through_json(model: str, data: str) -> None:
    config = preset(model, data)
    assert config_from_json(config_to_json(config)) == config


def test_overrides_are_plain_flags_in_any_order(tmp_path: Path) -> None:
    config, invocation = parse_train_arguments(
        [
            "--model.aggregator.num-slots",
            "9",
            "--data",
            "coco",
            "--loop.steps",
            "10",
            "--model",
            "slate",
            "--optim.clip-norm",
            "None",
            "--model.encoder.image-size",
            "112",
            "--evaluation.average",
            "batch",
        ]
    )
    assert config.model.aggregator.num_slots == 9 and config.loop.steps == 10
    assert config.evaluation.average == "batch" and preset("slate", "coco").evaluation.average == "image"
    assert config.optim.clip_norm is None and config.model.encoder.image_size == 112
    assert type(config.data).__name__ == "COCOSpec"
    assert invocation["selection"] == {
        "model": "slate",
        "data": "coco",
        "aggregator": "metaslot",
        "vqvae_variant": "c256",
    }


def test_help_after_selectors_shows_the_preset_values() -> None:
    output = io.StringIO()
    with redirect_stdout(output), pytest.raises(SystemExit) as exit_info:
        parse_train_arguments(["--model", "dinosaur", "--data", "clevrtex", "--help"])
    assert exit_info.value.code == 0
    text = output.getvalue()
    assert "--model.aggregator.num-slots" in text and "(default: 11)" in text
    assert "(default: 1408)" in text  # ring buffer 4·32·11
    assert "--model {autoencoder,dinosaur,vqvae,slate,slotdiffusion,spot,ftdinosaur-small-224," in text
    assert "--data {shapes,voc,coco,clevrtex,movi_d}" in text


def test_the_registry_holds_one_preset_per_model_and_data() -> None:
    """Every --model × --data pair has exactly one preset function, found without name lookups."""
    assert set(PRESETS) == {(model, data) for model in MODELS for data in DATASETS}
    assert all(function.__name__ == f"{model}_{data}" for (model, data), function in PRESETS.items())
    assert preset("slate", "coco").name == PRESETS[("slate", "coco")]().name


def _png(array: numpy.ndarray) -> bytes:
    encoded = io.BytesIO()
    Image.fromarray(array).save(encoded, format="PNG")
    return encoded.getvalue()


def _write_voc(root: Path, count: int = 4) -> None:
    from metaslot.data.lmdb_io import write_records

    generator = numpy.random.default_rng(0)
    for split in ("train", "val"):
        records = []
        for _ in range(count):
            image = generator.integers(0, 256, size=(40, 48, 3), dtype=numpy.uint8)
            segment = numpy.zeros((40, 48), dtype=numpy.uint8)
            segment[5:20, 8:30] = 1
            segment[22:35, 20:44] = 2
            records.append({"image": _png(image), "segment": _png(segment)})
        write_records(root / "voc" / f"{split}.lmdb", records)


def test_slate_voc_parses_and_builds_against_a_tiny_lmdb(tmp_path: Path) -> None:
    _write_voc(tmp_path / "data")
    config, _ = parse_train_arguments(
        [
            "--model",
            "slate",
            "--data",
            "voc",
            "--data.root",
            str(tmp_path / "data"),
            "--data.resolution",
            "32",
            "--model.image-size",
            "32",
            "--model.encoder.model-name",
            "vit_tiny_patch16_224",
            "--model.encoder.no-pretrained",
            "--model.encoder.image-size",
            "32",
            "--model.aggregator.slot-dim",
            "16",
            "--model.aggregator.feature-dim",
            "16",
            "--model.aggregator.mlp-hidden-dim",
            "32",
            "--model.vqvae.width",
            "8",
            "--model.vqvae.codebook-size",
            "16",
            "--model.vqvae.code-dim",
            "8",
            "--model.vqvae.input-scale",
            "1.0",
            "--model.decoder.width",
            "16",
            "--model.decoder.num-layers",
            "1",
            "--model.decoder.num-heads",
            "2",
            "--model.decoder.feedforward",
            "32",
            *loop_args(tmp_path),
        ]
    )
    assert config.model.aggregator.num_slots == 6 and config.model.aggregator.buffer_capacity == 768
    pipeline = config.model.build()
    dataset = config.data.build("train", True)
    batch = collate([dataset[0], dataset[1]])
    output = pipeline(batch.image)
    assert output.masks is not None and output.masks.shape == (2, 6, 32, 32)
    assert config_from_json(config_to_json(config)) == config


@pytest.mark.parametrize("data", sorted(PAPER))
def test_spot_presets_match_the_reference_spot_config(data: str) -> None:
    """``spot_r-coco.py`` (``spec/spot.md``): 100k steps of 32, 2e-4 with 5k warm-up then cosine to 2e-7,
    L∞ clipping at 0.3, fp16 with a scaler on GPU; ViT-S/14-reg4 without its norm, MLP 384→384→384."""
    config = preset("spot", data)
    model = config.model
    assert (config.loop.steps, config.loop.batch_size) == (100_000, 32)
    assert int(config.loop.steps * config.schedule.warmup_fraction) == 5_000
    assert (config.optim.learning_rate, config.schedule.final_learning_rate) == (2e-4, 2e-7)
    assert (config.optim.clip_norm, config.optim.clip_norm_type, config.precision) == (
        0.3,
        "inf",
        "auto-fp16",
    )
    assert (
        model.encoder.model_name == "vit_small_patch14_reg4_dinov2.lvd142m" and not model.encoder.final_norm
    )
    assert (model.encoder.image_size, model.image_size, model.projection.hidden_multiplier) == (224, 256, 1)
    aggregator = model.aggregator
    assert (aggregator.num_slots, aggregator.slot_dim, aggregator.feature_dim) == (PAPER[data], 256, 384)
    assert (aggregator.codebook_size, aggregator.buffer_capacity) == (512, 4 * 32 * PAPER[data])
    assert aggregator.initializer == "shared"
    decoder = model.decoder
    assert (decoder.num_layers, decoder.num_heads, decoder.feedforward_multiplier) == (4, 4, 4)
    assert decoder.train_orders == "random"
    assert config.evaluation.protocol_settings()[0].token_orders == "first"  # the reference's perm_v


def test_spot_coco_has_the_reference_trainable_tensors() -> None:
    """The trainable tensors of ``spot_r-coco.py`` as built (tests/fixtures, from the reference checkpoint
    listing): the same 69 shapes; only the start tokens are stored (9, 1, c) here, (9, 1, 1, c) there."""
    import json
    import math

    import attrs

    listing = json.loads((Path(__file__).parents[1] / "fixtures" / "spot_r-coco@c602fa4.json").read_text())
    reference = sorted(
        tuple(shape) if len(shape) != 4 else (shape[0], 1, shape[3])
        for _, shape, _, kind, trainable in listing["entries"]
        if kind == "parameter" and trainable
    )
    config = preset("spot", "coco")
    model = attrs.evolve(config.model, encoder=attrs.evolve(config.model.encoder, pretrained=False)).build()
    ours = sorted(tuple(p.shape) for p in model.parameters() if p.requires_grad)
    assert ours == reference
    assert sum(math.prod(shape) for shape in ours) == 11_304_832


def test_spot_with_slot_attention_and_spot_stage_two_presets() -> None:
    """Slot Attention keeps SPOT's shared initialiser (plus the paper presets' baseline settings); stage 2
    (SPOT's train_spot_2.py) has learnt queries, bi-level, the last 4 ViT blocks trained, same schedule."""
    baseline = preset("spot", "coco", "slot-attention")
    aggregator = baseline.model.aggregator
    assert type(aggregator).__name__ == "SlotAttentionSpec" and baseline.name == "spot-coco-sa"
    assert aggregator.initializer == "shared" and aggregator.bilevel
    student = preset("spot", "coco", "slot-attention", teacher=Path("runs/spot-coco-sa"))
    model = student.model
    assert student.name == "spot-coco-sa-stage2" and student.teacher == Path("runs/spot-coco-sa")
    assert model.aggregator.initializer == "learnt" and model.aggregator.bilevel
    assert model.trainable_blocks == 4 and not model.encoder.frozen and model.teacher_weight == 5e-3
    assert (student.optim, student.schedule, student.loop) == (
        baseline.optim,
        baseline.schedule,
        baseline.loop,
    )
    assert preset("spot", "voc", teacher=Path("t")).model.aggregator.initializer == "learnt"  # MetaSlot too
