"""`python -m cli.bench [aggregators|pipelines|data|all] [--quick] [--device cpu|cuda] ...`: speed tables + JSON.

Groups (``all`` by default): ``aggregators`` (MetaSlot vs Slot Attention train and eval steps at the
preset shapes, with ratios), ``pipelines`` (training images/s of each pipeline at a tiny size, and on
CUDA or with ``--sizes tiny paper`` at the paper size; with ``--kept-fraction 1.0 0.67 0.5`` instead
DINOSAUR and the autoencoder with MetaSlot at forced kept fractions beside Slot Attention, train and
eval, with peak memory); ``costs`` (only when named: FLOPs of a training step of each paper preset by
part, CPU s/image at batch 2, peak memory, a projection of GPU-hours) and ``data`` (loader images/s). Every figure is min/median/max over repeats after warm-up. The
JSON (``--output``, default ``runs/bench/bench-<device>-<date>.json``) holds the machine description
and every row; it is rewritten after each group, so an interrupted run keeps what it measured.
On CUDA a sync check runs MetaSlot's training forward and upkeep under
``torch.cuda.set_sync_debug_mode("error")``; ``--autocast bf16`` and ``--compile`` add variant rows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

from metaslot.cli._errors import user_errors
from metaslot.errors import ConfigError

PROGRAM = "python -m cli.bench"
GROUPS = ("aggregators", "pipelines", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Speed benchmarks: prints one table per group and writes JSON with the machine description.",
        allow_abbrev=False,
    )
    parser.add_argument("group", nargs="?", default="all", choices=(*GROUPS, "costs", "all"))
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        "--quick",
        action="store_true",
        help="about a minute: VOC aggregator shape only, tiny pipelines, small data, fewer repeats",
    )
    scale.add_argument(
        "--smoke",
        action="store_true",
        help="minute shapes and one repeat: checks the command runs (numbers mean nothing)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per figure (default: per group, fewer with --quick)",
    )
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed calls before the repeats (default: per group)"
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        choices=("tiny", "paper"),
        default=None,
        help="pipeline sizes (default: tiny, plus paper on CUDA; tiny with --quick)",
    )
    _add_cost_options(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 with --quick/--smoke, steadier on a busy machine; else torch's default)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="JSON file to write (default under runs/bench/)"
    )
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows for the aggregators")
    parser.add_argument(
        "--attention-paths",
        nargs="+",
        choices=("auto", "projected", "feature_space"),
        default=["auto", "projected"],
        help="how the aggregators read the features, one row each (default: auto and projected, the "
        "reference's formulation)",
    )
    parser.add_argument(
        "--autocast",
        choices=("bf16",),
        default=None,
        help="add bf16-autocast rows (aggregators and pipelines)",
    )
    return parser


def _add_cost_options(parser: argparse.ArgumentParser) -> None:
    """What the kept-fraction rows and the costs group read (issue 26)."""
    parser.add_argument(
        "--kept-fraction",
        nargs="+",
        type=float,
        default=None,
        metavar="F",
        help="pipelines group: time DINOSAUR and the autoencoder with MetaSlot at these forced kept "
        "fractions beside Slot Attention (train and eval, peak memory) instead of the five-pipeline table",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="pipelines group: batch size (default: 32 at the paper size, 8 tiny, 2 smoke)",
    )
    parser.add_argument(
        "--utilisation",
        type=float,
        default=0.35,
        help="costs group: the share of the GPU's dense bf16 peak the GPU-hours projection assumes",
    )


def _scale(arguments: argparse.Namespace) -> str:
    return "smoke" if arguments.smoke else "quick" if arguments.quick else "full"


def _counts(arguments: argparse.Namespace, quick: int, full: int, warmup: int) -> tuple[int, int]:
    """(repeats, warm-up) of one group: the flags when given, else the group's defaults for the scale."""
    scale = _scale(arguments)
    default_repeats = {"smoke": 1, "quick": quick, "full": full}[scale]
    repeats = arguments.repeats if arguments.repeats is not None else default_repeats
    chosen_warmup = arguments.warmup if arguments.warmup is not None else (1 if scale == "smoke" else warmup)
    from metaslot.bench.timing import check_counts

    check_counts(repeats, chosen_warmup)
    if arguments.compile and chosen_warmup < 1:
        raise ConfigError("--compile needs --warmup 1 or more: the compilation happens in the warm-up")
    return repeats, chosen_warmup


