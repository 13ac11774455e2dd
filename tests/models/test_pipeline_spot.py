"""SPOT: the nine-order decoder, stage 1 training, evaluation orders, the DINOv2-with-registers encoder,
and stage 2 (teacher masks, trainable last blocks with a frozen target copy)."""

from __future__ import annotations

import pytest
import torch

from metaslot.errors import ConfigError
from metaslot.models.decoders.permuted_autoregressive import PermutedARDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec, DinoViTSpec
from metaslot.models.pipelines.spot import SPOT_VIT, SpotSpec, spot_encoder
from tests.support.pipeline_checks import (
    AGGREGATORS,
    adam_steps,
    assert_gradients_reach_exactly_the_trainable_parameters,
    outputs_with_first_slot_pruned,
    seeded_loss,
    tiny_aggregator,
)

IMAGE_SIZE = 16
TINY_VIT = DinoViTSpec(model_name="vit_tiny_patch16_224", pretrained=False, image_size=32)


def tiny_spot(kind: str, honour_keep_downstream: bool = True, **changes) -> SpotSpec:
    aggregator = tiny_aggregator(kind, feature_dim=8, honour_keep_downstream=honour_keep_downstream)
    fields = dict(
        encoder=CNNEncoderSpec(channels=(8, 8), kernel_size=3, strides=(2, 2)),
        aggregator=aggregator,
        decoder=PermutedARDecoderSpec(num_layers=2, num_heads=2, feedforward_multiplier=2),
        image_size=IMAGE_SIZE,
    )
    fields.update(changes)
    return SpotSpec(**fields)


def build(spec: SpotSpec):
    torch.manual_seed(0)
    return spec.build()


def images(batch: int = 2, size: int = IMAGE_SIZE) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_forward_shapes_and_masks_from_the_decoder_attention(kind: str) -> None:
    pipeline = build(tiny_spot(kind))
    output = pipeline(images(), generator=torch.Generator().manual_seed(0))
    assert output.loss.shape == () and torch.isfinite(output.loss)
    assert set(output.terms) == {"reconstruction"}
    assert output.reconstruction.shape == (2, 4 * 4, 8)  # the 4×4 token grid, encoder width 8
    assert output.masks.shape == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    kept = output.keep[:, :, None, None].float()
    torch.testing.assert_close((output.masks * kept).sum(dim=1), torch.ones(2, IMAGE_SIZE, IMAGE_SIZE))


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_a_few_adam_steps_lower_the_loss(kind: str) -> None:
    pipeline = build(tiny_spot(kind))
    batch = images(4)
    before = seeded_loss(pipeline, batch, seed=2)
    adam_steps(pipeline, batch, seeds=range(100, 110), lr=3e-3)
    assert seeded_loss(pipeline, batch, seed=2) < before


def test_training_draws_one_order_per_batch_and_evaluation_decodes_order_zero_or_all_nine() -> None:
    pipeline = build(tiny_spot("slot_attention"))
    pipeline.train()
    drawn = {tuple(pipeline.orders(torch.Generator().manual_seed(seed))) for seed in range(40)}
    assert all(len(orders) == 1 for orders in drawn) and len(drawn) == 9
    pipeline.eval()
    assert pipeline.orders(None) == [0]
    with pipeline.decoding_orders("all"):
        assert pipeline.orders(None) == list(range(9))
    assert pipeline.orders(None) == [0]


