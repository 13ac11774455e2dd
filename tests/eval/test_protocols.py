"""Evaluation protocols: each protocol's settings reach the metric functions (a hand case per protocol
where they differ), every setting is overridable, and evaluation.json and the table name the protocol."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from metaslot.data.records import Sample
from metaslot.errors import ConfigError
from metaslot.eval.evaluate import evaluate
from metaslot.eval.session import evaluate_and_report
from metaslot.eval_settings import EvalSpec, EvaluationSettings
from metaslot.models.records import AggregatorOutput, PipelineOutput
from metaslot.ops.metrics import masks_to_labels, mean_best_overlap
from metaslot.protocols import PROTOCOLS, resolve_protocol

# 4×4 ground truth: a 2×2 object in the middle of the background.
SEGMENT = torch.tensor([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])


class OneImage(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> Sample:
        return Sample(image=torch.zeros(3, 4, 4), segment=SEGMENT, num_objects=1)


def perfect_masks() -> torch.Tensor:
    return torch.nn.functional.one_hot(SEGMENT, 2).permute(2, 0, 1).float()[None]


def order_zero_masks() -> torch.Tensor:
    """The object's slot also takes the top-left background pixel, softly (0.6 against 0.4)."""
    masks = perfect_masks()
    masks[0, 1, 0, 0], masks[0, 0, 0, 0] = 0.6, 0.4
    return masks


class NoAggregator(nn.Module):
    codebook_size = None

    def update_codebook(self, output: AggregatorOutput) -> None:
        return None


class OrderedDecoder(nn.Module):
    """A SPOT-like pipeline: decoder masks imperfect in order 0 and perfect as the mean of all nine
    orders; the aggregator's attention is perfect. Records the orders each forward decoded."""

    def __init__(self) -> None:
        super().__init__()
        self.aggregator = NoAggregator()
        self.current = "first"
        self.decoded: list[str] = []

    @property
    def aggregator(self) -> NoAggregator:
        return self._modules["aggregator"]  # type: ignore[return-value]

    @contextlib.contextmanager
    def decoding_orders(self, orders: str) -> Iterator[None]:
        previous, self.current = self.current, orders
        try:
            yield
        finally:
            self.current = previous

    def codebook_statistics(self) -> None:
        return None

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        return None

    def forward(self, image: torch.Tensor) -> PipelineOutput:
        self.decoded.append(self.current)
        masks = order_zero_masks() if self.current == "first" else perfect_masks()
        keep = torch.ones(1, 2, dtype=torch.bool)
        return PipelineOutput(
            loss=image.sum() * 0, masks=masks, keep=keep, attention_masks=perfect_masks()
        )


def run(protocol: str, **overrides: object) -> tuple[dict[str, float], list[str]]:
    pipeline = OrderedDecoder()
    settings, _ = resolve_protocol(protocol, **overrides)
    result = evaluate(pipeline, OneImage(), batch_size=1, device=torch.device("cpu"), protocol=settings)
    return result.metrics, pipeline.decoded


def mbo_at(masks: torch.Tensor, size: int, ignore_background: bool) -> float:
    """mBO of ``masks`` against SEGMENT with both at ``size`` (masks bilinear, ground truth nearest)."""
    resized = torch.nn.functional.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False)
    labels = masks_to_labels(resized).flatten(1)
    target = torch.nn.functional.interpolate(SEGMENT[None, None].float(), size=(size, size), mode="nearest-exact")
    return float(mean_best_overlap(labels, target[:, 0].long().flatten(1), ignore_background=ignore_background))


def test_metaslot_protocol_scores_the_pipeline_masks_at_the_data_resolution_with_the_background() -> None:
    metrics, decoded = run("metaslot")
    assert decoded == ["first"]
    # Object: IoU 4/5 with slot 1; background (12 pixels): IoU 11/12 with slot 0.
    assert metrics["mbo"] == pytest.approx((4 / 5 + 11 / 12) / 2)
    assert metrics["mbo_fg"] == pytest.approx(4 / 5)
    assert PROTOCOLS["metaslot"].headline()["mBO^i"] == "mbo"


