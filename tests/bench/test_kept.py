"""`cli.bench pipelines --kept-fraction`: forced keep masks, rows beside Slot Attention, peak memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metaslot.bench.kept import forced_keep, kept_count
from metaslot.bench.memory import peak_new_bytes
from metaslot.cli.bench import main


def test_kept_fraction_rows_for_dinosaur_and_the_autoencoder(tmp_path: Path, capsys) -> None:
    output = tmp_path / "kept.json"
    main(
        [
            "pipelines",
            "--smoke",
            "--kept-fraction",
            "1.0",
            "0.5",
            "--batch-size",
            "3",
            "--output",
            str(output),
        ]
    )
    rows = json.loads(output.read_text())["kept_fractions"]
    keys = {(row["model"], row["phase"], row["aggregator"], row["kept_fraction"]) for row in rows}
    for model in ("dinosaur", "autoencoder"):
        for phase in ("train", "eval"):
            assert {(model, phase, "slot_attention", None), (model, phase, "metaslot", 1.0)} <= keys
            assert (model, phase, "metaslot", 0.5) in keys
    for row in rows:
        assert row["batch_size"] == 3 and row["peak_memory_mib"] > 0 and row["gflops"] > 0
        if row["aggregator"] == "slot_attention":
            assert row["ratio_to_slot_attention"] == 1.0 and row["kept_slots"] == row["num_slots"]
            assert row["flop_ratio_to_slot_attention"] == 1.0
        else:
            assert row["kept_slots"] == kept_count(row["num_slots"], row["kept_fraction"])
    # Half the slots kept: DINOSAUR's decoder, the bulk of its step, does half the work.
    half = {
        row["phase"]: row["flop_ratio_to_slot_attention"]
        for row in rows
        if row["model"] == "dinosaur" and row["kept_fraction"] == 0.5
    }
    assert half["train"] < 1.0 and half["eval"] < 1.0
    assert "metaslot@0.5" in capsys.readouterr().out


def test_forced_keep_spreads_the_kept_slots_and_keeps_one_at_least() -> None:
    keep = forced_keep(batch=3, num_slots=6, fraction=0.67)
    assert keep.sum(dim=1).tolist() == [4, 4, 4]
    assert keep[0].tolist() == [True, True, True, True, False, False]
    assert keep[1].tolist() == [False, True, True, True, True, False]
    assert kept_count(6, 0.5) == 3 and kept_count(6, 0.01) == 1 and kept_count(6, 1.0) == 6


def test_a_fraction_outside_zero_one_is_one_clean_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["pipelines", "--smoke", "--kept-fraction", "1.5", "--output", str(tmp_path / "x.json")])
    assert "--kept-fraction 1.5 must lie in (0, 1]" in capsys.readouterr().err


def test_peak_memory_of_a_known_allocation() -> None:
    def call() -> None:
        first = torch.empty(1024, 256)  # 1 MiB
        second = torch.empty(2048, 256)  # 2 MiB, while the first is alive
        del first, second
        torch.empty(512, 256)  # 0.5 MiB after both are freed

    assert peak_new_bytes(call, torch.device("cpu")) == 3 * 2**20