def test_evaluating_with_all_nine_orders_differs_from_order_zero() -> None:
    pipeline = build(tiny_spot("slot_attention"))
    adam_steps(pipeline, images(4), seeds=range(5), lr=3e-3)
    pipeline.eval()
    with torch.no_grad():
        first = pipeline(images(), generator=torch.Generator().manual_seed(3))
        with pipeline.decoding_orders("all"):
            every = pipeline(images(), generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(first.masks, every.masks)
    assert not torch.allclose(first.reconstruction, every.reconstruction)


def test_the_decoder_reads_only_earlier_tokens_in_its_order() -> None:
    """Changing the last token of an order leaves every prediction in that order unchanged."""
    pipeline = build(tiny_spot("slot_attention"))
    decoder = pipeline.decoder.eval()
    tokens = torch.randn(1, 16, 8)
    slots = torch.randn(1, 3, 8)
    for order in range(9):
        last = int(decoder.orders[order, -1])
        changed = tokens.clone()
        changed[:, last] += 10.0
        with torch.no_grad():
            plain = decoder(tokens, slots, orders=[order]).reconstruction
            moved = decoder(changed, slots, orders=[order]).reconstruction
        torch.testing.assert_close(plain, moved)


def test_the_decoder_hides_pruned_slots() -> None:
    pipeline = build(tiny_spot("metaslot"))
    pipeline.eval()
    plain, shifted = outputs_with_first_slot_pruned(pipeline, images())
    torch.testing.assert_close(plain.reconstruction, shifted.reconstruction)
    assert torch.equal(plain.masks[:, 0], torch.zeros_like(plain.masks[:, 0]))


@pytest.mark.parametrize("kind", AGGREGATORS)
def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(kind: str) -> None:
    pipeline = build(tiny_spot(kind, encoder=TINY_VIT, image_size=32))
    pipeline.train()
    pipeline(images(size=32), generator=torch.Generator().manual_seed(0)).loss.backward()
    assert_gradients_reach_exactly_the_trainable_parameters(
        pipeline, frozen_prefix="frontend.encoder.backbone."
    )


def test_the_spot_encoder_drops_the_registers_and_the_final_norm() -> None:
    """DINOv2 ViT-S/14 with 4 registers: the tokens are the last block's patch tokens, before the norm."""
    assert (spot_encoder().model_name, spot_encoder().final_norm) == (SPOT_VIT, False)
    encoder = DinoViTSpec(model_name=SPOT_VIT, pretrained=False, image_size=28, final_norm=False).build()
    assert encoder.num_prefix_tokens == 5  # class token + 4 registers
    image = images(1, size=28)
    tokens = encoder(image)
    assert tokens.shape == (1, 4, 384)
    with torch.no_grad():
        normed = encoder.backbone.forward_features(image)
    torch.testing.assert_close(encoder.backbone.norm(tokens), normed[:, 5:])


def test_stage_two_trains_the_last_blocks_and_reconstructs_a_frozen_copy() -> None:
    vit = DinoViTSpec(model_name="vit_tiny_patch16_224", pretrained=False, image_size=32, frozen=False)
    teacher = tiny_spot("slot_attention", encoder=TINY_VIT, image_size=32)
    spec = tiny_spot(
        "slot_attention",
        encoder=vit,
        image_size=32,
        trainable_blocks=4,
        teacher=teacher,
        aggregator=tiny_aggregator("slot_attention", feature_dim=8),
    )
    pipeline = build(spec)
    pipeline.train()
    assert not pipeline.teacher.training
    output = pipeline(images(size=32), generator=torch.Generator().manual_seed(0))
    assert set(output.terms) == {"reconstruction", "self_training"}
    output.loss.backward()
    trainable = {name for name, parameter in pipeline.named_parameters() if parameter.requires_grad}
    blocks = {name.split(".")[4] for name in trainable if name.startswith("frontend.encoder.backbone.")}
    assert blocks == {"8", "9", "10", "11"}  # the last 4 of 12
    assert not any(name.startswith(("teacher.", "target_encoder.")) for name in trainable)
    for name, parameter in pipeline.named_parameters():
        if parameter.requires_grad and name.startswith("frontend.encoder.backbone.blocks.11."):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # The target comes from the frozen copy, which starts as the encoder and stays put.
    before = {k: v.clone() for k, v in pipeline.target_encoder.state_dict().items()}
    adam_steps(pipeline, images(size=32), seeds=range(2), lr=1e-2)
    after = pipeline.target_encoder.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_trainable_blocks_need_an_unfrozen_vit() -> None:
    with pytest.raises(ConfigError, match="frozen=False"):
        tiny_spot("slot_attention", encoder=TINY_VIT, trainable_blocks=4)


def test_spot_with_adaslot_adds_its_sparsity_term_and_learns() -> None:
    from metaslot.models.aggregators import AdaSlotSpec

    spec = tiny_spot("slot_attention", aggregator=AdaSlotSpec(num_slots=3, slot_dim=8, feature_dim=8))
    pipeline = build(spec)
    output = pipeline(images(), generator=torch.Generator().manual_seed(0))
    assert set(output.terms) == {"reconstruction", "sparsity"}
    torch.testing.assert_close(output.loss, output.terms["reconstruction"] + output.terms["sparsity"])
    batch = images(4)
    before = seeded_loss(pipeline, batch, seed=2)
    adam_steps(pipeline, batch, seeds=range(100, 110), lr=3e-3)
    assert seeded_loss(pipeline, batch, seed=2) < before


class Squares(torch.utils.data.Dataset):
    """Four 16×16 images with one bright square each (its segment 1)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        from metaslot.data.records import Sample

        segment = torch.zeros(IMAGE_SIZE, IMAGE_SIZE, dtype=torch.long)
        top = 2 + 2 * index
        segment[top : top + 6, 3:9] = 1
        image = torch.randn(3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(index)) * 0.1
        image = image + segment.float()
        return Sample(image=image, segment=segment, num_objects=1)


def test_evaluation_in_order_zero_and_in_all_nine_orders_differ_and_both_are_recorded(tmp_path) -> None:
    import json

    from metaslot.eval.session import evaluate_and_report
    from metaslot.eval_settings import EvalSpec, EvaluationSettings

    pipeline = build(tiny_spot("slot_attention"))
    adam_steps(pipeline, images(4), seeds=range(5), lr=3e-3)
    recorded = {}
    for orders in ("first", "all"):
        spec = EvalSpec(token_orders=orders, pictures=0, gallery_codes=0)
        settings = EvaluationSettings(spec=spec, batch_size=2, device=torch.device("cpu"))
        evaluate_and_report(pipeline, Squares(), settings, output_dir=tmp_path / orders, echo=False)
        recorded[orders] = json.loads((tmp_path / orders / "evaluation.json").read_text())
    assert recorded["first"]["protocol"]["token_orders"] == "first"
    assert recorded["all"]["protocol"]["token_orders"] == "all"
    assert recorded["all"]["protocol"]["overridden"] == ["token_orders"]
    assert recorded["first"]["metrics"]["loss"] != recorded["all"]["metrics"]["loss"]


def test_the_spot_backbone_follows_the_offline_rules_of_dinov2(tmp_path, monkeypatch) -> None:
    """No weights and no hub: one error naming the file to fetch and the flag; a saved file loads, and
    the registers never reach the tokens (16×16 of them at 224)."""
    import huggingface_hub
    import safetensors.torch
    import timm

    from metaslot.models.encoders import WeightsNotFoundError
    from metaslot.models.encoders.vit import create_backbone

    if not isinstance(huggingface_hub.try_to_load_from_cache(f"timm/{SPOT_VIT}", "model.safetensors"), str):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(WeightsNotFoundError) as raised:
            create_backbone(spot_encoder())
        message = str(raised.value)
        assert f"timm/{SPOT_VIT}" in message and "model.safetensors" in message
        assert "--model.encoder.weights" in message
    torch.manual_seed(0)
    model = timm.create_model(SPOT_VIT, pretrained=False, img_size=224, num_classes=0)
    weights = tmp_path / "model.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    encoder = DinoViTSpec(model_name=SPOT_VIT, weights=weights, final_norm=False).build()
    torch.testing.assert_close(encoder.backbone.reg_token, model.reg_token)
    assert encoder(images(1, size=256)).shape == (1, 16 * 16, 384)


def test_the_self_training_term_is_the_weighted_cross_entropy_to_the_teacher_labels() -> None:
    from metaslot.ops.self_training import self_training_cross_entropy

    spec = tiny_spot("slot_attention", teacher=tiny_spot("slot_attention"), teacher_weight=0.5)
    pipeline = build(spec)
    pipeline.train()
    labels = torch.tensor([[0, 1, 2, 0] * 4, [2, 2, 1, 1] * 4])
    pipeline.teacher_labels = lambda image, generator=None: labels  # the teacher's masks, fixed
    output = pipeline(images(), generator=torch.Generator().manual_seed(0))
    expected = 0.5 * self_training_cross_entropy(output.aggregator.attention, labels)
    torch.testing.assert_close(output.terms["self_training"], expected.detach())
    torch.testing.assert_close(output.loss, output.terms["reconstruction"] + output.terms["self_training"])
    pipeline.eval()
    assert "self_training" not in pipeline(images(), generator=torch.Generator().manual_seed(0)).terms
