"""The shapes study: does MetaSlot's adaptive slot count help on the embedded dataset?

Trains the autoencoder pipeline (small CNN encoder, spatial-broadcast decoder) on the synthetic shapes
dataset with a variable object count (1–6 objects, a budget of 7 slots) once with plain Slot Attention
and once with MetaSlot — same widths, steps, data and seeds — then evaluates the *last* checkpoint of
every run on the same held-out test images (no model selection on them) and reports mean ± std over
seeds of ARI, FG-ARI, mBO, mIoU, |kept slots − objects| and the per-image correlation between kept
slots and objects, with a picture grid and slot-count histograms.

    python examples/shapes_study.py                      # ~60 CPU minutes on 2 cores
    python examples/shapes_study.py --seeds 0 --steps 50  # a quick look

Interrupting is safe: finished runs are skipped and an unfinished one resumes from its last checkpoint.
Results land in ``--output`` (JSON, markdown table, PNGs); docs/results.md quotes them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Literal

import attrs
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as pyplot  # noqa: E402
import numpy  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402

from metaslot.eval.evaluate import EvaluationResult, PictureSamples, evaluate  # noqa: E402
from metaslot.eval.pictures import displayable, kept_slot_labels, label_overlay  # noqa: E402
from metaslot.eval.session import SplitEvaluation  # noqa: E402
from metaslot.models.aggregators import MetaSlotSpec  # noqa: E402
from metaslot.train.checkpoint import latest_checkpoint, load_model_checkpoint, read_sidecar  # noqa: E402
from metaslot.train.config import TrainConfig  # noqa: E402
from metaslot.train.loop import train  # noqa: E402
from metaslot.train.presets import preset, prune_growth_reaching_one_at  # noqa: E402

AGGREGATORS = ("slot-attention", "metaslot")
METRICS = (
    "ari",
    "fg_ari",
    "mbo",
    "miou",
    "slot_count_abs_error",
    "background_count_error",
    "active_slots",
    "count_correlation",
)
LABELS = {
    "ari": "ARI",
    "fg_ari": "FG-ARI",
    "mbo": "mBO",
    "miou": "mIoU",
    "slot_count_abs_error": "mean abs(slots − objects)",
    "background_count_error": "mean abs(slots − objects − 1)",
    "active_slots": "kept slots",
    "count_correlation": "corr(slots, objects)",
}


@dataclasses.dataclass(frozen=True)
class Study:
    """What to train and where to write; every run uses the `autoencoder_shapes` preset with these changes."""

    seeds: tuple[int, ...] = (0, 1, 2)
    aggregators: tuple[Literal["slot-attention", "metaslot"], ...] = AGGREGATORS
    steps: int = 2_000
    num_slots: int = 7
    min_objects: int = 1
    max_objects: int = 6
    size_range: tuple[float, float] = (0.1, 0.22)
    test_images: int = 512
    picture_images: int = 8
    runs_dir: Path = Path("runs/shapes-study")
    output: Path = Path("docs/results")
    progress: bool = True


def run_config(study: Study, aggregator: str, seed: int) -> TrainConfig:
    """The default job's preset with the study's slot budget, object counts, length and seed."""
    base = preset("autoencoder", "shapes", aggregator)
    model = attrs.evolve(
        base.model, aggregator=attrs.evolve(base.model.aggregator, num_slots=study.num_slots)
    )
    if isinstance(model.aggregator, MetaSlotSpec):  # the buffer and prune schedule follow the run
        metaslot = attrs.evolve(
            model.aggregator,
            buffer_capacity=4 * base.loop.batch_size * study.num_slots,
            prune_growth=prune_growth_reaching_one_at(max(study.steps * 2 // 3, 1)),
        )
        model = attrs.evolve(model, aggregator=metaslot)
    data = attrs.evolve(
        base.data,
        min_objects=study.min_objects,
        max_objects=study.max_objects,
        size_range=study.size_range,
        val_size=max(base.data.val_size, study.test_images),
    )
    loop = attrs.evolve(
        base.loop,
        steps=study.steps,
        seed=seed,
        val_every=study.steps,
        checkpoint_every=max(study.steps // 4, 1),
    )
    return attrs.evolve(
        base,
        name=f"{aggregator}-seed{seed}",
        model=model,
        data=data,
        loop=loop,
        runs_dir=study.runs_dir,
        progress=study.progress,
        evaluate_at_end=False,
    )


def finished_step(config: TrainConfig) -> int:
    """The step of the run's latest checkpoint (0 without one)."""
    sidecar = latest_checkpoint(config.run_dir / "checkpoints")
    if sidecar is None or not sidecar.is_file():
        return 0
    return int(read_sidecar(sidecar)["state"]["step"])


