"""GPU truth in one run (issue 16): GPU tests, sync check, aggregator bench, paper-preset steps, a training.

    bash tools/gpu_run.sh                                            # on a GPU machine: about 8 minutes
                                         # (installs the wheels of tools/gpu_wheels.sh carried in .whl/)
    PYTHONPATH=$PWD python tools/gpu_check.py --device cpu --smoke   # the same code at minute sizes
    PYTHONPATH=$PWD python tools/gpu_check.py --parts 3 --presets slotdiffusion_voc   # one part, one preset

The parts run in order, each with a share of ``--budget`` seconds (what a part leaves unused goes to the
next ones). The JSON is rewritten after every part and every case, so a run stopped by a timeout keeps
everything that finished:

1. ``pytest -m gpu`` over the test files that hold gpu-marked tests (a subprocess; pass/fail counts from
   its JUnit report), and the CUDA sync check (`metaslot.bench.aggregators.check_sync_free`: MetaSlot's
   training forward + codebook upkeep under ``torch.cuda.set_sync_debug_mode("error")``, past the
   one-off k-means) in fp32 and again inside bf16 autocast;
2. ``python -m cli.bench aggregators --device cuda --autocast bf16 --attention-paths auto projected``
   (MetaSlot vs Slot Attention at the three paper shapes, fp32 and bf16: is ``auto`` also the faster
   path here?), then the issue's command, the same with ``--compile``, in the time left;
3. one training step (bf16 autocast forward through the loop's `LossAndOutput`, backward, the preset's
   clipping and Adam, ``after_optimizer_step``) of each paper preset — dinosaur_voc, vqvae_voc c256 and
   c4, slate_voc, slotdiffusion_voc — at 256×256, batch 32, random weights, random images, nothing
   downloaded: images/s, peak memory, the first step's seconds. The specs are the presets' (through
   `metaslot.bench.pipelines`, DINOv2 backbone random); SLATE and SlotDiffusion get a random stage-1
   VQ-VAE built from the vqvae_voc preset of their variant and mapped in by name and shape, as a
   trained one is. Every preset eager first, then every preset under ``torch.compile`` (as ``--compile``
   wraps the training step) while the part's time lasts: a compiled case is not started with less time
   left than the slowest compilation so far took (rerun the rest with ``--parts 3 --presets ...``);
4. `metaslot.train.loop.train` on dinosaur_voc (random backbone) with synthetic 256×256 shapes for
   ``--train-steps`` steps under bf16: does the loss fall, is every logged number finite, and the codes in
   use and perplexity from ``metrics.jsonl``;
5. a summary (each part's status) and ``gpu_check.md``, the tables for docs/benchmarks.md.

``--smoke`` runs the same code at minute sizes (the bench's smoke shapes, batch 2, a tiny DINOSAUR for a
few training steps). On a CPU the sync check and ``torch.compile`` are skipped with the reason recorded
(inductor's C++ compilation takes minutes per graph there), and part 4 trains in fp32 (the loop's bf16
needs CUDA). Output (``--out``, default ``$OUT`` or ``./gpu-check``): ``gpu_check.json``,
``gpu_check.md`` and the bench's own JSON; scratch (the training run, the JUnit report) goes to
``--work-dir``. The exit status is 1 when a part failed, 2 for a wrong option or when a package the parts
import is missing (then nothing runs: a bare GPU image needs the wheels of ``tools/gpu_wheels.sh``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:  # a bare GPU machine has the checkout, not an installed package
    sys.path.insert(0, str(REPOSITORY))

import attrs  # noqa: E402
import torch  # noqa: E402

from metaslot.errors import ConfigError, MetaslotError, TrainingInterrupted  # noqa: E402

PAPER_PRESETS: dict[str, tuple[str, str]] = {
    "dinosaur_voc": ("dinosaur", "c256"),
    "vqvae_voc_c256": ("vqvae", "c256"),
    "vqvae_voc_c4": ("vqvae", "c4"),
    "slate_voc": ("slate", "c256"),
    "slotdiffusion_voc": ("slotdiffusion", "c256"),
}
"""Part 3's presets: name → (``--model``, ``--vqvae-variant``); all on ``--data voc``."""

PART_NAMES = {
    1: "gpu_tests_and_sync",
    2: "aggregator_bench",
    3: "preset_steps",
    4: "training",
}
PART_SHARES = {1: 0.12, 2: 0.30, 3: 0.40, 4: 0.18}
"""Share of ``--budget`` per part (renormalised over the parts chosen)."""
COMPILE_GUESS_S = 30.0
"""Part 3 starts a compiled case only with this much time left (more once a compilation took longer)."""
MINIMUM_TRAINING_S = 45.0
"""Part 4 trains at least this long even when earlier parts overran (a compilation cannot be cut short)."""
CPU_COMPILE_REASON = (
    "torch.compile is skipped on the CPU: inductor's C++ compilation takes minutes per graph there "
    "(docs/benchmarks.md); the compiled rows are for CUDA"
)
PACKAGES = (
    "torchvision", "jaxtyping", "beartype", "attrs", "tyro", "safetensors", "numpy", "einops", "timm",
    "diffusers", "lmdb", "msgpack", "scipy", "PIL", "cv2", "matplotlib", "tqdm", "huggingface_hub",
    "pytest", "hypothesis", "sklearn", "av", "triton",
)  # fmt: skip
"""Import names of the package's dependencies (and the test extras): the machine line lists those missing."""
PART_MODULES = (
    "pytest",
    "beartype",  # the gpu-marked tests run with shape checks on
    "metaslot.bench.aggregators",
    "metaslot.bench.data",
    "metaslot.bench.pipelines",
    "metaslot.models.pipelines.slotdiffusion",
    "metaslot.train.loop",
)
"""What the parts import: a package one of these lacks stops the check before it starts (`missing_imports`)."""
WHEELS_HINT = (
    "a bare GPU image reaches no package index: run `bash tools/gpu_wheels.sh` here (wheels into .whl/), "
    "carry .whl to the GPU machine and run `bash tools/gpu_run.sh` there, which installs them first "
    '(docs/benchmarks.md, "Results: GPU — how to produce them")'
)


