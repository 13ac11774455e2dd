"""The loop asks the evaluation it is given: validation when due, the best weights by its metric, one
final report; training and evaluation meet only through that interface."""

from __future__ import annotations

import json
from pathlib import Path

from metaslot.eval.session import SplitEvaluation, Validation
from metaslot.eval_settings import Evaluation
from metaslot.train.loop import train
from tests.support.helpers import tiny_config


class ScriptedEvaluation:
    """Returns fg_ari from a script, one value per validation, and records every call."""

    def __init__(self, scores: list[float]) -> None:
        self.scores = list(scores)
        self.calls: list[tuple[str, dict]] = []

    def validate(self, pipeline, dataset, settings) -> Validation:
        self.calls.append(("validate", {"max_batches": settings.spec.max_batches}))
        return Validation(metrics={"fg_ari": self.scores.pop(0), "loss": 1.0})

    def report(self, pipeline, dataset, settings, **options) -> dict[str, float]:
        self.calls.append(("report", options))
        return {"fg_ari": -1.0}


def test_validation_best_checkpoint_and_final_report_come_from_the_evaluation(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, steps=6, val_every=2, checkpoint_every=3)
    evaluation = ScriptedEvaluation([0.1, 0.7, 0.4])
    result = train(config, evaluation=evaluation)
    kinds = [kind for kind, _ in evaluation.calls]
    assert kinds == ["validate", "validate", "validate", "report"]
    assert evaluation.calls[0][1]["max_batches"] == config.loop.val_batches
    assert evaluation.calls[-1][1]["output_dir"] == config.run_dir / "eval"
    best = json.loads((config.run_dir / "checkpoints" / "best.json").read_text())
    assert best["state"]["best_step"] == 4 and best["state"]["best_value"] == 0.7
    assert result.last_validation == {"fg_ari": -1.0}


def test_the_standard_evaluation_is_an_evaluation() -> None:
    assert isinstance(SplitEvaluation(), Evaluation)
    assert isinstance(ScriptedEvaluation([]), Evaluation)


def test_stage_two_specs_are_known_by_type_and_say_their_stage_one() -> None:
    from metaslot.data.shapes import ShapesSpec
    from metaslot.models.pipelines import StageTwoSpec
    from metaslot.train.presets import preset
    from metaslot.train.stages import stage_one_command

    slotdiffusion = preset("slotdiffusion", "voc").model
    assert isinstance(slotdiffusion, StageTwoSpec)
    assert not isinstance(preset("dinosaur", "voc").model, StageTwoSpec)
    assert not isinstance(preset("vqvae", "voc").model, StageTwoSpec)
    assert stage_one_command(slotdiffusion, ShapesSpec()) == (
        "python -m cli.train --model vqvae --data shapes --vqvae-variant c4 --name vqvae-c4-shapes"
    )
    # A dataset no --data name stands for is not passed off as shapes.
    unnamed = stage_one_command(slotdiffusion, object())
    assert "--data <your dataset>" in unnamed and "shapes" not in unnamed
