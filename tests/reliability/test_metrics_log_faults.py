"""``metrics.jsonl`` stays readable whenever the trainer dies (issue 14, item 3).

It used to be rewritten in place on resume, so a kill during the rewind left it empty; and a torn last
line (a kill in the middle of a row) blocked resume with an error naming no file.
"""

from __future__ import annotations

import attrs
import pytest
import torch

from metaslot.errors import CorruptDataError
from metaslot.train.loggers import JsonlLogger
from metaslot.train.logging import read_metrics
from tests.support.faults import Killed, break_writes, temporaries
from tests.support.helpers import evolve_loop, final_weights, tiny_config, train, without_timing


def straight_and_stopped(tmp_path, stop_at: int = 4):
    straight = tiny_config(tmp_path / "straight", checkpoint_every=2)
    train(straight)
    config = tiny_config(tmp_path / "cut", checkpoint_every=2)
    train(evolve_loop(config, stop_at=stop_at))
    return straight, config


def test_a_torn_last_line_never_blocks_resume(tmp_path) -> None:
    straight, config = straight_and_stopped(tmp_path)
    with open(config.run_dir / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 5, "split": "train", "loss": 0.12')  # killed mid-row
    assert [row["step"] for row in read_metrics(config.run_dir)][-1] == 4
    assert train(attrs.evolve(config, resume=True)).step == 6
    assert without_timing(read_metrics(config.run_dir)) == without_timing(read_metrics(straight.run_dir))


def test_a_kill_while_the_log_is_rewound_leaves_every_row(tmp_path, monkeypatch) -> None:
    straight, config = straight_and_stopped(tmp_path, stop_at=3)
    # The run got to step 4 after its step-2 checkpoint... then died.
    rows = read_metrics(config.run_dir)
    (config.run_dir / "checkpoints" / "latest.json").write_text('{"checkpoint": "step-0000002"}')
    struck = break_writes(monkeypatch, "metrics.jsonl", Killed())
    with pytest.raises(Killed):
        train(attrs.evolve(config, resume=True))  # dies while dropping the rows after step 2
    monkeypatch.undo()
    assert struck, "the rewind did not write"
    assert read_metrics(config.run_dir) == rows  # the old file, whole
    assert train(attrs.evolve(config, resume=True)).step == 6
    assert without_timing(read_metrics(config.run_dir)) == without_timing(read_metrics(straight.run_dir))
    weights, other = final_weights(straight.run_dir), final_weights(config.run_dir)
    assert all(torch.equal(weights[key], other[key]) for key in weights)
    assert not temporaries(config.run_dir)


def test_damage_before_the_last_line_is_an_error_naming_the_file_and_line(tmp_path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "split": "train"}\n{"step": 2, "spl\n{"step": 3, "split": "train"}\n')
    with pytest.raises(CorruptDataError, match=rf"{path} line 2 is not a metrics row"):
        read_metrics(tmp_path)


def test_the_metrics_writer_skips_a_torn_tail_and_rewinds_atomically(tmp_path, monkeypatch) -> None:
    log = JsonlLogger(tmp_path)
    write = log.log_scalars
    for step in (1, 2, 3):
        write(step, "train", {"loss": float(step)})
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 4, "split"')
    with monkeypatch.context() as patch:
        break_writes(patch, "metrics.jsonl", Killed())
        with pytest.raises(Killed):
            log.truncate_after(2)
    assert [row["step"] for row in read_metrics(tmp_path)] == [1, 2, 3]
    log.truncate_after(2)
    write(3, "train", {"loss": 9.0})
    assert [(row["step"], row["loss"]) for row in read_metrics(tmp_path)] == [(1, 1.0), (2, 2.0), (3, 9.0)]
