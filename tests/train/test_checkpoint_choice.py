"""Which weights a reported number comes from: the last checkpoint by default, and a "best" one chosen
on a held-out slice of the training split (never trained on), or, where a run validated on the split
being reported, a report that says so."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import torch

from metaslot.cli import eval as eval_cli
from metaslot.data.holdout import IndexedSubset, holdout_indices
from metaslot.data.sampling import ItemKey
from metaslot.errors import ConfigError
from metaslot.train.config import TrainConfig
from metaslot.train.presets import DATASETS, MODELS, preset
from tests.support import train_fakes
from tests.support.helpers import evolve_loop, final_weights, tiny_config, train
from tests.support.train_fakes import FakeDataSpec


def holdout_config(runs_dir: Path, **loop: object) -> TrainConfig:
    """The tiny run (16 training samples), validating on 4 of them held out; every read recorded."""
    config = tiny_config(runs_dir, val_split="train-holdout", val_holdout=4, **loop)
    return attrs.evolve(config, data=FakeDataSpec(record=True))


def reads(train: bool | None = None, split: str | None = None) -> list[tuple[str, bool, int, int]]:
    return [
        read
        for read in train_fakes.READS
        if (train is None or read[1] == train) and (split is None or read[0] == split)
    ]


# --- the held-out slice ----------------------------------------------------------------------------


def test_holdout_indices_split_the_training_samples_the_same_way_every_time() -> None:
    kept, held_out = holdout_indices(40, 6)
    assert sorted([*kept, *held_out]) == list(range(40)) and len(held_out) == 6
    assert list(kept) == sorted(kept) and list(held_out) == sorted(held_out)
    again_kept, again_held_out = holdout_indices(40, 6)
    assert list(again_kept) == list(kept) and list(again_held_out) == list(held_out)
    assert list(held_out) != list(range(34, 40))  # spread over the split, not its tail
    for count in (0, 40):
        with pytest.raises(ConfigError, match=rf"--loop.val-holdout {count} .*\[1, 39\]"):
            holdout_indices(40, count)


def test_subset_hands_the_original_index_and_the_epoch_to_the_dataset() -> None:
    class Echo(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 10

        def __getitem__(self, key):
            return key

    subset = IndexedSubset(Echo(), holdout_indices(10, 3)[1])
    first = int(holdout_indices(10, 3)[1][0])
    assert len(subset) == 3 and subset[0] == first and subset[ItemKey(0, 5)] == ItemKey(first, 5)
    with pytest.raises(IndexError):
        subset[3]


def test_training_never_reads_the_held_out_samples_and_validation_reads_only_them(tmp_path: Path) -> None:
    train_fakes.READS.clear()
    # 12 training samples left, batches of 4: 3 steps per epoch, so 6 steps cross into a second epoch
    train(holdout_config(tmp_path, steps=6, batch_size=4, val_every=3))
    kept, held_out = holdout_indices(16, 4)
    trained = reads(train=True)
    assert {index for _, _, index, _ in trained} == set(kept.tolist())
    assert {epoch for _, _, _, epoch in trained} == {0, 1} and len(trained) == 6 * 4
    validated = reads(train=False, split="train")
    assert validated and {index for _, _, index, _ in validated} == set(held_out.tolist())
    assert reads(split="val")  # the end-of-run report reads the evaluation split


def test_a_resumed_holdout_run_reads_and_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    train_fakes.READS.clear()
    straight = holdout_config(tmp_path / "a")
    train(straight)
    straight_reads = reads(train=True)
    train_fakes.READS.clear()
    interrupted = holdout_config(tmp_path / "b")
    train(evolve_loop(interrupted, stop_at=3))
    train(attrs.evolve(interrupted, resume=True))
    assert reads(train=True) == straight_reads
    expected, resumed = final_weights(straight.run_dir), final_weights(interrupted.run_dir)
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)


def test_paper_presets_validate_on_a_training_holdout_the_shapes_jobs_on_their_val_stream() -> None:
    for model in MODELS:
        for data in DATASETS:
            loop = preset(model, data).loop
            if data == "shapes":
                assert loop.val_split == "val", model
            else:
                assert loop.val_split == "train-holdout", (model, data)
                assert 8 <= loop.val_holdout <= 500, (model, data)


# --- what a report says about its weights ----------------------------------------------------------


def test_end_of_run_report_names_the_last_checkpoint_and_the_split(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path)
    train(config)
    document = json.loads((config.run_dir / "eval" / "evaluation.json").read_text())
    assert document["checkpoint"] == "last" and document["step"] == 6 and document["split"] == "val"
    assert document["selected_on"] is None and document["selected_on_reported_split"] is False
    assert "checkpoint last (step 6), split val" in capsys.readouterr().out


def trained_without_report(runs_dir: Path, **loop: object) -> Path:
    config = attrs.evolve(
        tiny_config(runs_dir, val_every=2, checkpoint_every=3, **loop), evaluate_at_end=False
    )
    train(config)
    return config.run_dir


def test_eval_reports_the_last_checkpoint_by_default(tmp_path: Path, capsys) -> None:
    run_dir = trained_without_report(tmp_path)
    assert (run_dir / "checkpoints" / "best.json").is_file()
    eval_cli.main([str(run_dir), "--evaluation.pictures", "0"])
    assert not (run_dir / "eval-best-val").exists()
    document = json.loads((run_dir / "eval-step-0000006-val" / "evaluation.json").read_text())
    assert (document["checkpoint"], document["step"], document["selected_on"]) == ("last", 6, None)
    assert "checkpoint last (step 6), split val" in capsys.readouterr().out


def test_eval_of_best_chosen_on_the_reported_split_says_so(tmp_path: Path, capsys) -> None:
    run_dir = trained_without_report(tmp_path, val_split="val")
    eval_cli.main([str(run_dir), "--checkpoint", "best", "--evaluation.pictures", "0"])
    document = json.loads((run_dir / "eval-best-val" / "evaluation.json").read_text())
    assert document["checkpoint"] == "best" and document["selected_on"] == "val"
    assert document["selected_on_reported_split"] is True
    printed = capsys.readouterr().out
    assert "selected on val, the split reported here, so this number is optimistic" in printed


def test_eval_of_best_chosen_on_the_training_holdout(tmp_path: Path, capsys) -> None:
    run_dir = trained_without_report(tmp_path, val_split="train-holdout", val_holdout=4)
    eval_cli.main([str(run_dir), "--checkpoint", "best", "--evaluation.pictures", "0"])
    document = json.loads((run_dir / "eval-best-val" / "evaluation.json").read_text())
    assert document["selected_on"] == "train-holdout" and document["selected_on_reported_split"] is False
    printed = capsys.readouterr().out
    assert "selected on train-holdout" in printed and "optimistic" not in printed


def test_best_of_a_single_checkpoint_file_is_one_line(tmp_path: Path, capsys) -> None:
    run_dir = trained_without_report(tmp_path)
    with pytest.raises(SystemExit):
        eval_cli.main([str(run_dir / "checkpoints" / "step-0000006.json"), "--checkpoint", "best"])
    error = capsys.readouterr().err
    assert "--checkpoint best picks among a run folder's checkpoints" in error and "Traceback" not in error