def train_or_resume(config: TrainConfig) -> Path:
    """Train the run unless its last checkpoint is already at ``loop.steps``; returns that checkpoint."""
    done = finished_step(config)
    if done < config.loop.steps:
        print(f"training {config.name} ({'resuming at step ' + str(done) if done else 'from scratch'})")
        # A run folder that exists is resumed (also one killed before its first checkpoint).
        started = (config.run_dir / "config.json").is_file()
        train(attrs.evolve(config, resume=started), evaluation=SplitEvaluation())
    sidecar = latest_checkpoint(config.run_dir / "checkpoints")
    assert sidecar is not None  # train() always writes the final checkpoint
    return sidecar


def count_correlation(histogram: list[list[int]]) -> float:
    """Pearson correlation between kept slots and annotated objects over images, from their joint counts."""
    counts = numpy.asarray(histogram, dtype=float)
    objects, slots = numpy.meshgrid(
        numpy.arange(counts.shape[0]), numpy.arange(counts.shape[1]), indexing="ij"
    )
    total = counts.sum()
    mean_objects, mean_slots = (counts * objects).sum() / total, (counts * slots).sum() / total
    covariance = (counts * (objects - mean_objects) * (slots - mean_slots)).sum() / total
    spread = math.sqrt(
        (counts * (objects - mean_objects) ** 2).sum()
        / total
        * (counts * (slots - mean_slots) ** 2).sum()
        / total
    )
    return covariance / spread if spread > 0 else float("nan")


def background_count_error(histogram: list[list[int]]) -> float:
    """Mean |kept slots − (objects + 1)|: the count error when the background rightly takes a slot."""
    counts = numpy.asarray(histogram, dtype=float)
    objects, slots = numpy.meshgrid(
        numpy.arange(counts.shape[0]), numpy.arange(counts.shape[1]), indexing="ij"
    )
    return float((counts * numpy.abs(slots - objects - 1)).sum() / counts.sum())


def evaluate_run(config: TrainConfig, sidecar: Path, study: Study) -> tuple[EvaluationResult, PictureSamples]:
    """Metrics of the final checkpoint on the first ``test_images`` test images (identical for every run)."""
    pipeline = config.model.build()
    load_model_checkpoint(sidecar, pipeline)
    dataset = torch.utils.data.Subset(config.data.build("test"), range(study.test_images))
    samples = PictureSamples(capacity=study.picture_images)
    result = evaluate(pipeline, dataset, batch_size=64, device=torch.device("cpu"), seed=0, pictures=samples)
    return result, samples


def summarise(values: list[float]) -> tuple[float, float]:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0