def preset_model(model: str, data: str) -> object:
    """The model spec of the training preset ``model`` × ``data``: the shapes the benchmarks time."""
    from metaslot.train.presets import preset

    return preset(model, data).model


def preset_run(model: str, data: str, vqvae_variant: str) -> tuple[object, int, int]:
    """(model spec, steps, batch size) of the training preset ``model`` × ``data``: what the costs group
    projects a run from."""
    from metaslot.train.presets import preset

    config = preset(model, data, vqvae_variant=vqvae_variant)
    return config.model, config.loop.steps, config.loop.batch_size


def smoke_run(model: str, data: str, vqvae_variant: str) -> tuple[object, int, int]:
    """The costs group at ``--smoke``: the minute specs of the pipelines group, with the preset's schedule."""
    from metaslot.bench.pipelines import smoke_spec

    _, steps, batch_size = preset_run(model, data, vqvae_variant)
    return smoke_spec(model, preset_model), steps, batch_size


def _default_output(device: str) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "bench" / f"bench-{device}-{stamp}.json"


def _write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def run(arguments: argparse.Namespace) -> dict:
    """Run the chosen groups, print their tables, write and return the results."""
    import torch

    from metaslot.runtime.device import resolve_device

    device = resolve_device(arguments.device)  # --device cuda without a GPU: a one-line error, at once
    if not 0 < arguments.utilisation <= 1:
        raise ConfigError(f"--utilisation ({arguments.utilisation}) must lie in (0, 1]: a share of the peak")
    if arguments.batch_size is not None and arguments.batch_size < 1:
        raise ConfigError(f"--batch-size ({arguments.batch_size}) must be at least 1")
    for fraction in arguments.kept_fraction or ():
        if not 0 < fraction <= 1:
            raise ConfigError(f"--kept-fraction {fraction} must lie in (0, 1]: the share of slots kept")
    _counts(arguments, quick=1, full=1, warmup=0)  # so are bad --repeats/--warmup, before any measuring

    scale = _scale(arguments)
    threads = arguments.threads if arguments.threads is not None else (None if scale == "full" else 1)
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads ({threads}) must be at least 1")
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads or previous_threads)
        return _run_groups(arguments, device, scale)
    finally:
        torch.set_num_threads(previous_threads)


def _run_groups(arguments: argparse.Namespace, device, scale: str) -> dict:
    import torch

    from metaslot.bench import aggregators, data, pipelines
    from metaslot.bench.machine import describe, format_description
    from metaslot.bench.variants import variants

    groups = GROUPS if arguments.group == "all" else (arguments.group,)  # costs only when named
    chosen_variants = variants(arguments.autocast, arguments.compile)
    precisions = [variant for variant in chosen_variants if not variant.compiled]
    # The paper size takes minutes per step on a CPU (about 3 min for the autoencoder on 2 cores): GPU only
    # unless --sizes asks for it.
    full_sizes = ("tiny", "paper") if device.type == "cuda" else ("tiny",)
    default_sizes = {"smoke": ("smoke",), "quick": ("tiny",), "full": full_sizes}[scale]
    sizes = tuple(arguments.sizes) if arguments.sizes else default_sizes
    output = arguments.output or _default_output(device.type)

    results: dict = {
        "machine": describe(device),
        "settings": {
            "groups": list(groups),
            "scale": scale,
            "device": str(device),
            "variants": [variant.name for variant in chosen_variants],
            "attention_paths": list(arguments.attention_paths),
            "pipeline_sizes": list(sizes),
            "torch_threads": torch.get_num_threads(),
            "counts": {},  # per group: {"repeats": ..., "warmup": ...}
        },
    }
    print(format_description(results["machine"]), flush=True)
    if "aggregators" in groups:
        repeats, warmup = _counts(arguments, quick=3, full=10, warmup=1 if scale == "quick" else 2)
        results["settings"]["counts"]["aggregators"] = {"repeats": repeats, "warmup": warmup}
        rows = aggregators.benchmark_aggregators(
            scale,  # type: ignore[arg-type]
            device,
            chosen_variants,
            repeats,
            warmup,
            preset_model,
            tuple(arguments.attention_paths),
        )
        results["aggregators"] = rows
        results["sync_check"] = aggregators.check_sync_free(device, scale, preset_model)  # type: ignore[arg-type]
        print("\n" + aggregators.format_table(rows), flush=True)
        print(_format_sync(results["sync_check"]), flush=True)
        _write(output, results)
    if "pipelines" in groups and arguments.kept_fraction:
        _run_kept_fractions(arguments, device, sizes, precisions, results, output)
    elif "pipelines" in groups:
        repeats, warmup = _counts(arguments, quick=3, full=5, warmup=1)
        results["settings"]["counts"]["pipelines"] = {"repeats": repeats, "warmup": warmup}
        rows = []
        for size in sizes:
            # Paper-size steps take minutes on a CPU: fewer repeats there unless --repeats says otherwise.
            slow = size == "paper" and device.type == "cpu" and arguments.repeats is None
            size_repeats = min(repeats, 2) if slow else repeats
            rows += pipelines.benchmark_pipelines(
                (size,), device, precisions, size_repeats, warmup, preset_model, arguments.batch_size
            )  # type: ignore[arg-type]
        results["pipelines"] = rows
        print("\n" + pipelines.format_table(rows), flush=True)
        _write(output, results)
    if "costs" in groups:
        _run_costs(arguments, device, scale, results)
    if "data" in groups:
        repeats, warmup = _counts(arguments, quick=2, full=5, warmup=1)
        results["settings"]["counts"]["data"] = {"repeats": repeats, "warmup": warmup}
        rows = data.benchmark_data(scale, repeats, warmup)  # type: ignore[arg-type]
        results["data"] = rows
        print("\n" + data.format_table(rows), flush=True)
    _write(output, results)
    print(f"\nresults: {output}", flush=True)
    return results


