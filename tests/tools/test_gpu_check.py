"""The GPU check script on the CPU at smoke size: one preset's timed training step, the stage-1 VQ-VAE
pairing of the stage-2 presets, the JSON and Markdown it writes, and its bookkeeping (statuses, budget
shares, the JUnit counts, the training record read from metrics.jsonl)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


def smoke_settings(gpu_check, tmp_path: Path):
    return gpu_check.parse_settings(
        ["--device", "cpu", "--smoke", "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work")]
    )


def test_one_smoke_preset_step_is_timed_with_a_finite_loss(gpu_check, tmp_path: Path) -> None:
    settings = smoke_settings(gpu_check, tmp_path)
    row = gpu_check.time_preset_step("dinosaur_voc", settings, compiled=False)
    assert row["status"] == "pass" and math.isfinite(row["loss"])
    assert (row["variant"], row["batch_size"], row["step"]["repeats"]) == ("bf16", 2, 1)
    assert row["images"]["median_per_s"] > 0 and row["trainable_parameters"] > 0
    assert row["peak_memory_gib"] is None  # no CUDA allocator on the CPU


def test_stage_two_smoke_pipeline_gets_every_vqvae_tensor_mapped_in(gpu_check) -> None:
    case = gpu_check.preset_case("slate_voc", smoke=True)
    pipeline, notes = gpu_check.build_preset_pipeline(case, smoke=True)
    vqvae_keys = [key for key in pipeline.state_dict() if key.startswith("vqvae.")]
    assert notes["stage_one"] == {"variant": "c256", "tensors_mapped": len(vqvae_keys)}


@pytest.mark.parametrize(("name", "code_dim"), [("slate_voc", 256), ("slotdiffusion_voc", 4)])
def test_paper_stage_two_presets_take_the_vqvae_preset_of_their_variant(gpu_check, name, code_dim) -> None:
    """The random stage 1 of part 3 comes from the vqvae_voc preset; it must fit the stage-2 preset's
    VQ-VAE tensor for tensor, or the GPU run would stop at the mapping."""
    spec = gpu_check.preset_case(name, smoke=False).spec
    stage_one_module = gpu_check.stage_one_vqvae(spec, smoke=False)
    assert stage_one_module.spec.code_dim == code_dim
    stage_one = stage_one_module.state_dict()
    expected = spec.vqvae.build().state_dict()
    assert {key: value.shape for key, value in stage_one.items()} == {
        key: value.shape for key, value in expected.items()
    }
    assert spec.encoder.pretrained is False  # nothing is downloaded


def test_part_three_alone_writes_json_and_tables(gpu_check, tmp_path: Path) -> None:
    out = tmp_path / "out"
    status = gpu_check.main(
        ["--device", "cpu", "--smoke", "--parts", "3", "--presets", "vqvae_voc_c4"]
        + ["--out", str(out), "--work-dir", str(tmp_path / "work")]
    )
    assert status == 0
    document = json.loads((out / "gpu_check.json").read_text())
    assert document["machine"]["line"].startswith("CPU only")
    part = document["parts"]["preset_steps"]
    assert part["status"] == "pass" and part["compile"] == gpu_check.CPU_COMPILE_REASON
    assert [(row["preset"], row["variant"]) for row in part["rows"]] == [("vqvae_voc_c4", "bf16")]
    assert document["parts"]["summary"]["statuses"] == {"preset_steps": "pass"}
    tables = (out / "gpu_check.md").read_text()
    assert "| vqvae_voc_c4 | bf16 | 2 | 32 |" in tables


def test_a_failing_case_is_recorded_and_the_rest_still_runs(gpu_check, tmp_path: Path, monkeypatch) -> None:
    def broken(name, settings, compiled):
        if name == "slate_voc":
            raise RuntimeError("expected scalar type BFloat16 but found Float")
        return {"status": "pass", "preset": name, "variant": "bf16"}

    monkeypatch.setattr(gpu_check, "time_preset_step", broken)
    monkeypatch.setattr(gpu_check, "release_memory", lambda device, compiled: None)
    settings = smoke_settings(gpu_check, tmp_path)
    settings.out.mkdir(parents=True)
    report = gpu_check.Report(settings.out, {"line": "test"}, {})
    clock = gpu_check.Clock(gpu_check.time.monotonic(), 60.0, (3,))
    gpu_check.part_preset_steps(settings, clock, report)
    rows = json.loads(report.json_path.read_text())["parts"]["preset_steps"]["rows"]
    assert [row["status"] for row in rows] == ["pass", "pass", "pass", "error", "pass"]
    assert rows[3]["error"] == "RuntimeError: expected scalar type BFloat16 but found Float"
    assert report.part(3)["status"] == "error"


def test_paper_sizes_on_the_cpu_are_refused(gpu_check, capsys) -> None:
    assert gpu_check.main(["--device", "cpu"]) == 2
    assert "--smoke" in capsys.readouterr().err


def test_training_record_reads_trend_codes_and_non_finite_values(gpu_check) -> None:
    rows = [
        {
            "step": step,
            "split": "train",
            "loss": loss,
            "codebook/codes_in_use": codes,
            "codebook/perplexity": 2.0,
        }
        for step, loss, codes in ((1, 1.0, 3.0), (2, 0.9, 5.0), (3, 0.6, 6.0), (4, 0.5, 7.0))
    ]
    record = gpu_check.training_record(rows + [{"step": 4, "split": "val", "fg_ari": 0.5}])
    assert record["loss"] == {"first": 1.0, "last": 0.5, "falls": True, "logged": 4}
    assert record["all_finite"] and record["last"]["codes_in_use"] == 7.0
    assert record["validation"]["fg_ari"] == 0.5
    rows[2]["loss"] = "nan"  # how metrics.jsonl stores a non-finite value
    assert not gpu_check.training_record(rows)["all_finite"]
    assert gpu_check.loss_trend([0.5, 0.7])["falls"] is False
    assert gpu_check.loss_trend([0.5])["falls"] is None


def test_statuses_combine_into_a_part_status(gpu_check) -> None:
    assert gpu_check.combined("pass", "pass") == "pass"
    assert gpu_check.combined("pass", "skipped") == "partial"
    assert gpu_check.combined("skipped", "skipped") == "skipped"
    assert gpu_check.combined("pass", "timeout", "error") == "error"
    assert gpu_check.combined() == "skipped"


def test_budget_shares_renormalise_over_the_chosen_parts(gpu_check) -> None:
    every = gpu_check.Clock(0.0, 100.0, (1, 2, 3, 4))
    assert every.deadline(1) == pytest.approx(12.0) and every.deadline(4) == pytest.approx(100.0)
    assert gpu_check.Clock(0.0, 100.0, (3,)).deadline(3) == pytest.approx(100.0)
    two = gpu_check.Clock(0.0, 100.0, (2, 4))
    assert two.deadline(2) == pytest.approx(100.0 * 0.30 / 0.48)


def test_junit_counts(gpu_check, tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    report.write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.a" name="test_ok"/>'
        '<testcase classname="tests.a" name="test_bad"><failure message="assert 1 == 2"/></testcase>'
        '<testcase classname="tests.a" name="test_gpu"><skipped message="needs a CUDA device"/></testcase>'
        "</testsuite></testsuites>"
    )
    counts = gpu_check.junit_counts(report)
    assert (counts["tests"], counts["passed"], counts["failures"], counts["skipped"]) == (3, 1, 1, 1)
    assert counts["problems"] == [
        {"test": "tests.a::test_bad", "kind": "failure", "message": "assert 1 == 2"}
    ]
    assert "missing" in gpu_check.junit_counts(tmp_path / "none.xml")["report"]


def test_json_keeps_non_finite_numbers_as_strings(gpu_check) -> None:
    assert gpu_check.json_safe({"loss": math.nan, "rows": (1.0, math.inf), "path": Path("a")}) == {
        "loss": "nan",
        "rows": [1.0, "inf"],
        "path": "a",
    }


def test_a_missing_package_stops_the_check_before_any_part_and_says_how_to_carry_it(
    gpu_check, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A bare GPU image lacks lmdb, diffusers and beartype: the check must stop at once and name them,
    not spend the machine's minutes failing every part at its first import."""
    (tmp_path / "needs_an_absent_package.py").write_text("import package_nobody_installed.sub\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(gpu_check, "PART_MODULES", ("json", "needs_an_absent_package"))
    out = tmp_path / "out"
    status = gpu_check.main(
        ["--device", "cpu", "--smoke", "--out", str(out), "--work-dir", str(tmp_path / "w")]
    )
    assert status == 2
    error = capsys.readouterr().err
    assert "package_nobody_installed" in error and "tools/gpu_wheels.sh" in error
    document = json.loads((out / "gpu_check.json").read_text())
    assert document["stopped"]["missing_imports"] == ["package_nobody_installed"]
    assert "parts" not in document or not document["parts"]


def test_the_device_wrapper_runs_the_check_and_keeps_its_log_and_exit_status(tmp_path: Path) -> None:
    """tools/gpu_run.sh is the one command a GPU machine runs: it passes its arguments on, writes the
    log beside the JSON in $OUT, and exits as the check does (2 for a wrong option)."""
    repository = Path(__file__).resolve().parents[2]
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # python3 = this one
        "OUT": str(tmp_path / "out"),
        "GPU_WHEELS": str(tmp_path / "no-wheels"),  # not the checkout's .whl/, which holds another Python's
    }
    environment.pop("PYTHONPATH", None)
    command = ["bash", str(repository / "tools" / "gpu_run.sh"), "--device", "cpu", "--smoke"]
    chosen = ["--parts", "3", "--presets", "vqvae_voc_c4", "--work-dir", str(tmp_path / "work")]
    finished = subprocess.run(command + chosen, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    document = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert document["parts"]["summary"]["statuses"] == {"preset_steps": "pass"}
    assert "preset step: vqvae_voc_c4 bf16" in (tmp_path / "out" / "gpu_check.log").read_text()

    wrong = subprocess.run(command + ["--parts", "9"], env=environment, capture_output=True, timeout=120)
    assert wrong.returncode == 2
