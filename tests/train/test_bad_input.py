"""Every user mistake ends with one explanatory line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch

from metaslot.cli import eval as eval_cli
from metaslot.cli import train as train_cli
from tests.support.cli_args import loop_args, model_args
from tests.support.helpers import tiny_config, train


def _run_train(arguments: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        train_cli.main(arguments)
    return exit_info.value.code, capsys.readouterr().err


def _assert_one_line(code: int, stderr: str, expected: str) -> None:
    assert code != 0
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert expected in lines[0], lines[0]


TINY = model_args("autoencoder")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--model", "resnet"], "unknown --model 'resnet': choose one of autoencoder, dinosaur"),
        (["--data", "imagenet"], "unknown --data 'imagenet'"),
        (["--aggregator", "kmeans"], "unknown --aggregator 'kmeans'"),
        (["--vqvae-variant", "c8", "--model", "vqvae"], "unknown --vqvae-variant 'c8'"),
        ([*TINY, "--loop.batch-size", "0"], "batch_size must be positive, got 0"),
        ([*TINY, "--optim.learning-rate", "-1"], "learning_rate must be positive"),
        ([*TINY, "--model.aggregator.codebook-size", "0"], "codebook_size must be at least 1"),
        ([*TINY, "--schedule.warmup-fraction", "1.5"], "warmup_fraction must be in [0, 1)"),
        ([*TINY, "--model.aggregator.mlp-dropout", "1.0"], "mlp_dropout must be in [0, 1), got 1.0"),
        ([*TINY, "--model.encoder.strides", "1"], "strides (1,) must have one entry per conv layer"),
    ],
    ids=[
        "model",
        "data",
        "aggregator",
        "vqvae-variant",
        "batch-size",
        "learning-rate",
        "codebook-size",
        "warmup",
        "mlp-dropout",
        "strides",
    ],
)
def test_bad_selectors_and_option_values(arguments: list[str], expected: str, capsys, tmp_path: Path) -> None:
    code, stderr = _run_train([*arguments, "--runs-dir", str(tmp_path)], capsys)
    _assert_one_line(code, stderr, expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu(capsys, tmp_path: Path) -> None:
    code, stderr = _run_train([*TINY, *loop_args(tmp_path), "--device", "cuda"], capsys)
    _assert_one_line(code, stderr, "--device cuda was requested but no CUDA GPU is visible")


def test_missing_dataset_folder(capsys, tmp_path: Path) -> None:
    arguments = [
        "--model",
        "autoencoder",
        "--data",
        "voc",
        "--data.root",
        str(tmp_path / "nowhere"),
        "--model.image-size",
        "32",
        "--data.resolution",
        "32",
        *loop_args(tmp_path),
    ]
    code, stderr = _run_train(arguments, capsys)
    _assert_one_line(code, stderr, "nowhere")


def test_missing_backbone_weights_offline(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    arguments = [
        *model_args("dinosaur"),
        "--model.encoder.pretrained",
        "--model.encoder.weights",
        str(tmp_path / "dinov2.safetensors"),
        *loop_args(tmp_path),
    ]
    code, stderr = _run_train(arguments, capsys)
    _assert_one_line(code, stderr, "dinov2.safetensors")


def test_stage_two_without_vqvae_prints_the_stage_one_command(capsys, tmp_path: Path) -> None:
    code, stderr = _run_train([*model_args("slate"), *loop_args(tmp_path)], capsys)
    _assert_one_line(
        code, stderr, "run `python -m cli.train --model vqvae --data shapes --name vqvae-c256-shapes` first"
    )


def test_wrong_vqvae_checkpoint(capsys, tmp_path: Path) -> None:
    other = tiny_config(tmp_path, name="not-a-vqvae", steps=1, checkpoint_every=1, val_every=1)
    train(attrs.evolve(other, evaluate_at_end=False))
    code, stderr = _run_train(
        [*model_args("slate"), *loop_args(tmp_path), "--vqvae", str(other.run_dir)], capsys
    )
    _assert_one_line(code, stderr, "matches none of the pipeline's")


@pytest.mark.parametrize("damage", ["missing", "truncated", "not-a-run"])
def test_bad_checkpoint_for_eval(damage: str, capsys, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, steps=1, checkpoint_every=1, val_every=1)
    train(attrs.evolve(config, evaluate_at_end=False))
    target = config.run_dir
    expected = {
        "missing": "neither a run folder nor a checkpoint",
        "truncated": "truncated",
        "not-a-run": "has no config.json",
    }[damage]
    if damage == "missing":
        target = tmp_path / "nope.safetensors"
    elif damage == "truncated":
        weights = config.run_dir / "checkpoints" / "step-0000001.safetensors"  # the last, what eval reads
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (config.run_dir / "config.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main([str(target)])
    _assert_one_line(exit_info.value.code, capsys.readouterr().err, expected)


def test_unknown_flag_is_reported_by_the_parser(capsys, tmp_path: Path) -> None:
    code, stderr = _run_train([*TINY, "--loop.stepz", "3"], capsys)
    assert code == 2
    assert "Traceback" not in stderr and "--loop.stepz" in stderr