def _run_kept_fractions(
    arguments: argparse.Namespace,
    device,
    sizes: tuple[str, ...],
    precisions: list,
    results: dict,
    output: Path,
) -> None:
    """The pipelines group with ``--kept-fraction``: DINOSAUR and the autoencoder, MetaSlot at forced kept
    fractions beside Slot Attention (`metaslot.bench.kept`)."""
    from metaslot.bench import kept

    repeats, warmup = _counts(arguments, quick=3, full=5, warmup=1)
    slow = "paper" in sizes and device.type == "cpu" and arguments.repeats is None
    repeats = min(repeats, 2) if slow else repeats
    results["settings"]["counts"]["kept_fractions"] = {"repeats": repeats, "warmup": warmup}
    results["settings"]["kept_fractions"] = list(arguments.kept_fraction)
    rows: list[dict] = []
    for variant in precisions:
        rows += kept.benchmark_kept_fractions(
            sizes,  # type: ignore[arg-type]
            device,
            variant,
            tuple(arguments.kept_fraction),
            repeats,
            warmup,
            preset_model,
            batch_size=arguments.batch_size,
        )
        results["kept_fractions"] = rows
        _write(output, results)
    print("\n" + kept.format_table(rows), flush=True)


def _run_costs(arguments: argparse.Namespace, device, scale: str, results: dict) -> None:
    """The costs group (`metaslot.bench.costs`): every paper preset at batch 2 by default."""
    from metaslot.bench import costs

    repeats, warmup = _counts(arguments, quick=1, full=2, warmup=1)
    results["settings"]["counts"]["costs"] = {"repeats": repeats, "warmup": warmup}
    rows = costs.benchmark_costs(
        smoke_run if scale == "smoke" else preset_run,
        device,
        batch_size=arguments.batch_size or 2,
        repeats=repeats,
        warmup=warmup,
        utilisation=arguments.utilisation,
    )
    results["costs"] = rows
    print("\n" + costs.format_table(rows), flush=True)


def _format_sync(check: dict) -> str:
    if check["status"] == "pass":
        covered = "" if check.get("kmeans_covered") else " (k-means initialisation not reached)"
        return (
            f"sync check: pass, {check['steps']} MetaSlot train forwards + upkeeps with no host sync{covered}"
        )
    if check["status"] == "fail":
        return f"sync check: FAIL after warm-up: {check['error']}"
    return f"sync check: skipped ({check['reason']})"


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``metaslot-bench``); ``argv`` defaults to ``sys.argv[1:]``."""
    arguments = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    with user_errors("bench"):
        run(arguments)


if __name__ == "__main__":
    main()