def test_spot_protocol_decodes_all_nine_orders_and_scores_objects_only() -> None:
    metrics, decoded = run("spot")
    assert decoded == ["all"]
    # The mean of the orders is perfect here; at 320 px bilinear upsampling still rounds the corners.
    assert metrics["mbo_fg"] == pytest.approx(mbo_at(perfect_masks(), 320, ignore_background=True))
    assert metrics["mbo_fg"] > mbo_at(order_zero_masks(), 320, ignore_background=True)
    assert PROTOCOLS["spot"].headline()["mBO^i"] == "mbo_fg"


def test_dinosaur_protocol_compares_decoder_masks_at_320_pixels() -> None:
    metrics, decoded = run("dinosaur")
    assert decoded == ["first"]
    expected = mbo_at(order_zero_masks(), 320, ignore_background=True)
    assert metrics["mbo_fg"] == pytest.approx(expected)
    # At 320 px the soft top-left pixel shrinks to the region where 0.6 still beats the interpolation.
    assert expected != pytest.approx(4 / 5) and expected > 4 / 5


def test_adaslot_protocol_compares_at_224_pixels() -> None:
    metrics, _ = run("adaslot")
    expected = mbo_at(order_zero_masks(), 224, ignore_background=True)
    assert metrics["mbo_fg"] == pytest.approx(expected)
    assert expected != pytest.approx(mbo_at(order_zero_masks(), 320, ignore_background=True))


def test_every_setting_can_be_overridden_on_its_own() -> None:
    attention, _ = run("metaslot", masks="attention")
    assert attention["mbo"] == pytest.approx(1.0)
    at_data_size, decoded = run("spot", mask_size=0, token_orders="first")
    assert decoded == ["first"] and at_data_size["mbo_fg"] == pytest.approx(4 / 5)
    settings, overridden = resolve_protocol("spot", mask_size=0, token_orders="all", background="segment")
    assert overridden == ["background", "mask_size"]  # "all" is already SPOT's
    assert settings.headline()["mBO^i"] == "mbo"


def test_decoder_masks_are_refused_where_the_masks_are_the_attention() -> None:
    class AttentionOnly(OrderedDecoder):
        def forward(self, image: torch.Tensor) -> PipelineOutput:
            output = super().forward(image)
            return PipelineOutput(loss=output.loss, masks=output.masks, keep=output.keep)

    settings, _ = resolve_protocol("spot")
    with pytest.raises(ConfigError, match="--evaluation.masks attention"):
        evaluate(AttentionOnly(), OneImage(), batch_size=1, device=torch.device("cpu"), protocol=settings)


def test_unknown_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown protocol 'slotdiffusion': choose one of 'metaslot', 'spot', 'dinosaur', 'adaslot'"):
        EvalSpec(protocol="slotdiffusion")


def test_evaluation_json_and_the_table_name_the_protocol(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = EvalSpec(protocol="spot", mask_size=0, pictures=0, gallery_codes=0)
    settings = EvaluationSettings(spec=spec, batch_size=1, device=torch.device("cpu"))
    evaluate_and_report(OrderedDecoder(), OneImage(), settings, output_dir=tmp_path, title="hand case")
    record = json.loads((tmp_path / "evaluation.json").read_text())["protocol"]
    assert record["name"] == "spot" and record["overridden"] == ["mask_size"]
    assert {key: record[key] for key in ("mask_size", "masks", "class_mbo", "token_orders", "background")} == {
        "mask_size": None,
        "masks": "decoder",
        "class_mbo": True,
        "token_orders": "all",
        "background": "ignored",
    }
    assert record["headline"]["mBO^i"] == {"metric": "mbo_fg", "value": 1.0}
    assert record["headline"]["mBO^c"]["value"] is None and "instance ids only" in record["headline"]["mBO^c"]["note"]
    table = capsys.readouterr().out
    assert "protocol spot: decoder masks" in table and "mBO^i (spot)" in table
