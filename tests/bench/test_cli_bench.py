"""`python -m cli.bench`: each group runs at the smoke size and writes its JSON; the timing helper's
bookkeeping; clean one-line errors for a missing GPU and bad repeat counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.bench import pipelines
from metaslot.bench.timing import Timing, time_interleaved
from metaslot.bench.variants import Variant, variants
from metaslot.cli.bench import main, preset_model

MACHINE_KEYS = {"date", "cpu", "cores", "platform", "python", "torch", "device", "device_name", "git_commit"}
SPREAD_MS = {"min_ms", "median_ms", "max_ms", "repeats"}
SPREAD_RATE = {"min_per_s", "median_per_s", "max_per_s", "repeats"}


def run_group(group: str, tmp_path: Path, *extra: str) -> dict:
    output = tmp_path / f"{group}.json"
    main([group, "--smoke", "--output", str(output), *extra])
    return json.loads(output.read_text())


def assert_ordered(spread: dict, low: str, middle: str, high: str) -> None:
    assert 0 < spread[low] <= spread[middle] <= spread[high]


def test_aggregators_group_writes_rows_ratios_and_the_machine(tmp_path: Path, capsys) -> None:
    results = run_group("aggregators", tmp_path, "--repeats", "2")
    assert MACHINE_KEYS <= set(results["machine"])
    assert results["machine"]["torch"] == torch.__version__
    assert results["settings"]["groups"] == ["aggregators"] and "pipelines" not in results
    auto, projected = results["aggregators"]
    assert [auto["attention_path"], projected["attention_path"]] == ["auto", "projected"]
    assert results["settings"]["attention_paths"] == ["auto", "projected"]
    for row in (auto, projected):
        assert row["variant"] == "fp32" and row["k"] == 3
        for name in ("slot_attention_train", "metaslot_train", "slot_attention_eval", "metaslot_eval"):
            assert set(row[name]) == SPREAD_MS and row[name]["repeats"] == 2
            assert_ordered(row[name], "min_ms", "median_ms", "max_ms")
        assert row["ratio_train"] == pytest.approx(
            row["metaslot_train"]["median_ms"] / row["slot_attention_train"]["median_ms"]
        )
    assert results["sync_check"]["status"] == ("pass" if torch.cuda.is_available() else "skipped")
    printed = capsys.readouterr().out
    assert "MetaSlot/Slot Attention" in printed and "smoke" in printed and "projected" in printed


def test_one_attention_path_gives_one_row(tmp_path: Path) -> None:
    results = run_group("aggregators", tmp_path, "--attention-paths", "feature_space")
    assert [row["attention_path"] for row in results["aggregators"]] == ["feature_space"]


def test_pipelines_group_times_every_pipeline(tmp_path: Path) -> None:
    results = run_group("pipelines", tmp_path)
    rows = results["pipelines"]
    assert [row["model"] for row in rows] == list(pipelines.MODELS)
    for row in rows:
        assert row["size"] == "smoke" and row["trainable_parameters"] > 0
        assert set(row["images"]) == SPREAD_RATE
        assert_ordered(row["images"], "min_per_s", "median_per_s", "max_per_s")
        assert row["images"]["median_per_s"] == pytest.approx(
            row["batch_size"] / (row["step"]["median_ms"] / 1e3)
        )


def test_data_group_measures_every_source(tmp_path: Path) -> None:
    rows = run_group("data", tmp_path)["data"]
    names = [row["name"] for row in rows]
    assert names[0].startswith("shapes") and any("train transform" in name for name in names)
    assert any("eval transform" in name for name in names)
    for row in rows:
        assert set(row) == {"name", "workers", "images"} | SPREAD_RATE
        assert_ordered(row, "min_per_s", "median_per_s", "max_per_s")


def test_the_paper_and_tiny_specs_build_from_the_presets_without_weights() -> None:
    from metaslot.models.encoders import DinoViTSpec

    for model in pipelines.MODELS:
        for spec in (pipelines.paper_spec(model, preset_model), pipelines.tiny_spec(model, preset_model)):
            encoder = getattr(spec, "encoder", None)
            if isinstance(encoder, DinoViTSpec):
                assert not encoder.pretrained and encoder.weights is None
            if model == "vqvae":  # the paper preset starts from TAESD (a download) and adds LPIPS for c4
                assert spec.pretrained is None and spec.lpips_weight == 0.0
    paper = {case.model: case for case in pipelines.cases(("paper",), preset_model)}
    assert {case.batch_size for case in paper.values()} == {32}
    assert paper["dinosaur"].image_size == paper["vqvae"].image_size == 256


def test_cuda_without_a_gpu_is_one_clean_line(tmp_path: Path, capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: --device cuda is valid here")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "--smoke", "--device", "cuda", "--output", str(tmp_path / "c.json")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "bench: error: --device cuda was requested but no CUDA GPU is visible; use --device cpu (or auto)"
    ]
    assert not (tmp_path / "c.json").exists()


def test_zero_repeats_is_refused_before_measuring(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["aggregators", "--smoke", "--repeats", "0", "--output", str(tmp_path / "r.json")])
    assert exit_info.value.code == 1
    assert "repeats (0) must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


def test_compile_without_warmup_is_refused(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["aggregators", "--smoke", "--compile", "--warmup", "0", "--output", str(tmp_path / "w.json")])
    assert "--compile needs --warmup 1 or more" in capsys.readouterr().err


@given(
    seconds=st.lists(st.floats(min_value=1e-6, max_value=1e3), min_size=1, max_size=9),
    items=st.integers(min_value=1, max_value=512),
)
def test_timing_spread_and_throughput_agree(seconds: list[float], items: int) -> None:
    timing = Timing(tuple(seconds))
    milliseconds = timing.milliseconds()
    assert milliseconds["min_ms"] == pytest.approx(1e3 * min(seconds))
    assert milliseconds["max_ms"] == pytest.approx(1e3 * max(seconds))
    assert milliseconds["min_ms"] <= milliseconds["median_ms"] <= milliseconds["max_ms"]
    rate = timing.throughput(items)
    assert rate["max_per_s"] == pytest.approx(items / min(seconds))
    assert rate["min_per_s"] <= rate["median_per_s"] <= rate["max_per_s"]


def test_timing_median_of_hand_values() -> None:
    assert Timing((0.3, 0.1, 0.2)).median == pytest.approx(0.2)
    assert Timing((0.4, 0.1, 0.2, 0.3)).milliseconds()["median_ms"] == pytest.approx(250.0)
    with pytest.raises(ValueError, match="at least one"):
        Timing(())


def test_interleaved_timing_alternates_and_skips_warmup() -> None:
    calls: list[str] = []
    steps = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    timings = time_interleaved(steps, device=torch.device("cpu"), repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5
    assert {name: len(timing.seconds) for name, timing in timings.items()} == {"a": 3, "b": 3}


def test_variants_from_the_flags() -> None:
    assert [variant.name for variant in variants(None, False)] == ["fp32"]
    assert [variant.name for variant in variants("bf16", True)] == [
        "fp32",
        "bf16",
        "fp32+compile",
        "bf16+compile",
    ]
    with Variant("bf16").autocast(torch.device("cpu")):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == torch.bfloat16


@pytest.mark.gpu
def test_cuda_smoke_run_passes_the_sync_check(tmp_path: Path) -> None:
    results = run_group("aggregators", tmp_path, "--device", "cuda", "--autocast", "bf16")
    assert results["sync_check"]["status"] == "pass", results["sync_check"]
    assert [row["variant"] for row in results["aggregators"]] == ["fp32", "bf16"]
