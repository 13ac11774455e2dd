"""Every model × shapes trains 3 steps, evaluates and writes pictures through the CLI entry functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metaslot.cli import eval as eval_cli
from metaslot.cli import train as train_cli
from metaslot.cli import visualize as visualize_cli
from metaslot.train.logging import read_metrics
from tests.support.cli_args import loop_args, model_args, without_codebook


def _train(model: str, runs: Path, *extra: str) -> Path:
    arguments = model_args(model)
    if "slot-attention" in extra:
        arguments = without_codebook(arguments)
    train_cli.main([*arguments, *loop_args(runs), "--name", model, *extra])
    return runs / model


def _check_run(run_dir: Path, *, segmentation: bool, codebook: bool = True) -> None:
    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows if row["split"] == "train"] == [1, 2, 3]
    for row in rows:
        if row["split"] == "train":  # codebook health at every log step, for MetaSlot only
            assert ("codebook/codes_in_use" in row) == ("codebook/perplexity" in row) == codebook
            assert not codebook or 1 <= row["codebook/perplexity"] <= row["codebook/codes_in_use"] + 1e-9
    evaluation = json.loads((run_dir / "eval" / "evaluation.json").read_text())
    assert evaluation["images"] > 0
    assert (run_dir / "checkpoints" / "latest.json").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["loop"]["steps"] == 3
    if segmentation:
        for name in (
            "ari",
            "fg_ari",
            "mbo",
            "mbo_fg",
            "miou",
            "miou_fg",
            "active_slots",
            "slot_count_abs_error",
        ):
            assert name in evaluation["metrics"], name
        assert ("codes_in_use" in evaluation["metrics"]) == codebook
        assert (run_dir / "eval" / "segmentation.png").stat().st_size > 0
        assert (run_dir / "eval" / "slot_count.png").stat().st_size > 0


def test_autoencoder_trains_evaluates_and_draws(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = _train("autoencoder", tmp_path)
    _check_run(run_dir, segmentation=True)
    assert "FG-ARI" in capsys.readouterr().out
    assert (run_dir / "eval" / "prototypes.png").is_file()

    eval_cli.main([str(run_dir), "--evaluation.max-batches", "1", "--output", str(tmp_path / "again")])
    again = json.loads((tmp_path / "again" / "evaluation.json").read_text())
    assert again["images"] == 2
    visualize_cli.main([str(run_dir / "checkpoints" / "step-0000003.safetensors"), "--images", "2"])
    assert (run_dir / "pictures-step-0000003-val" / "segmentation.png").is_file()


def test_slot_attention_variant_trains(tmp_path: Path) -> None:
    run_dir = _train("autoencoder", tmp_path, "--aggregator", "slot-attention")
    _check_run(run_dir, segmentation=True, codebook=False)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["model"]["aggregator"]["__type__"] == "SlotAttentionSpec"  # its registered name


@pytest.mark.slow
def test_dinosaur_trains(tmp_path: Path) -> None:
    _check_run(_train("dinosaur", tmp_path), segmentation=True)


def test_spot_trains_and_records_its_evaluation_orders(tmp_path: Path) -> None:
    run_dir = _train("spot", tmp_path)
    _check_run(run_dir, segmentation=True)
    protocol = json.loads((run_dir / "eval" / "evaluation.json").read_text())["protocol"]
    assert (protocol["name"], protocol["token_orders"], protocol["masks"]) == (
        "metaslot",
        "first",
        "pipeline",
    )


def test_spot_stage_two_learns_from_its_stage_one_teacher(tmp_path: Path) -> None:
    """``--model spot --teacher RUN``: the student's config holds the teacher's spec, its teacher the
    stage-1 weights, and the self-training term is logged beside the reconstruction."""
    from metaslot.train.checkpoint import read_tensors, resolve_checkpoint
    from metaslot.train.config import config_from_json

    teacher_dir = _train("spot", tmp_path)
    train_cli.main(
        [*model_args("spot"), *loop_args(tmp_path), "--name", "student", "--teacher", str(teacher_dir)]
    )
    run_dir = tmp_path / "student"
    _check_run(run_dir, segmentation=True)
    config = config_from_json((run_dir / "config.json").read_text())
    assert config.teacher == teacher_dir and config.model.trainable_blocks == 4
    assert config.model.aggregator.initializer == "learnt" and not config.model.encoder.frozen
    assert config.model.teacher == config_from_json((teacher_dir / "config.json").read_text()).model
    rows = [row for row in read_metrics(run_dir) if row["split"] == "train"]
    assert all("loss/self_training" in row and "loss/reconstruction" in row for row in rows)
    _, sidecar = resolve_checkpoint(teacher_dir)
    stage_one = read_tensors(sidecar.with_suffix(".safetensors"))
    _, student_sidecar = resolve_checkpoint(run_dir)
    student = read_tensors(student_sidecar.with_suffix(".safetensors"))
    assert all(torch.equal(student[f"teacher.{key}"], value) for key, value in stage_one.items())


def test_teacher_is_only_for_spot(tmp_path: Path) -> None:
    from metaslot.errors import ConfigError

    with pytest.raises(ConfigError, match="--model spot"):
        train_cli.parse_train_arguments(["--model", "dinosaur", "--teacher", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.parametrize(("stage_two", "stage_one"), [("slate", "vqvae"), ("slotdiffusion", "vqvae-c4")])
def test_two_stage_models_train_on_their_vqvae(tmp_path: Path, stage_two: str, stage_one: str) -> None:
    vqvae_dir = _train(stage_one, tmp_path)
    _check_run(vqvae_dir, segmentation=False, codebook=False)
    run_dir = _train(stage_two, tmp_path, "--vqvae", str(vqvae_dir))
    _check_run(run_dir, segmentation=True)
    if stage_two == "slotdiffusion":
        assert (run_dir / "eval" / "segmentation.png").is_file()  # includes sampled reconstructions


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--model", "dinosaur", "--data", "voc", "--model.decoder.top-k", "20"],
            "decoder top_k (20) exceeds",
        ),
        (["--model", "spot", "--data", "voc", "--model.trainable-blocks", "2"], "needs a ViT encoder"),
    ],
)
def test_a_rule_across_fields_is_a_one_line_flag_error(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Checks spanning several fields are validators too, so tyro draws no box around them."""
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main([*flags, "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("train: error: ") and message in error and "\n" not in error, error
