"""A run folder is never overwritten, cut back or mixed with another run (issue 14, items 1, 5, 6, 7;
issue 15, item 4).

Each case once went wrong: a missing ``latest.json`` restarted the run at step 0 (pruning checkpoints,
cutting ``metrics.jsonl`` back); ``--resume`` with other flags rewrote ``config.json``; ``latest.json``
pointing at another run's checkpoint was followed; resuming a finished run appended another final
evaluation; ``--resume`` without a run started a new one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import attrs
import pytest
import torch

from metaslot.cli.train import main as train_main
from metaslot.cli.train import parse_train_arguments
from metaslot.errors import CheckpointError, ConfigError, MissingFileError
from metaslot.train.config import TrainConfig
from metaslot.train.logging import read_metrics
from tests.support.helpers import evolve_loop, final_weights, tiny_config, train, without_timing


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder`` by relative name: (size, mtime in ns)."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in folder.rglob("*")
        if path.is_file()
    }


def stopped_run(runs: Path, stop_at: int = 4) -> TrainConfig:
    """A six-step run with checkpoints at 2 and 4, stopped after ``stop_at``."""
    config = tiny_config(runs, checkpoint_every=2, keep_checkpoints=3)
    train(evolve_loop(config, stop_at=stop_at))
    return config


def resumed(config: TrainConfig) -> TrainConfig:
    return attrs.evolve(config, resume=True)


def assert_same_run(expected: TrainConfig, actual: TrainConfig) -> None:
    weights, other = final_weights(expected.run_dir), final_weights(actual.run_dir)
    assert all(torch.equal(weights[key], other[key]) for key in weights)
    assert without_timing(read_metrics(expected.run_dir)) == without_timing(read_metrics(actual.run_dir))


# --- item 1: missing latest.json --------------------------------------------------------------------


def test_missing_latest_json_resumes_from_the_newest_valid_checkpoint(tmp_path: Path, capsys) -> None:
    straight = tiny_config(tmp_path / "straight", checkpoint_every=2, keep_checkpoints=3)
    train(straight)
    config = stopped_run(tmp_path / "cut")
    (config.run_dir / "checkpoints" / "latest.json").unlink()
    capsys.readouterr()

    result = train(resumed(config))
    assert result.step == 6
    assert "resuming from step-0000004, the newest valid checkpoint" in capsys.readouterr().err
    assert_same_run(straight, config)


def test_a_damaged_newest_checkpoint_is_skipped_when_latest_json_is_missing(tmp_path: Path, capsys) -> None:
    config = stopped_run(tmp_path)
    checkpoints = config.run_dir / "checkpoints"
    (checkpoints / "latest.json").unlink()
    weights = checkpoints / "step-0000004.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a kill -9 of the disk, say
    capsys.readouterr()

    result = train(evolve_loop(resumed(config), stop_at=3))
    assert result.step == 3
    note = capsys.readouterr().err
    assert "resuming from step-0000002" in note and "skipped step-0000004: checkpoint file" in note


@pytest.mark.parametrize("remove", ["latest.json", "checkpoints", "nothing"])
def test_a_started_run_is_never_restarted_without_resume(tmp_path: Path, remove: str) -> None:
    config = stopped_run(tmp_path)
    if remove == "latest.json":
        (config.run_dir / "checkpoints" / "latest.json").unlink()
    elif remove == "checkpoints":  # the metrics alone still say a run happened here
        shutil.rmtree(config.run_dir / "checkpoints")
    before = snapshot(config.run_dir)
    with pytest.raises(
        ConfigError, match=r"already holds .* add --resume to continue it, or pick another --name"
    ):
        train(config)
    assert snapshot(config.run_dir) == before  # nothing pruned, replaced or cut back


# --- item 5: flags that change a run ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "listed"),
    [
        (lambda c: evolve_loop(c, steps=8, batch_size=2), ["--loop.batch-size 4 → 2", "--loop.steps 6 → 8"]),
        (
            lambda c: attrs.evolve(c, optim=attrs.evolve(c.optim, learning_rate=1e-3)),
            ["--optim.learning-rate"],
        ),
        (lambda c: attrs.evolve(c, model=attrs.evolve(c.model, num_slots=3)), ["--model.num-slots 4 → 3"]),
        (lambda c: evolve_loop(c, seed=7), ["--loop.seed 42 → 7"]),
    ],
)
def test_resume_refuses_flags_that_change_the_run(tmp_path: Path, change, listed: list[str]) -> None:
    config = stopped_run(tmp_path)
    stored = (config.run_dir / "config.json").read_bytes()
    before = snapshot(config.run_dir)
    with pytest.raises(ConfigError, match="--resume would change what run") as refused:
        train(resumed(change(config)))
    for text in listed:
        assert text in str(refused.value)
    assert (config.run_dir / "config.json").read_bytes() == stored
    assert snapshot(config.run_dir) == before


def test_resume_accepts_flags_that_only_change_how_it_runs(tmp_path: Path) -> None:
    straight = tiny_config(tmp_path / "straight", checkpoint_every=2, keep_checkpoints=3)
    train(straight)
    config = stopped_run(tmp_path / "cut")
    stored = (config.run_dir / "config.json").read_bytes()
    harmless = attrs.evolve(
        evolve_loop(config, log_every=2, checkpoint_every=3, keep_checkpoints=5),
        evaluation=attrs.evolve(config.evaluation, batch_size=3, pictures=1),
        progress=True,
    )
    assert train(resumed(harmless)).step == 6
    assert (config.run_dir / "config.json").read_bytes() == stored  # immutable
    weights, other = final_weights(straight.run_dir), final_weights(config.run_dir)
    assert all(torch.equal(weights[key], other[key]) for key in weights)


# --- item 6: run identity ---------------------------------------------------------------------------


def test_latest_json_pointing_at_another_runs_checkpoint_is_refused(tmp_path: Path) -> None:
    ours = stopped_run(tmp_path, stop_at=2)
    theirs = stopped_run(tmp_path / "other", stop_at=4)
    checkpoints = ours.run_dir / "checkpoints"
    for path in (theirs.run_dir / "checkpoints").glob("step-0000004*"):
        shutil.copy(path, checkpoints / path.name)  # same model, same step names: only the id tells
    (checkpoints / "latest.json").write_text(json.dumps({"checkpoint": "step-0000004"}))
    with pytest.raises(CheckpointError, match="step-0000004.json belongs to another run"):
        train(resumed(ours))

    (checkpoints / "latest.json").unlink()  # recovery skips it as well
    result = train(evolve_loop(resumed(ours), stop_at=3))
    assert result.step == 3


def test_latest_json_naming_a_path_outside_the_run_is_refused(tmp_path: Path) -> None:
    ours = stopped_run(tmp_path, stop_at=2)
    theirs = stopped_run(tmp_path / "other", stop_at=4)
    outside = Path("..", "..", "other", theirs.name, "checkpoints", "step-0000004")
    (ours.run_dir / "checkpoints" / "latest.json").write_text(json.dumps({"checkpoint": str(outside)}))
    with pytest.raises(CheckpointError, match="not a checkpoint of this folder"):
        train(resumed(ours))


def test_checkpoints_record_the_run_id_of_config_json(tmp_path: Path) -> None:
    config = stopped_run(tmp_path, stop_at=2)
    run_id = json.loads((config.run_dir / "config.json").read_text())["run_id"]
    sidecar = json.loads((config.run_dir / "checkpoints" / "step-0000002.json").read_text())
    assert len(run_id) == 16 and sidecar["run_id"] == run_id


# --- item 7: a finished run -------------------------------------------------------------------------


def test_resuming_a_finished_run_does_nothing(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path)
    first = train(config)
    before = snapshot(config.run_dir)
    capsys.readouterr()
    again = train(resumed(config))
    assert "is complete (step 6 of 6, final evaluation done); nothing to train" in capsys.readouterr().err
    assert snapshot(config.run_dir) == before
    assert [row["split"] for row in read_metrics(config.run_dir)].count("eval") == 1
    assert again.step == 6 and again.last_validation == pytest.approx(first.last_validation)


def test_a_run_stopped_during_its_final_evaluation_only_evaluates(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    train(attrs.evolve(config, evaluate_at_end=False))  # all steps done, no final evaluation yet
    steps = [row for row in read_metrics(config.run_dir) if row["split"] == "train"]
    train(resumed(config))
    rows = read_metrics(config.run_dir)
    assert [row for row in rows if row["split"] == "train"] == steps
    assert [row["split"] for row in rows].count("eval") == 1


# --- issue 15 item 4: --resume on the command line ---------------------------------------------------


def test_resume_without_a_run_folder_names_the_folder(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:
        train_main(["--resume", "--runs-dir", str(tmp_path), "--name", "never-trained"])
    assert stopped.value.code == 1
    error = capsys.readouterr().err
    assert f"there is no run folder {tmp_path / 'never-trained'}" in error
    assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "never-trained").exists()
    with pytest.raises(MissingFileError, match="has no config.json"):
        (tmp_path / "empty").mkdir()
        parse_train_arguments(["--resume", str(tmp_path / "empty")])


def test_resume_run_folder_continues_from_its_config_json(tmp_path: Path, capsys) -> None:
    straight = tiny_config(tmp_path / "straight", checkpoint_every=2, keep_checkpoints=3)
    train(straight)
    config = stopped_run(tmp_path / "cut")
    moved = tmp_path / "moved" / "somewhere"
    shutil.move(str(config.run_dir), moved)  # the folder is all it needs

    parsed, _ = parse_train_arguments(["--resume", str(moved), "--loop.stop-at", "5"])
    assert parsed.run_dir == moved and parsed.resume and parsed.model == config.model
    train_main(["--resume", str(moved)])
    assert f"run folder: {moved} (step 6" in capsys.readouterr().out
    assert_same_run(straight, attrs.evolve(config, runs_dir=moved.parent, name=moved.name))


def test_resume_run_folder_refuses_other_selectors_and_changes(tmp_path: Path, capsys) -> None:
    from tests.support.cli_args import loop_args, model_args

    arguments = [*model_args("autoencoder"), *loop_args(tmp_path, steps=2)]
    config, _ = parse_train_arguments([*arguments, "--loop.stop-at", "1"])
    train(attrs.evolve(config, evaluate_at_end=False))
    with pytest.raises(ConfigError, match="--model dinosaur does not match run"):
        parse_train_arguments(["--resume", str(config.run_dir), "--model", "dinosaur"])
    for flags in (["--resume", str(config.run_dir)], ["--resume", *arguments]):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            train_main([*flags, "--model.aggregator.num-iterations", "5"])
        error = capsys.readouterr().err
        assert (
            "--resume would change what run" in error and "--model.aggregator.num-iterations 3 → 5" in error
        )
