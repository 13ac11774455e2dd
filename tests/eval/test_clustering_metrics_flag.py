"""``--evaluation.clustering-metrics`` adds AdaSlot's foreground scores to an evaluation, and
evaluation.json records AdaSlot's keep decision (sample or argmax)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metaslot.data.shapes import ShapesSpec
from metaslot.eval.evaluate import evaluate
from metaslot.eval.session import evaluate_and_report
from metaslot.eval_settings import EvalSpec, EvaluationSettings
from metaslot.models.aggregators import AdaSlotSpec
from metaslot.models.decoders import AttentionColourDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec
from metaslot.models.pipelines import AutoencoderSpec

EXTRA = ("fg_ami", "fg_nmi", "fg_purity", "fg_pair_precision", "fg_pair_recall", "fg_pair_f1")


def tiny_adaslot(eval_keep: str = "sample") -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoencoderSpec(
        encoder=CNNEncoderSpec(channels=(8, 8), kernel_size=1, strides=(1, 1)),
        aggregator=AdaSlotSpec(num_slots=4, slot_dim=8, feature_dim=8, eval_keep=eval_keep),
        decoder=AttentionColourDecoderSpec(),
        image_size=16,
    ).build()


def images() -> torch.utils.data.Dataset:
    return ShapesSpec(
        resolution=16, train_size=8, val_size=6, min_objects=1, max_objects=3, size_range=(0.2, 0.3)
    ).build("val")


def test_the_flag_adds_the_foreground_scores_and_changes_no_other() -> None:
    pipeline = tiny_adaslot()
    plain = evaluate(pipeline, images(), batch_size=3, device=torch.device("cpu"))
    extended = evaluate(
        pipeline, images(), batch_size=3, device=torch.device("cpu"), clustering_metrics=True
    )
    assert not set(EXTRA) & set(plain.metrics)
    assert set(extended.metrics) == set(plain.metrics) | set(EXTRA)
    for name, value in plain.metrics.items():
        assert extended.metrics[name] == pytest.approx(value), name
    for name in EXTRA:
        assert -1.0 <= extended.metrics[name] <= 1.0, name


@pytest.mark.parametrize("keep", ["sample", "argmax"])
def test_evaluation_json_records_the_keep_decision_and_the_scores(tmp_path: Path, keep: str) -> None:
    settings = EvaluationSettings(
        spec=EvalSpec(pictures=0, gallery_codes=0, clustering_metrics=True),
        batch_size=3,
        device=torch.device("cpu"),
    )
    evaluate_and_report(tiny_adaslot(keep), images(), settings, output_dir=tmp_path, echo=False)
    document = json.loads((tmp_path / "evaluation.json").read_text())
    assert document["adaslot_keep"] == keep
    assert set(EXTRA) <= set(document["metrics"])


def test_the_flag_is_an_evaluation_setting_on_the_command_line() -> None:
    from metaslot.cli.train import parse_train_arguments

    config, _ = parse_train_arguments(["--aggregator", "adaslot", "--evaluation.clustering-metrics"])
    assert config.evaluation.clustering_metrics is True
    default, _ = parse_train_arguments(["--aggregator", "adaslot"])
    assert default.evaluation.clustering_metrics is False