def markdown_table(per_run: dict[str, list[dict[str, float]]]) -> str:
    header = "| model | " + " | ".join(LABELS[name] for name in METRICS) + " |"
    lines = [header, "|" + " --- |" * (len(METRICS) + 1)]
    for aggregator, runs in per_run.items():
        cells = []
        for name in METRICS:
            mean, std = summarise([run[name] for run in runs])
            cells.append(f"{mean:.3f} ± {std:.3f}")
        lines.append(f"| {aggregator} ({len(runs)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_comparison_grid(samples: dict[str, PictureSamples], path: Path) -> Path:
    """Rows of test images: image | ground truth | each model's segmentation, titled with its kept slots."""
    first = next(iter(samples.values()))
    images = torch.cat(first.images)
    segments = torch.cat(first.segments)
    columns = 2 + len(samples)
    figure, axes = pyplot.subplots(
        images.shape[0], columns, figsize=(1.7 * columns, 1.7 * images.shape[0]), squeeze=False
    )
    for row in range(images.shape[0]):
        picture = displayable(images[row])
        objects = int((segments[row].unique() > 0).sum())
        panels = [
            ("image", picture),
            (
                f"truth: {objects} object{'s' * (objects != 1)}",
                label_overlay(picture, segments[row].numpy(), int(segments[row].max()) + 1),
            ),
        ]
        for name, model_samples in samples.items():
            masks, keep = torch.cat(model_samples.masks)[row], torch.cat(model_samples.keep)[row]
            # Slots from colour 1 on, so none shares the truth's background colour (0).
            labels = kept_slot_labels(masks, keep).numpy() + 1
            overlay = label_overlay(picture, labels, masks.shape[0] + 1)
            panels.append((f"{name}: {int(keep.sum())} slots", overlay))
        for column, (title, panel) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(numpy.clip(panel, 0, 1), interpolation="nearest")
            axis.set_title(title, fontsize=7)
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def save_count_histograms(histograms: dict[str, numpy.ndarray], path: Path) -> Path:
    """Left: kept slots − objects over all test images and seeds; right: mean kept slots per object count."""
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, 3.4))
    width = 0.8 / len(histograms)
    for index, (name, counts) in enumerate(histograms.items()):
        objects, slots = numpy.nonzero(counts)
        differences = numpy.repeat(slots - objects, counts[objects, slots].astype(int))
        values, frequency = numpy.unique(differences, return_counts=True)
        left.bar(
            values + (index - (len(histograms) - 1) / 2) * width,
            frequency / frequency.sum(),
            width,
            label=name,
        )
        per_count = counts.sum(1)
        used = numpy.nonzero(per_count)[0]
        mean_slots = (counts[used] * numpy.arange(counts.shape[1])).sum(1) / per_count[used]
        right.plot(used, mean_slots, marker="o", label=name)
    left.set_xlabel("kept slots − annotated objects")
    left.set_ylabel("fraction of test images")
    left.legend(fontsize=8)
    limits = [0, max(right.get_xlim()[1], right.get_ylim()[1])]
    right.plot(limits, limits, color="grey", linestyle="--", linewidth=0.8, label="objects")
    right.plot(
        limits,
        [limit + 1 for limit in limits],
        color="grey",
        linestyle=":",
        linewidth=0.8,
        label="objects + background",
    )
    right.set_xlabel("annotated objects")
    right.set_ylabel("mean kept slots")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


def run_study(study: Study) -> dict[str, list[dict[str, float]]]:
    """Train (or reuse) every run, evaluate, write JSON, markdown and pictures; returns per-run metrics."""
    study.output.mkdir(parents=True, exist_ok=True)
    per_run: dict[str, list[dict[str, float]]] = {name: [] for name in study.aggregators}
    first_seed_samples: dict[str, PictureSamples] = {}
    histograms: dict[str, numpy.ndarray] = {}
    for aggregator in study.aggregators:
        for seed in study.seeds:
            config = run_config(study, aggregator, seed)
            sidecar = train_or_resume(config)
            result, samples = evaluate_run(config, sidecar, study)
            metrics = dict(
                result.metrics,
                count_correlation=count_correlation(result.slot_histogram),
                background_count_error=background_count_error(result.slot_histogram),
                seed=seed,
            )
            per_run[aggregator].append(metrics)
            counts = numpy.asarray(result.slot_histogram, dtype=float)
            histograms[aggregator] = histograms.get(aggregator, 0) + counts
            first_seed_samples.setdefault(aggregator, samples)
            print(f"{config.name}: " + ", ".join(f"{name} {metrics[name]:.3f}" for name in METRICS))
    table = markdown_table(per_run)
    (study.output / "shapes_study.md").write_text(table + "\n")
    (study.output / "shapes_study.json").write_text(
        json.dumps({"study": dataclasses.asdict(study), "runs": per_run}, indent=2, default=str)
    )
    save_comparison_grid(first_seed_samples, study.output / "shapes_study_grid.png")
    save_count_histograms(histograms, study.output / "shapes_study_counts.png")
    print(table)
    return per_run


def main(argv: list[str] | None = None) -> None:
    run_study(tyro.cli(Study, args=argv))


if __name__ == "__main__":
    main()