# --- settings, clock, report ----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    device: torch.device
    smoke: bool
    out: Path
    work_dir: Path
    parts: tuple[int, ...]
    presets: tuple[str, ...]
    budget_s: float
    train_steps: int
    repeats: int
    warmup: int

    @property
    def compiles(self) -> bool:
        """Whether compiled rows run: on CUDA only (see `CPU_COMPILE_REASON`)."""
        return self.device.type == "cuda"

    @property
    def dtype(self) -> torch.dtype:
        """bf16 autocast everywhere: the GPU training default (CPU autocast runs too, for the smoke)."""
        return torch.bfloat16


@dataclass(frozen=True)
class Clock:
    """Cumulative deadlines: part p may run until start + budget · (shares of the chosen parts up to p)."""

    start: float
    budget_s: float
    parts: tuple[int, ...]

    def deadline(self, part: int) -> float:
        total = sum(PART_SHARES[chosen] for chosen in self.parts)
        before = sum(PART_SHARES[chosen] for chosen in self.parts if chosen <= part)
        return self.start + self.budget_s * before / total

    def left(self, part: int) -> float:
        return self.deadline(part) - time.monotonic()


def json_safe(value: Any) -> Any:
    """Plain JSON: non-finite floats as strings ("nan", "inf"), paths as strings, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


class Report:
    """The JSON document and its Markdown tables, both rewritten atomically by every `save`."""

    def __init__(self, out: Path, machine: dict[str, Any], settings: dict[str, Any]) -> None:
        self.json_path = out / "gpu_check.json"
        self.markdown_path = out / "gpu_check.md"
        self.document: dict[str, Any] = {"machine": machine, "settings": settings, "parts": {}}

    def part(self, number: int) -> dict[str, Any]:
        """The (mutable) record of part ``number``; call `save` after changing it."""
        return self.document["parts"].setdefault(PART_NAMES.get(number, "summary"), {})

    def save(self) -> None:
        from metaslot.runtime.files import atomic_write_bytes

        text = json.dumps(json_safe(self.document), indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(self.json_path, text.encode())
        # The JSON is what counts: a table that cannot be drawn must not stop the run.
        try:
            tables = markdown(self.document)
        except Exception as error:
            tables = f"The tables could not be drawn ({type(error).__name__}: {error}); see gpu_check.json.\n"
        atomic_write_bytes(self.markdown_path, tables.encode())


def failure(error: BaseException) -> dict[str, Any]:
    """What a case that raised records: the error in one line and the end of its traceback."""
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return {
        "status": "error",
        "error": f"{type(error).__name__}: {' '.join(str(error).split())[:600]}",
        "traceback_tail": "".join(lines)[-2_500:],
    }


def out_of_time(part: int, clock: Clock) -> dict[str, Any]:
    return {"status": "skipped", "reason": f"part {part}'s share of --budget {clock.budget_s:.0f} s ran out"}


# --- machine ---------------------------------------------------------------------------------------


def nvidia_smi() -> dict[str, str]:
    """GPU name, driver and memory as nvidia-smi reports them (empty without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    query = "--query-gpu=name,driver_version,memory.total"
    try:
        answer = subprocess.run(
            ["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    fields = [part.strip() for part in answer.stdout.splitlines()[0].split(",")] if answer.stdout else []
    return dict(zip(("smi_name", "driver", "smi_memory"), fields, strict=False))


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_imports(modules: tuple[str, ...]) -> list[str]:
    """The top-level packages that importing ``modules`` finds missing. On a machine reached for minutes
    a part that fails at its first import wastes the whole run, so the check stops before it starts."""
    missing = set()
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            missing.add((error.name or module).partition(".")[0])
    return sorted(missing)


def describe_machine(device: torch.device) -> dict[str, Any]:
    """`metaslot.bench.machine.describe` plus the GPU's driver, memory and capability, and a one-line summary."""
    from metaslot.bench.machine import describe

    machine: dict[str, Any] = describe(device)
    machine["missing_packages"] = [name for name in PACKAGES if not installed(name)]
    if device.type != "cuda":
        machine["line"] = f"CPU only, no GPU used: {machine['device_name']}, torch {torch.__version__}"
        return machine
    properties = torch.cuda.get_device_properties(device)
    machine.update(nvidia_smi())
    machine.update(
        gpu_memory_gib=properties.total_memory / 2**30,
        compute_capability=f"{properties.major}.{properties.minor}",
        multiprocessors=properties.multi_processor_count,
        cudnn=torch.backends.cudnn.version(),
        bf16_supported=torch.cuda.is_bf16_supported(),
    )
    machine["line"] = (
        f"{machine['device_name']} ({machine['gpu_memory_gib']:.0f} GiB, sm {machine['compute_capability']}), "
        f"CUDA {torch.version.cuda}, driver {machine.get('driver', 'unknown')}, torch {torch.__version__}"
    )
    return machine


# --- subprocesses ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    command: list[str]
    returncode: int | None
    seconds: float
    timed_out: bool

    def as_record(self) -> dict[str, Any]:
        return {
            "command": " ".join(self.command[1:]),  # without the interpreter's path
            "returncode": self.returncode,
            "seconds": self.seconds,
            "timed_out": self.timed_out,
        }


def child_environment() -> dict[str, str]:
    """This environment with this checkout first on PYTHONPATH and the hub offline."""
    environment = dict(os.environ)
    paths = [str(REPOSITORY), *filter(None, [environment.get("PYTHONPATH")])]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment.setdefault("HF_HUB_OFFLINE", "1")
    environment.setdefault("PYTHONUNBUFFERED", "1")
    return environment


def run_command(command: list[str], timeout: float) -> CommandResult:
    """Run ``command`` from the repository root in its own process group; past ``timeout`` seconds the
    whole group (compile workers included) gets SIGTERM, then SIGKILL."""
    start = time.perf_counter()
    if timeout <= 0:
        return CommandResult(command, None, 0.0, True)
    process = subprocess.Popen(command, cwd=REPOSITORY, env=child_environment(), start_new_session=True)
    try:
        returncode: int | None = process.wait(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
        for kill_signal, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, kill_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
                break
        returncode = process.poll()
    return CommandResult(command, returncode, time.perf_counter() - start, timed_out)


# --- part 1: gpu-marked tests and the sync check -----------------------------------------------------


def gpu_test_files() -> list[Path]:
    """The test files holding gpu-marked tests: ``pytest -m gpu`` over them selects what it selects over
    the whole suite, without collecting (and importing the dependencies of) some 850 other tests."""
    return sorted(
        path for path in (REPOSITORY / "tests").rglob("test_*.py") if "mark.gpu" in path.read_text()
    )


def junit_counts(path: Path) -> dict[str, Any]:
    """Tests, passed, failed, errors, skipped, and each failure's test and message, from a JUnit XML report."""
    if not path.is_file():
        return {"report": "missing: pytest did not write its JUnit report"}
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {
        name: sum(int(suite.get(name, 0)) for suite in suites)
        for name in ("tests", "failures", "errors", "skipped")
    }
    problems = [
        {
            "test": f"{case.get('classname')}::{case.get('name')}",
            "kind": child.tag,
            "message": " ".join((child.get("message") or child.text or "").split())[:400],
        }
        for case in root.iter("testcase")
        for child in case
        if child.tag in ("failure", "error")
    ]
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed, "problems": problems}


def gpu_tests(settings: Settings, seconds: float) -> dict[str, Any]:
    """``pytest -m gpu`` in a subprocess: pass when it exits 0 with nothing failed; skipped when every
    test skipped itself (no CUDA device)."""
    report = settings.work_dir / "gpu-tests.xml"
    files = gpu_test_files()
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    command += ["--continue-on-collection-errors", f"--junitxml={report}", *map(str, files)]
    result = run_command(command, seconds)
    counts = junit_counts(report)
    record = {**result.as_record(), "files": [str(path.relative_to(REPOSITORY)) for path in files], **counts}
    if result.timed_out:
        status = "timeout"
    elif result.returncode == 0 and counts.get("passed", 0) > 0:
        status = "pass"
    elif result.returncode == 0 and counts.get("skipped", 0) == counts.get("tests"):
        status = "skipped"
    else:
        status = "fail"
    return {"status": status, **record}


def format_tests(tests: dict[str, Any]) -> str:
    if "tests" not in tests:
        return f"{tests['status']} after {tests['seconds']:.0f} s, no report"
    return (
        f"{tests['status']}: {tests['passed']} passed, {tests['failures']} failed, {tests['errors']} errors, "
        f"{tests['skipped']} skipped in {tests['seconds']:.0f} s"
    )


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def sync_checks(settings: Settings) -> dict[str, Any]:
    """`check_sync_free` at the VOC shape (smoke: minute shape), in fp32 and inside bf16 autocast (there
    the upkeep runs under autocast too, stricter than training, where it runs after the forward)."""
    from metaslot.bench.aggregators import check_sync_free

    scale = "smoke" if settings.smoke else "quick"
    checks: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        try:
            with precision_context(precision, settings.device):
                checks[precision] = check_sync_free(settings.device, scale, preset_models("c256"))
        except Exception as error:  # a crash is a finding: keep it and go on
            checks[precision] = failure(error)
    statuses = {check["status"] for check in checks.values()}
    status = "pass" if statuses == {"pass"} else "skipped" if statuses == {"skipped"} else "fail"
    return {"status": status, **checks}


def part_gpu_tests_and_sync(settings: Settings, clock: Clock, report: Report) -> None:
    record = report.part(1)
    record["sync_check"] = sync_checks(settings)
    print(f"sync check: {record['sync_check']['status']}", flush=True)
    report.save()
    record["gpu_tests"] = gpu_tests(settings, clock.left(1))
    tests = record["gpu_tests"]
    print(f"pytest -m gpu: {format_tests(tests)}", flush=True)
    record["status"] = combined(record["sync_check"]["status"], tests["status"])
    report.save()


# --- part 2: the aggregator bench ------------------------------------------------------------------


def bench_command(settings: Settings, output: Path, compiled: bool) -> list[str]:
    command = [sys.executable, "-m", "cli.bench", "aggregators", "--device", settings.device.type]
    command += ["--autocast", "bf16", "--attention-paths", "auto", "projected", "--output", str(output)]
    return command + (["--compile"] if compiled else []) + (["--smoke"] if settings.smoke else [])


def bench_run(settings: Settings, output: Path, compiled: bool, seconds: float) -> dict[str, Any]:
    """One bench subprocess; its rows and sync check when it finished."""
    result = run_command(bench_command(settings, output, compiled), seconds)
    record: dict[str, Any] = result.as_record()
    if result.returncode == 0 and output.is_file():
        written = json.loads(output.read_text())
        record.update(
            status="pass", rows=written.get("aggregators", []), sync_check=written.get("sync_check")
        )
    else:
        record["status"] = "timeout" if result.timed_out else "fail"
    return record


def part_aggregator_bench(settings: Settings, clock: Clock, report: Report) -> None:
    """The bench eager first (fp32 and bf16 rows at the three paper shapes: the rows that answer "is
    ``auto`` also the faster path here?" arrive whatever happens next), then on CUDA the issue's command
    with ``--compile`` in the time left; its rows replace the eager ones when it finishes."""
    record = report.part(2)
    eager = bench_run(settings, settings.out / "bench_aggregators_eager.json", False, clock.left(2))
    record.update(runs=[eager], rows=eager.get("rows", []), status=eager["status"])
    report.save()
    if not settings.compiles:
        record["compile"] = CPU_COMPILE_REASON
    else:
        compiled = bench_run(settings, settings.out / "bench_aggregators.json", True, clock.left(2))
        record["runs"].append(compiled)
        if compiled["status"] == "pass":
            record.update(rows=compiled["rows"], status="pass")
        elif eager["status"] == "pass":
            record["status"] = "partial"  # eager rows only: the compiled run timed out or failed
        else:
            record["status"] = worst(eager["status"], compiled["status"])
    print(f"aggregator bench: {record['status']} ({len(record['rows'])} rows)", flush=True)
    report.save()


# --- part 3: one training step of each paper preset --------------------------------------------------


def preset_models(vqvae_variant: str) -> Callable[[str, str], object]:
    """The `PresetModels` the benchmarks take: the model spec of a training preset (VQ-VAE variant fixed)."""
    from metaslot.train.presets import preset

    def models(model: str, data: str) -> object:
        return preset(model, data, vqvae_variant=vqvae_variant).model

    return models


def preset_case(name: str, smoke: bool) -> Any:
    """The bench's `PipelineCase` of preset ``name``: the paper spec (random backbone, batch 32, 256×256),
    or with ``smoke`` the bench's minute version of it (batch 2)."""
    from metaslot.bench import pipelines

    model, variant = PAPER_PRESETS[name]
    models = preset_models(variant)
    case = pipelines.cases(("smoke" if smoke else "paper",), models, models=(model,))[0]  # type: ignore[arg-type]
    if smoke and model == "vqvae":  # the bench's smoke VQ-VAE has one code width: keep the variant's
        return attrs.evolve(case, spec=attrs.evolve(case.spec, code_dim=models(model, "voc").code_dim))
    return case


def stage_one_vqvae(spec: Any, smoke: bool) -> torch.nn.Module:
    """A random stage-1 VQ-VAE for a stage-2 spec: at paper size built from the vqvae_voc preset of the
    spec's variant (the run a real two-stage training does first); at smoke size from the spec's own,
    shrunk VQ-VAE spec."""
    from metaslot.train.presets import preset

    stage_one = spec.vqvae if smoke else preset("vqvae", "voc", vqvae_variant=spec.stage_one_variant).model
    return attrs.evolve(stage_one, pretrained=None, lpips_weight=0.0).build()  # random: nothing downloaded


def build_preset_pipeline(case: Any, smoke: bool) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The case's pipeline; a stage-2 one with its random stage-1 VQ-VAE mapped in (name- and shape-checked
    by `checkpoint_mapping.load_vqvae_into`, which training uses for ``--vqvae``)."""
    from metaslot.models.pipelines.checkpoint_mapping import load_vqvae_into
    from metaslot.models.pipelines.stage_two import StageTwoSpec

    pipeline = case.spec.build()
    if not isinstance(case.spec, StageTwoSpec):
        return pipeline, {}
    origin = f"a random vqvae_voc {case.spec.stage_one_variant} VQ-VAE"
    state = stage_one_vqvae(case.spec, smoke).state_dict()
    loaded = load_vqvae_into(pipeline, state, data="voc", origin=origin)
    return pipeline, {"stage_one": {"variant": case.spec.stage_one_variant, "tensors_mapped": len(loaded)}}


class TrainingStep:
    """One optimiser step as the training loop takes it: the autocast forward through `LossAndOutput`
    (compiled as ``--compile`` compiles it), backward, the preset's gradient clipping and Adam, then
    ``after_optimizer_step`` (MetaSlot's codebook upkeep). Keeps the last loss (a device tensor)."""

    def __init__(
        self,
        pipeline: torch.nn.Module,
        images: torch.Tensor,
        config: Any,
        dtype: torch.dtype,
        compiled: bool,
    ) -> None:
        from metaslot.train.preparation import LossAndOutput, trainable_parameters

        self.pipeline = pipeline.train()
        self.images = images
        self.config = config
        self.dtype = dtype
        runner = LossAndOutput(pipeline)
        self.runner = torch.compile(runner) if compiled else runner
        self.parameters = trainable_parameters(pipeline)
        self.optimizer = config.optim.build(self.parameters)
        self.loss: torch.Tensor | None = None

    def __call__(self) -> None:
        from metaslot.runtime.device import autocast
        from metaslot.train.loop import clip_gradients

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.images.device, self.dtype):
            loss, output = self.runner(self.images)
        loss.float().backward()
        clip_gradients(self.parameters, self.config.optim)
        self.optimizer.step()
        self.pipeline.after_optimizer_step(output)
        self.loss = loss.detach()


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def release_memory(device: torch.device, compiled: bool) -> None:
    gc.collect()
    if compiled:
        torch._dynamo.reset()  # drop the compiled graphs of this pipeline before the next one
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def time_preset_step(name: str, settings: Settings, compiled: bool) -> dict[str, Any]:
    """Images/s (min/median/max over ``repeats`` after the first step and ``warmup`` more), peak memory,
    the first step's seconds (compilation included) and the last loss of one preset's training step."""
    from metaslot.bench.timing import synchronise, time_step
    from metaslot.train.presets import preset

    model, variant = PAPER_PRESETS[name]
    case = preset_case(name, settings.smoke)
    torch.manual_seed(0)
    pipeline, notes = build_preset_pipeline(case, settings.smoke)
    pipeline = pipeline.to(settings.device)
    images = torch.rand(case.batch_size, 3, case.image_size, case.image_size, device=settings.device)
    config = preset(model, "voc", vqvae_variant=variant)
    step = TrainingStep(pipeline, images, config, settings.dtype, compiled)
    start = time.perf_counter()
    step()
    synchronise(settings.device)
    first_step_s = time.perf_counter() - start
    timing = time_step(step, device=settings.device, repeats=settings.repeats, warmup=settings.warmup)
    loss = float(step.loss) if step.loss is not None else math.nan
    return {
        "status": "pass" if math.isfinite(loss) else "fail",
        "preset": name,
        "variant": "bf16+compile" if compiled else "bf16",
        "batch_size": case.batch_size,
        "preset_batch_size": config.loop.batch_size,
        "image_size": case.image_size,
        "trainable_parameters": sum(parameter.numel() for parameter in step.parameters),
        "first_step_s": first_step_s,
        "step": timing.milliseconds(),
        "images": timing.throughput(case.batch_size),
        "peak_memory_gib": peak_memory_gib(settings.device),
        "loss": loss,
        **notes,
    }


def part_preset_steps(settings: Settings, clock: Clock, report: Report) -> None:
    """Every chosen preset eager, then (on CUDA) every one compiled; each row saved as it comes."""
    record = report.part(3)
    rows: list[dict[str, Any]] = record.setdefault("rows", [])
    if not settings.compiles:
        record["compile"] = CPU_COMPILE_REASON
    plan = [(name, False) for name in settings.presets]
    plan += [(name, True) for name in settings.presets] if settings.compiles else []
    compile_s = COMPILE_GUESS_S  # what starting a compiled case needs: the slowest first step so far
    for name, compiled in plan:
        needed = compile_s if compiled else 0.0
        if clock.left(3) <= needed:
            row = {"preset": name, "variant": "bf16+compile" if compiled else "bf16", **out_of_time(3, clock)}
            row["reason"] += f" (a compiled step needs about {needed:.0f} s)" if compiled else ""
        else:
            release_memory(settings.device, compiled)
            try:
                row = time_preset_step(name, settings, compiled)
            except Exception as error:  # an OOM, a graph break that fails, a dtype error: record, go on
                row = {"preset": name, "variant": "bf16+compile" if compiled else "bf16", **failure(error)}
            release_memory(settings.device, compiled)
            if compiled and "first_step_s" in row:
                compile_s = max(compile_s, row["first_step_s"])
        rows.append(row)
        print(f"preset step: {format_preset_row(row)}", flush=True)
        report.save()
    record["status"] = combined(*(row["status"] for row in rows))
    report.save()


def format_preset_row(row: dict[str, Any]) -> str:
    if row["status"] in ("pass", "fail") and "images" in row:
        memory = row["peak_memory_gib"]
        memory_text = f", peak {memory:.1f} GiB" if memory is not None else ""
        return (
            f"{row['preset']} {row['variant']}: {row['images']['median_per_s']:.1f} images/s "
            f"(first step {row['first_step_s']:.1f} s{memory_text}, loss {row['loss']:.4g}) {row['status']}"
        )
    return f"{row['preset']} {row['variant']}: {row['status']} {row.get('error') or row.get('reason', '')}"


# --- part 4: a short dinosaur_voc training on synthetic shapes --------------------------------------


def training_config(settings: Settings) -> Any:
    """dinosaur_voc with a random backbone on synthetic shapes at its 256×256 input (smoke: the bench's
    tiny DINOSAUR at 64×64, batch 8), ``--train-steps`` steps with the preset's optimiser and schedule,
    one validation of two batches at the end, bf16 on CUDA."""
    from metaslot.bench import pipelines
    from metaslot.data.shapes import ShapesSpec
    from metaslot.train.presets import preset

    base = preset("dinosaur", "voc")
    if settings.smoke:
        model, batch_size = pipelines.tiny_spec("dinosaur", preset_models("c256")), pipelines.TINY_BATCH
    else:
        model, batch_size = pipelines.paper_spec("dinosaur", preset_models("c256")), base.loop.batch_size
    steps = settings.train_steps
    loop = attrs.evolve(
        base.loop,
        steps=steps,
        batch_size=batch_size,
        val_split="val",
        val_every=steps,
        val_batches=2,
        checkpoint_every=steps,
        keep_checkpoints=1,
        log_every=max(1, steps // 30),
        num_workers=min(8, os.cpu_count() or 1),
        seed=0,
    )
    return attrs.evolve(
        base,
        name="dinosaur-voc-shapes",
        model=model,
        data=ShapesSpec(resolution=model.image_size),  # type: ignore[attr-defined]
        loop=loop,
        evaluation=attrs.evolve(base.evaluation, pictures=0),
        runs_dir=settings.work_dir / "runs",
        device=settings.device.type,
        precision="bf16" if settings.device.type == "cuda" else "fp32",
        compile=False,
        progress=False,
        evaluate_at_end=False,
    )


@contextlib.contextmanager
def interrupt_after(seconds: float) -> Iterator[None]:
    """SIGINT to this process after ``seconds``: the training loop then checkpoints and raises
    `TrainingInterrupted` at its next step boundary, and metrics.jsonl keeps every logged row."""
    timer = threading.Timer(max(seconds, 0.0), os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def as_number(value: Any) -> float:
    """A metrics.jsonl value as a float (non-finite ones are stored as strings, "nan" or "inf")."""
    return float(value) if isinstance(value, (int, float, str)) else math.nan


def loss_trend(losses: list[float]) -> dict[str, Any]:
    """Mean loss of the first and last quarter of the logged steps; ``falls`` when the last is lower."""
    if len(losses) < 2:
        return {"first": None, "last": None, "falls": None, "logged": len(losses)}
    quarter = max(1, len(losses) // 4)
    first, last = statistics.fmean(losses[:quarter]), statistics.fmean(losses[-quarter:])
    return {"first": first, "last": last, "falls": last < first, "logged": len(losses)}


def training_record(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Loss trend, finiteness and the codebook's codes in use and perplexity from metrics.jsonl rows."""
    train_rows = [row for row in rows if row.get("split") == "train"]
    numbers = [as_number(value) for row in rows for name, value in row.items() if name not in ("split",)]
    losses = [as_number(row["loss"]) for row in train_rows]
    series = [
        {
            "step": row["step"],
            "loss": as_number(row["loss"]),
            "codes_in_use": as_number(row.get("codebook/codes_in_use")),
            "perplexity": as_number(row.get("codebook/perplexity")),
        }
        for row in train_rows
    ]
    validation = [row for row in rows if row.get("split") == "val"]
    rates = [as_number(row["time/steps_per_second"]) for row in train_rows if "time/steps_per_second" in row]
    return {
        "loss": loss_trend(losses),
        "logged_steps_per_second_median": statistics.median(rates) if rates else None,
        "all_finite": all(math.isfinite(number) for number in numbers),
        "last": series[-1] if series else None,
        "series": series,
        "validation": validation[-1] if validation else None,
    }


def part_training(settings: Settings, clock: Clock, report: Report) -> None:
    """`metaslot.train.loop.train` with the configuration above, stopped by SIGINT if part 4's time runs out."""
    from metaslot.eval.session import SplitEvaluation
    from metaslot.train.logging import read_metrics
    from metaslot.train.loop import train

    record = report.part(4)
    config = training_config(settings)
    record.update(
        steps_requested=config.loop.steps,
        batch_size=config.loop.batch_size,
        image_size=config.model.image_size,
        precision=config.precision,
    )
    if config.precision != "bf16":
        record["precision_note"] = "the training loop's bf16 needs CUDA (resolve_precision); fp32 on the CPU"
    shutil.rmtree(config.run_dir, ignore_errors=True)  # this script's own scratch run from an earlier call
    start = time.perf_counter()
    try:
        with interrupt_after(max(clock.left(4), MINIMUM_TRAINING_S)):
            result = train(config, evaluation=SplitEvaluation())
        record["stopped"] = None
        record["steps_done"] = result.step
    except (TrainingInterrupted, KeyboardInterrupt) as error:
        record["stopped"] = f"part 4's time ran out ({type(error).__name__})"
    except Exception as error:  # NonFiniteLossError, a dtype error under bf16, an OOM: keep what was logged
        record.update(failure(error))
    record["seconds"] = time.perf_counter() - start
    rows = read_metrics(config.run_dir)
    record.update(training_record(rows))
    record.setdefault("steps_done", max((row["step"] for row in rows), default=0))
    record["wall_steps_per_second"] = record["steps_done"] / max(record["seconds"], 1e-9)  # set-up included
    if record.get("status") != "error":
        trend = record["loss"]
        record["status"] = "pass" if trend["falls"] and record["all_finite"] else "fail"
    print(f"training: {format_training(record)}", flush=True)
    report.save()


def format_training(record: dict[str, Any]) -> str:
    if record.get("status") == "error":
        return f"error {record['error']}"
    trend, last = record["loss"], record["last"] or {}
    rate = record.get("logged_steps_per_second_median")
    images = f" ({rate * record['batch_size']:.0f} images/s while logging)" if rate else ""
    return (
        f"{record['status']}: {record['steps_done']} of {record['steps_requested']} steps in "
        f"{record['seconds']:.0f} s{images}, loss {cell(trend['first'], 4)} → {cell(trend['last'], 4)} "
        f"(falls: {trend['falls']}), all finite: {record['all_finite']}, codes in use "
        f"{cell(last.get('codes_in_use'), 0)}, perplexity {cell(last.get('perplexity'), 2)}"
        + (f", stopped: {record['stopped']}" if record.get("stopped") else "")
    )


# --- part 5: summary and Markdown ------------------------------------------------------------------

STATUS_ORDER = ("error", "fail", "timeout", "partial", "skipped", "pass")


def worst(*statuses: str) -> str:
    """The worst of several statuses (an unknown one counts as a failure)."""
    return min(statuses, key=lambda status: STATUS_ORDER.index(status) if status in STATUS_ORDER else 1)


def combined(*statuses: str) -> str:
    """A part's status from its cases': the worst failure if any; else pass when all passed, partial
    when some passed (or were partial) and others were skipped, skipped when none ran."""
    failures = [status for status in statuses if status not in ("pass", "partial", "skipped")]
    if failures:
        return worst(*failures)
    if statuses and all(status == "pass" for status in statuses):
        return "pass"
    return "partial" if any(status in ("pass", "partial") for status in statuses) else "skipped"


def cell(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "–" if value is None else str(value)


def spread(figures: dict[str, float], kind: str) -> str:
    unit = "ms" if kind == "ms" else "per_s"
    return f"{figures[f'median_{unit}']:.1f} [{figures[f'min_{unit}']:.1f}–{figures[f'max_{unit}']:.1f}]"


def markdown(document: dict[str, Any]) -> str:
    """The tables for docs/benchmarks.md ("Results: GPU") from the document as it stands."""
    parts = document["parts"]
    lines = [f"Machine: {document['machine']['line']}; commit {document['machine'].get('git_commit')}."]
    lines += [f"Settings: {document['settings']}", ""]
    first = parts.get(PART_NAMES[1], {})
    if "gpu_tests" in first:
        tests = first["gpu_tests"]
        lines.append(f"- `pytest -m gpu`: {format_tests(tests)}")
        lines += [
            f"  - {problem['kind']} {problem['test']}: {problem['message']}"
            for problem in tests.get("problems", [])
        ]
    for precision, check in first.get("sync_check", {}).items():
        if isinstance(check, dict):
            detail = (
                check.get("error")
                or check.get("reason")
                or f"{check.get('steps')} steps, k-means covered: {check.get('kmeans_covered')}"
            )
            lines.append(f"- sync check ({precision}): {check['status']} — {detail}")
    lines += [""] + aggregator_table(parts.get(PART_NAMES[2], {}).get("rows", []))
    lines += [""] + preset_table(parts.get(PART_NAMES[3], {}).get("rows", []))
    training = parts.get(PART_NAMES[4])
    if training and "status" in training:
        lines += [
            "",
            f"Training (dinosaur_voc, random backbone, synthetic shapes): {format_training(training)}",
        ]
    summary = parts.get("summary")
    if summary:
        lines += ["", f"Summary: {summary}"]
    return "\n".join(lines) + "\n"


def aggregator_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "| shape | k | path | variant | Slot Attention train | MetaSlot train | ratio | Slot Attention eval | MetaSlot eval | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['dataset']} | {row['k']} | {row['attention_path']} | {row['variant']} | "
            f"{spread(row['slot_attention_train'], 'ms')} | {spread(row['metaslot_train'], 'ms')} | "
            f"{row['ratio_train']:.2f}× | {spread(row['slot_attention_eval'], 'ms')} | "
            f"{spread(row['metaslot_eval'], 'ms')} | {row['ratio_eval']:.2f}× |"
        )
    return lines


def preset_table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "| preset | variant | batch | image | images/s median [min–max] | ms/step | peak memory GiB | first step s | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "images" in row:
            lines.append(
                f"| {row['preset']} | {row['variant']} | {row['batch_size']} | {row['image_size']} | "
                f"{spread(row['images'], 'per_s')} | {row['step']['median_ms']:.1f} | "
                f"{cell(row['peak_memory_gib'], 2)} | {row['first_step_s']:.1f} | {row['status']} |"
            )
        else:
            reason = row.get("error") or row.get("reason", "")
            lines.append(
                f"| {row['preset']} | {row['variant']} | | | | | | | {row['status']}: {reason[:120]} |"
            )
    return lines


def part_summary(report: Report, started: float) -> bool:
    """Each part's status and the total seconds; True when no part failed."""
    statuses = {
        name: record.get("status", "missing")
        for name, record in report.document["parts"].items()
        if name != "summary"
    }
    passed = all(status in ("pass", "partial", "skipped") for status in statuses.values())
    summary = report.part(5)
    summary.update(statuses=statuses, passed=passed, seconds=time.monotonic() - started)
    report.save()
    print(f"summary: {statuses} in {summary['seconds']:.0f} s -> {report.json_path}", flush=True)
    return passed


# --- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tools/gpu_check.py",
        description="GPU tests, sync check, aggregator bench, paper-preset steps and a short training, "
        "written to JSON after every part.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--device", choices=("auto", "cuda", "cpu"), default="auto", help="auto: cuda when present"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="minute sizes: checks the plumbing (numbers mean nothing)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default $OUT, else ./gpu-check)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="scratch folder (default: a new temporary one)"
    )
    parser.add_argument(
        "--parts", type=int, nargs="+", choices=sorted(PART_NAMES), default=sorted(PART_NAMES)
    )
    parser.add_argument("--presets", nargs="+", choices=tuple(PAPER_PRESETS), default=tuple(PAPER_PRESETS))
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds for all parts (default 450; smoke 170)"
    )
    parser.add_argument(
        "--train-steps", type=int, default=None, help="part 4's steps (default 300; smoke 24)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="part 3's timed steps (default 5; smoke 1)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="part 3's untimed steps after the first (default 1; smoke 0)"
    )
    return parser


def parse_settings(argv: list[str] | None) -> Settings:
    from metaslot.runtime.device import resolve_device

    arguments = build_parser().parse_args(argv)
    device = resolve_device(arguments.device)
    if device.type == "cpu" and not arguments.smoke:
        raise ConfigError(
            "the paper sizes take minutes per step on a CPU (one autoencoder step took about 3 minutes): "
            "pass --smoke for the CPU, or run on a GPU"
        )
    smoke = arguments.smoke
    out = arguments.out or Path(os.environ.get("OUT") or "gpu-check")
    work_dir = arguments.work_dir or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    settings = Settings(
        device=device,
        smoke=smoke,
        out=out,
        work_dir=work_dir,
        parts=tuple(sorted(set(arguments.parts))),
        presets=tuple(dict.fromkeys(arguments.presets)),
        budget_s=arguments.budget or (170.0 if smoke else 450.0),
        train_steps=arguments.train_steps or (24 if smoke else 300),
        repeats=arguments.repeats or (1 if smoke else 5),
        warmup=arguments.warmup if arguments.warmup is not None else (0 if smoke else 1),
    )
    if settings.train_steps < 2 or settings.repeats < 1 or settings.warmup < 0 or settings.budget_s <= 0:
        raise ConfigError(
            f"--train-steps ({settings.train_steps}) must be at least 2, --repeats ({settings.repeats}) at "
            f"least 1, --warmup ({settings.warmup}) at least 0 and --budget ({settings.budget_s}) positive"
        )
    return settings


PARTS: dict[int, Callable[[Settings, Clock, Report], None]] = {
    1: part_gpu_tests_and_sync,
    2: part_aggregator_bench,
    3: part_preset_steps,
    4: part_training,
}


def run(settings: Settings) -> bool:
    """Every chosen part in order, then the summary; True when no part failed."""
    started = time.monotonic()
    settings.out.mkdir(parents=True, exist_ok=True)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    report = Report(settings.out, describe_machine(settings.device), settings_record(settings))
    machine = report.document["machine"]
    print(f"machine: {machine['line']}", flush=True)
    if machine["missing_packages"]:
        print(f"packages not installed: {machine['missing_packages']}", flush=True)
    report.save()
    missing = missing_imports(PART_MODULES)
    if missing:
        report.document["stopped"] = {"missing_imports": missing, "hint": WHEELS_HINT}
        report.save()
        raise ConfigError(f"the check's parts import {', '.join(missing)}, not installed here; {WHEELS_HINT}")
    clock = Clock(started, settings.budget_s, settings.parts)
    for number in settings.parts:
        print(
            f"\n== part {number}: {PART_NAMES[number]} (until +{clock.deadline(number) - started:.0f} s)",
            flush=True,
        )
        try:
            PARTS[number](settings, clock, report)
        except Exception as error:  # a part that crashes outside its cases: record it and go on
            report.part(number).update(failure(error))
            print(f"part {number}: {report.part(number)['error']}", flush=True)
            report.save()
    return part_summary(report, started)


def settings_record(settings: Settings) -> dict[str, Any]:
    return {
        "device": str(settings.device),
        "smoke": settings.smoke,
        "parts": list(settings.parts),
        "presets": list(settings.presets),
        "budget_s": settings.budget_s,
        "train_steps": settings.train_steps,
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "work_dir": str(settings.work_dir),
    }


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv)
        return 0 if run(settings) else 1
    except MetaslotError as error:
        print(f"gpu_check: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
