"""The shapes study: Slot Attention against MetaSlot (and AdaSlot, with ``--compared``) at the default
job's recipe, and over slot counts.

Every run is the default job's preset (``autoencoder_shapes``, what ``python -m cli.train`` trains: its
data, model, slot count, optimiser, schedule and steps) with only the aggregator, the seed and, in the
sweep, the slot count changed. AdaSlot trains in its authors' two stages within the same step budget:
a fixed-K Slot Attention run with the shared initialiser at the preset's slot count
(``adaslot-stage1-k{k}-seed{seed}``, ``--adaslot-stage-one`` of the steps, default half), then the AdaSlot
run at the run's slot count started from its weights (``--init-from``) for the remaining steps; every
slot count of the sweep starts from the same stage-1 run of its seed, as the released COCO model (33
slots) started from a 7-slot run.

- **main comparison**: both aggregators at the preset's own slot count, seeds ``--seeds`` (0–4);
- **slot-count sweep**: both aggregators at every k of ``--slot-counts`` (4, 6, 8, 10), seeds
  ``--sweep-seeds`` (0–2); MetaSlot's ring buffer follows k (the preset's size per slot, 4·batch·k);
- **sparsity sweep** (AdaSlot only, none unless ``--sparsity-weights`` names some): AdaSlot at the
  preset's slot count with each sparsity weight λ, seeds ``--sweep-seeds``, beside the preset's own λ
  (the main comparison's runs): how strongly the count must be paid for before AdaSlot drops slots.

The **last** checkpoint of every run (no selection) is evaluated on the same held-out images, the first
``--test-images`` of the preset data's ``test`` split, which training never reads: ARI, FG-ARI, mBO,
mIoU, mean |kept − objects|, mean |kept − (objects + 1)| (the background takes one slot), kept slots,
the per-image correlation of kept slots with objects, and the segments one sees (slots that win at least
one pixel; a kept slot may win none) with their |segments − (objects + 1)|. ``--output`` receives ``shapes_study.json`` (every
run's metrics and the summaries), ``shapes_study.md`` (tables: mean ± std over seeds, per seed, the
sweep) and three PNGs: the segmentation grid, kept slots against objects, FG-ARI, kept slots and segments
against k.

    python examples/shapes_study.py                                            # the whole study
    python examples/shapes_study.py --part main --aggregators metaslot         # one process's share
    python examples/shapes_study.py --part sweep --aggregators slot-attention  # another share
    python examples/shapes_study.py --report-only                              # report finished runs
    python examples/shapes_study.py --seeds 0 --sweep-seeds 0 --steps 50 --output /tmp/study  # a quick look
    python examples/shapes_study.py --compared slot-attention metaslot adaslot  # the three-way study
    python examples/shapes_study.py --compared slot-attention metaslot adaslot --report-only \
        --previous docs/results/shapes_study.json   # reuse the metrics of runs trained elsewhere
    python examples/shapes_study.py --compared slot-attention metaslot adaslot --aggregators adaslot \
        --part sparsity --sparsity-weights 0.004 0.016 0.064 0.256   # AdaSlot's λ sweep

The whole study trains 34 runs with the defaults (2 × 5 main, 2 × 4 × 3 sweep; fewer when the preset's
slot count is one of the sweep's); see docs/results.md for the measured time.

Runs live under ``--runs-dir`` as ``{aggregator}-k{k}-seed{seed}``; a run that the main comparison and
the sweep share is trained once. Interrupting is safe: finished runs are skipped and an unfinished one
resumes exactly from its last checkpoint. A run folder trained with another recipe (the preset changed
since) is refused rather than reused. ``--aggregators`` and ``--part`` choose what this process trains,
so disjoint shares can run side by side; every process ends by writing the report of the whole study
from the runs finished so far, listing the missing ones (``--report-only`` does only that,
``--no-report`` skips it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from pathlib import Path
from typing import Any, Literal

import attrs
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as pyplot  # noqa: E402
import numpy  # noqa: E402
import torch  # noqa: E402
import tyro  # noqa: E402

from metaslot.errors import ConfigError, MetaslotError, TrainingInterrupted  # noqa: E402
from metaslot.eval.evaluate import PictureSamples, evaluate  # noqa: E402
from metaslot.eval.pictures import displayable, kept_slot_labels, label_overlay  # noqa: E402
from metaslot.eval.session import SplitEvaluation  # noqa: E402
from metaslot.models.aggregators import AdaSlotSpec, MetaSlotSpec  # noqa: E402
from metaslot.models.masks import SoftKeep  # noqa: E402
from metaslot.models.pipelines.slot_pipeline import attention_masks  # noqa: E402
from metaslot.train.checkpoint import latest_checkpoint, load_model_checkpoint, read_sidecar  # noqa: E402
from metaslot.train.config import TrainConfig, config_from_json, to_jsonable  # noqa: E402
from metaslot.train.loop import train  # noqa: E402
from metaslot.train.presets import preset  # noqa: E402

Aggregator = Literal["slot-attention", "metaslot", "adaslot"]
AGGREGATORS: tuple[Aggregator, ...] = ("slot-attention", "metaslot")
"""What the study compares unless ``--compared`` says otherwise."""
METRICS = (
    "ari",
    "fg_ari",
    "mbo",
    "miou",
    "slot_count_abs_error",
    "background_count_error",
    "active_slots",
    "count_correlation",
    "segments",
    "segment_count_abs_error_with_background",
)
SWEEP_METRICS = ("fg_ari", "active_slots", "background_count_error", "segments")
SPARSITY_METRICS = (
    "fg_ari",
    "mbo",
    "active_slots",
    "background_count_error",
    "count_correlation",
    "segments",
)
LABELS = {
    "ari": "ARI",
    "fg_ari": "FG-ARI",
    "mbo": "mBO",
    "miou": "mIoU",
    "slot_count_abs_error": "mean \\|kept − objects\\|",
    "background_count_error": "mean \\|kept − (objects + 1)\\|",
    "active_slots": "kept slots",
    "count_correlation": "corr(kept, objects)",
    "segments": "segments (slots winning a pixel)",
    "segment_count_abs_error_with_background": "mean \\|segments − (objects + 1)\\|",
}
EVALUATION_BATCH = 64
SPARE_CHECK_IMAGES = 64
"""Test images of AdaSlot's spare-slot check (`spare_slots`)."""


@dataclasses.dataclass(frozen=True)
class Study:
    """What to train, evaluate and report; every run is the default job's preset with a few changes."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Seeds of the main comparison (initialisation and data order), at the preset's slot count."""
    slot_counts: tuple[int, ...] = (4, 6, 8, 10)
    """Slot counts k of the sweep."""
    sweep_seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of every slot count of the sweep (and of every weight of the sparsity sweep)."""
    sparsity_weights: tuple[float, ...] = ()
    """AdaSlot's sparsity sweep: weights λ tried at the preset's slot count (the preset's own λ is the
    main comparison's). Only when AdaSlot is one of ``--compared``."""
    compared: tuple[Aggregator, ...] = AGGREGATORS
    """The models the study compares: its runs, tables and pictures."""
    aggregators: tuple[Aggregator, ...] = ("slot-attention", "metaslot", "adaslot")
    """Which of the compared models this process trains (the report always covers all of them)."""
    adaslot_stage_one: float = 0.5
    """AdaSlot: the share of the step budget its fixed-K stage (Slot Attention) takes."""
    adaslot_eval_keep: Literal["sample", "argmax"] = "sample"
    """AdaSlot's keep decision in the main tables ('sample' as released); the other is reported beside."""
    previous: Path | None = None
    """A ``shapes_study.json`` (same test images) whose runs stand in for runs not finished under
    ``--runs-dir``: their metrics and slot histograms, no pictures; the report marks them ``reused``."""
    part: Literal["main", "sweep", "sparsity", "all"] = "all"
    """Which part of the study this process trains."""
    report_only: bool = False
    """Train nothing: write the report from the finished runs and list the missing ones."""
    report: bool = True
    """Report at the end (``--no-report``: only train, for shares whose report another process writes;
    evaluating every finished run takes minutes)."""
    steps: int | None = None
    """Training steps (None: the preset's). Only for quick looks: everything else, the MetaSlot prune
    ramp included, stays the preset's."""
    test_images: int = 512
    """Evaluate on the first this many images of the test split (the same for every run)."""
    picture_images: int = 8
    """Rows of the segmentation grid."""
    runs_dir: Path = Path("runs/shapes-study")
    """One folder per run, ``{aggregator}-k{k}-seed{seed}``."""
    output: Path = Path("docs/results")
    """Where the JSON, the markdown tables and the PNGs go."""
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class RunKey:
    """One training run of the study."""

    aggregator: Aggregator
    slots: int
    seed: int
    sparsity_weight: float | None = None
    """AdaSlot's λ where the run changes it (the sparsity sweep); None: the preset's."""

    @property
    def name(self) -> str:
        weight = "" if self.sparsity_weight is None else f"-lambda{self.sparsity_weight:g}"
        return f"{self.aggregator}{weight}-k{self.slots}-seed{self.seed}"


@dataclasses.dataclass(frozen=True)
class Evaluated:
    """A finished run's metrics on the test images, its (objects × kept slots) counts and picture samples
    (None for a run reused from ``--previous``); AdaSlot's metrics with the other keep decision too."""

    key: RunKey
    metrics: dict[str, float]
    histogram: numpy.ndarray
    samples: PictureSamples | None
    step: int
    other_keep: dict[str, float] | None = None
    spare: dict[str, float] | None = None
    """AdaSlot: `spare_slots` of the run."""
    reused: bool = False


# --- the runs --------------------------------------------------------------------------------------


def preset_config(aggregator: Aggregator) -> TrainConfig:
    """The default job (``autoencoder_shapes``) with ``aggregator``; Slot Attention and AdaSlot share
    MetaSlot's fields (AdaSlot's second stage: `run_config` adds its first)."""
    return preset("autoencoder", "shapes", aggregator)


def preset_slots() -> int:
    """The preset's own slot count: where the main comparison runs."""
    return preset_config("metaslot").model.aggregator.num_slots


def main_runs(study: Study) -> list[RunKey]:
    slots = preset_slots()
    return [RunKey(aggregator, slots, seed) for seed in study.seeds for aggregator in study.compared]


def sweep_runs(study: Study) -> list[RunKey]:
    # Seeds outermost: a study stopped part-way has whole sweeps over k for its first seeds.
    return [
        RunKey(aggregator, slots, seed)
        for seed in study.sweep_seeds
        for slots in study.slot_counts
        for aggregator in study.compared
    ]


def sparsity_runs(study: Study) -> list[RunKey]:
    """AdaSlot at the preset's slot count with each ``--sparsity-weights`` λ, seeds ``--sweep-seeds``."""
    if "adaslot" not in study.compared:
        return []
    slots = preset_slots()
    return [
        RunKey("adaslot", slots, seed, weight)
        for seed in study.sweep_seeds
        for weight in study.sparsity_weights
    ]


def all_runs(study: Study) -> list[RunKey]:
    """Every run of the study once (main and sweep share the runs with the same k and seed)."""
    return list(dict.fromkeys(main_runs(study) + sweep_runs(study) + sparsity_runs(study)))


def runs_to_train(study: Study) -> list[RunKey]:
    """The runs of ``--part`` for ``--aggregators``, each once, in study order."""
    parts = {"main": main_runs, "sweep": sweep_runs, "sparsity": sparsity_runs}
    chosen = [key for part, runs in parts.items() if study.part in (part, "all") for key in runs(study)]
    return [key for key in dict.fromkeys(chosen) if key.aggregator in study.aggregators]


def with_slot_count(model: Any, slots: int) -> Any:
    """``model`` with ``slots`` slots; MetaSlot's ring buffer keeps the preset's size per slot (4·batch·k)."""
    aggregator = model.aggregator
    changes: dict[str, int] = {"num_slots": slots}
    if isinstance(aggregator, AdaSlotSpec):
        changes["lower_bound"] = min(aggregator.lower_bound, slots)
    if isinstance(aggregator, MetaSlotSpec):
        changes["buffer_capacity"] = aggregator.buffer_capacity * slots // aggregator.num_slots
    return attrs.evolve(model, aggregator=attrs.evolve(aggregator, **changes))


def total_steps(study: Study) -> int:
    """Every run's step budget (AdaSlot's two stages together): the preset's, or ``--steps``."""
    return preset_config("metaslot").loop.steps if study.steps is None else study.steps


def stage_one_steps(study: Study) -> int:
    """AdaSlot's fixed-K stage: ``--adaslot-stage-one`` of the budget (at least one step each stage)."""
    return min(max(round(total_steps(study) * study.adaslot_stage_one), 1), total_steps(study) - 1)


def study_run(study: Study, base: TrainConfig, name: str, slots: int, seed: int, steps: int) -> TrainConfig:
    return attrs.evolve(
        base,
        name=name,
        model=with_slot_count(base.model, slots),
        loop=attrs.evolve(base.loop, seed=seed, steps=steps),
        runs_dir=study.runs_dir,
        progress=study.progress,
        evaluate_at_end=False,  # the study evaluates every run on its own test images
    )


def stage_one_config(study: Study, seed: int) -> TrainConfig:
    """AdaSlot's first stage: the preset's Slot Attention with the shared initialiser (whose weights do
    not depend on k) at the preset's slot count, for the first share of the budget."""
    base = preset_config("slot-attention")
    aggregator = attrs.evolve(base.model.aggregator, initializer="shared")
    base = attrs.evolve(base, model=attrs.evolve(base.model, aggregator=aggregator))
    slots = preset_slots()
    name = f"adaslot-stage1-k{slots}-seed{seed}"
    return study_run(study, base, name, slots, seed, stage_one_steps(study))


def run_config(study: Study, key: RunKey) -> TrainConfig:
    """The preset with the run's aggregator, slot count and seed (and ``--steps`` if given); AdaSlot's is
    its second stage, started from `stage_one_config` for the rest of the budget."""
    base = preset_config(key.aggregator)
    if key.aggregator != "adaslot":
        return study_run(study, base, key.name, key.slots, key.seed, total_steps(study))
    config = study_run(
        study, base, key.name, key.slots, key.seed, total_steps(study) - stage_one_steps(study)
    )
    if key.sparsity_weight is not None:
        aggregator = attrs.evolve(config.model.aggregator, sparsity_weight=key.sparsity_weight)
        config = attrs.evolve(config, model=attrs.evolve(config.model, aggregator=aggregator))
    return attrs.evolve(config, init_from=stage_one_config(study, key.seed).run_dir)


def first_difference(saved: Any, wanted: Any, where: str = "config") -> str | None:
    """The first setting (dotted path) where two JSON trees differ, with both values; None if equal."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        for name in sorted(set(saved) | set(wanted)):
            found = first_difference(saved.get(name), wanted.get(name), f"{where}.{name}")
            if found is not None:
                return found
        return None
    return None if saved == wanted else f"{where} is {saved!r} there, {wanted!r} now"


def as_recipe(config: TrainConfig) -> Any:
    """``config`` as plain JSON without what only drives a run (folder, resume, progress, stop_at)."""
    neutral = attrs.evolve(
        config,
        runs_dir=Path("."),
        resume=False,
        progress=False,
        loop=attrs.evolve(config.loop, stop_at=None),
    )
    return json.loads(json.dumps(to_jsonable(neutral)))


def require_same_recipe(config: TrainConfig) -> None:
    """Refuse a run folder whose ``config.json`` was written for another recipe (the preset changed)."""
    path = config.run_dir / "config.json"
    if not path.is_file():
        return
    difference = first_difference(as_recipe(config_from_json(path.read_text())), as_recipe(config))
    if difference is not None:
        raise ConfigError(
            f"{config.run_dir} was trained with another recipe ({difference}); delete that folder or "
            "choose another --runs-dir"
        )


def finished_step(config: TrainConfig) -> int:
    """The step of the run's latest checkpoint (0 without one)."""
    sidecar = latest_checkpoint(config.run_dir / "checkpoints")
    if sidecar is None or not sidecar.is_file():
        return 0
    return int(read_sidecar(sidecar)["state"]["step"])


def train_run(study: Study, key: RunKey) -> Path:
    """Train (or resume, or skip) the run; AdaSlot's first stage before its second."""
    if key.aggregator == "adaslot":
        train_or_resume(stage_one_config(study, key.seed))
    return train_or_resume(run_config(study, key))


def train_or_resume(config: TrainConfig) -> Path:
    """Train the run unless its last checkpoint is already at ``loop.steps``; returns that checkpoint."""
    require_same_recipe(config)
    done = finished_step(config)
    if done < config.loop.steps:
        print(f"training {config.name} ({'resuming at step ' + str(done) if done else 'from scratch'})")
        # A run folder that exists is resumed (also one killed before its first checkpoint).
        started = (config.run_dir / "config.json").is_file()
        train(attrs.evolve(config, resume=started), evaluation=SplitEvaluation())
    sidecar = latest_checkpoint(config.run_dir / "checkpoints")
    assert sidecar is not None  # train() always writes the final checkpoint
    return sidecar


def missing_note(study: Study, key: RunKey) -> str:
    """``name (not started)`` or ``name (at step N of M)``."""
    config = run_config(study, key)
    done = finished_step(config)
    return f"{key.name} ({f'at step {done} of {config.loop.steps}' if done else 'not started'})"


# --- evaluation ------------------------------------------------------------------------------------


def held_out_images(config: TrainConfig, count: int) -> torch.utils.data.Dataset:
    """The first ``count`` images of the preset data's test split (training reads only train and val).

    A shapes image is a function of (data seed, split, index) alone, so the test split's length
    (``val_size`` for shapes) only has to reach ``count``: the images are the same for every run.
    """
    data = attrs.evolve(config.data, val_size=max(config.data.val_size, count))
    return torch.utils.data.Subset(data.build("test"), range(count))


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


def with_eval_keep(config: TrainConfig, keep: str) -> TrainConfig:
    """An AdaSlot config whose evaluation decides the keep by ``keep`` ('sample' or 'argmax')."""
    aggregator = attrs.evolve(config.model.aggregator, eval_keep=keep)
    return attrs.evolve(config, model=attrs.evolve(config.model, aggregator=aggregator))


def evaluate_config(
    study: Study, config: TrainConfig, samples: PictureSamples | None
) -> tuple[dict[str, float], numpy.ndarray]:
    """Metrics and (objects × kept slots) counts of the run's last checkpoint on the test images."""
    pipeline = config.model.build()
    load_model_checkpoint(latest_checkpoint(config.run_dir / "checkpoints"), pipeline)
    result = evaluate(
        pipeline,
        held_out_images(config, study.test_images),
        batch_size=EVALUATION_BATCH,
        device=torch.device("cpu"),
        seed=0,
        pictures=samples,
    )
    metrics = dict(
        result.metrics,
        count_correlation=count_correlation(result.slot_histogram),
        background_count_error=background_count_error(result.slot_histogram),
    )
    return metrics, numpy.asarray(result.slot_histogram, dtype=float)


def spare_slots(config: TrainConfig, count: int = SPARE_CHECK_IMAGES) -> dict[str, float]:
    """Why an AdaSlot run keeps slots that win no pixel (*spare* slots): on the first ``count`` test
    images, how many there are, the share of every pixel's alpha they hold, the keep probability of
    spare and of winning slots, and the pixel loss with every slot kept against with the spare slots
    dropped (the decoder renormalising over the others, as a drop in training does). Every slot kept,
    the attention-colour decoder's alpha is the attention, so a slot wins a pixel where it has the most."""
    pipeline = config.model.build()
    load_model_checkpoint(latest_checkpoint(config.run_dir / "checkpoints"), pipeline)
    pipeline.eval()
    test = held_out_images(config, count)
    images = torch.stack([test[index].image for index in range(count)])
    size = config.model.image_size
    with torch.no_grad():
        front = pipeline.frontend(images, generator=torch.Generator().manual_seed(0))
        slots = front.aggregator.slots
        attention = attention_masks(front, (size, size), None)
        winners = torch.nn.functional.one_hot(attention.argmax(dim=1), slots.shape[1])
        spare = winners.sum(dim=(1, 2)) == 0
        keep_probability = pipeline.frontend.aggregator.keep_logits(slots).softmax(dim=-1)[..., 1]

        def pixel_loss(keep: torch.Tensor) -> float:
            soft = SoftKeep(weight=keep.to(attention.dtype), mode=pipeline.decoder_mask)
            decoded = pipeline.decoder.paint(slots, attention, None, soft)
            return float(torch.nn.functional.mse_loss(decoded.reconstruction, images))

        return {
            "spare_slots": float(spare.sum(dim=1).float().mean()),
            "spare_alpha_share": float((attention * spare[:, :, None, None]).sum(dim=1).mean()),
            "spare_keep_probability": float(keep_probability[spare].mean()) if spare.any() else math.nan,
            "winning_keep_probability": float(keep_probability[~spare].mean()),
            "loss_all_kept": pixel_loss(torch.ones_like(spare)),
            "loss_spare_dropped": pixel_loss(~spare),
        }


def evaluate_run(study: Study, key: RunKey) -> Evaluated:
    """Metrics of the run's last checkpoint on the test images (identical for every run), on the CPU;
    AdaSlot's with ``--adaslot-eval-keep``, and with the other keep decision beside."""
    config = run_config(study, key)
    samples = PictureSamples(capacity=study.picture_images)
    other = spare = None
    if key.aggregator == "adaslot":
        config = with_eval_keep(config, study.adaslot_eval_keep)
        other_keep = "argmax" if study.adaslot_eval_keep == "sample" else "sample"
        other, _ = evaluate_config(study, with_eval_keep(config, other_keep), None)
        spare = spare_slots(config)
    metrics, histogram = evaluate_config(study, config, samples)
    step = finished_step(config)
    return Evaluated(key, metrics, histogram, samples, step=step, other_keep=other, spare=spare)


def previous_runs(study: Study, keys: list[RunKey]) -> dict[RunKey, Evaluated]:
    """The runs of ``--previous`` that stand in for ``keys`` (unfinished here), marked reused."""
    if study.previous is None:
        return {}
    document = json.loads(Path(study.previous).read_text())
    settings = document["study"]
    if settings["test_images"] != study.test_images or settings["steps"] != total_steps(study):
        raise ConfigError(
            f"--previous {study.previous} was evaluated on {settings['test_images']} test images after "
            f"{settings['steps']} steps, this study on {study.test_images} after {total_steps(study)}"
        )
    records = document["runs"]
    found = {}
    for key in keys:
        record = records.get(key.name)
        if record is None:
            continue
        metrics = {
            name: float("nan") if value is None else float(value)
            for name, value in record.items()
            if name
            not in ("aggregator", "slots", "seed", "sparsity_weight", "step", "slot_histogram", "reused")
            and not isinstance(value, (dict, list, str))
        }
        histogram = numpy.asarray(record["slot_histogram"], dtype=float)
        found[key] = Evaluated(key, metrics, histogram, None, step=record["step"], reused=True)
    return found


def is_finished(study: Study, key: RunKey) -> bool:
    """Whether the run's last checkpoint is at its final step (refusing a folder of another recipe)."""
    config = run_config(study, key)
    require_same_recipe(config)
    return finished_step(config) >= config.loop.steps


# --- summaries and tables --------------------------------------------------------------------------


def summarise(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation over the finite values (NaN when there are none)."""
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan")}
    return {"mean": statistics.fmean(finite), "std": statistics.stdev(finite) if len(finite) > 1 else 0.0}


def summary_of(runs: list[Evaluated], names: tuple[str, ...]) -> dict[str, Any]:
    return {"seeds": [run.key.seed for run in runs]} | {
        name: summarise([run.metrics[name] for run in runs]) for name in names
    }


def main_summary(study: Study, evaluated: dict[RunKey, Evaluated]) -> dict[str, Any]:
    """Per aggregator: mean ± std over the main comparison's finished seeds."""
    runs = [evaluated[key] for key in main_runs(study) if key in evaluated]
    return {
        aggregator: {"slots": preset_slots()}
        | summary_of([run for run in runs if run.key.aggregator == aggregator], METRICS)
        for aggregator in study.compared
    }


def sweep_point(study: Study, evaluated: dict[RunKey, Evaluated], aggregator: Aggregator, slots: int) -> dict:
    """Mean ± std over the sweep's finished seeds of one aggregator at one slot count."""
    keys = (RunKey(aggregator, slots, seed) for seed in study.sweep_seeds)
    return {"slots": slots} | summary_of([evaluated[key] for key in keys if key in evaluated], SWEEP_METRICS)


def sweep_summary(study: Study, evaluated: dict[RunKey, Evaluated]) -> dict[str, list[dict[str, Any]]]:
    """Per aggregator, one `sweep_point` per slot count."""
    return {
        aggregator: [sweep_point(study, evaluated, aggregator, slots) for slots in study.slot_counts]
        for aggregator in study.compared
    }


def sparsity_summary(study: Study, evaluated: dict[RunKey, Evaluated]) -> list[dict[str, Any]]:
    """AdaSlot at the preset's slot count per λ, the preset's own first (its main-comparison runs at the
    sweep's seeds): mean ± std over the finished seeds. Empty without a sparsity sweep."""
    if not sparsity_runs(study):
        return []
    slots, preset_weight = preset_slots(), preset_config("adaslot").model.aggregator.sparsity_weight
    points = []
    for weight in (None, *study.sparsity_weights):
        keys = (RunKey("adaslot", slots, seed, weight) for seed in study.sweep_seeds)
        runs = [evaluated[key] for key in keys if key in evaluated]
        points.append(
            {"sparsity_weight": preset_weight if weight is None else weight, "preset": weight is None}
            | summary_of(runs, SPARSITY_METRICS)
        )
    return points


def cell(statistics_: dict[str, float]) -> str:
    if not math.isfinite(statistics_["mean"]):
        return "undefined"
    return f"{statistics_['mean']:.3f} ± {statistics_['std']:.3f}"


def number(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "undefined"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def main_table(main: dict[str, Any]) -> list[str]:
    rows = [
        [aggregator, str(len(summary["seeds"]))] + [cell(summary[name]) for name in METRICS]
        for aggregator, summary in main.items()
    ]
    return table(["model", "seeds"] + [LABELS[name] for name in METRICS], rows)


def per_seed_table(study: Study, evaluated: dict[RunKey, Evaluated]) -> list[str]:
    rows = [
        [key.aggregator, str(key.seed)] + [number(evaluated[key].metrics[name]) for name in METRICS]
        for key in sorted(
            (key for key in main_runs(study) if key in evaluated), key=lambda key: (key.aggregator, key.seed)
        )
    ]
    return table(["model", "seed"] + [LABELS[name] for name in METRICS], rows)


def sweep_table(sweep: dict[str, list[dict[str, Any]]]) -> list[str]:
    rows = [
        [str(row["slots"]), aggregator, str(len(row["seeds"]))] + [cell(row[name]) for name in SWEEP_METRICS]
        for aggregator, summaries in sweep.items()
        for row in summaries
    ]
    rows.sort(key=lambda row: int(row[0]))
    return table(["k", "model", "seeds"] + [LABELS[name] for name in SWEEP_METRICS], rows)


def sparsity_table(points: list[dict[str, Any]]) -> list[str]:
    rows = [
        [f"{point['sparsity_weight']:g}" + (" (preset)" if point["preset"] else ""), str(len(point["seeds"]))]
        + [cell(point[name]) for name in SPARSITY_METRICS]
        for point in points
    ]
    return table(["λ", "seeds"] + [LABELS[name] for name in SPARSITY_METRICS], rows)


def markdown_report(study: Study, document: dict[str, Any], evaluated: dict[RunKey, Evaluated]) -> str:
    """The tables of ``shapes_study.md``: main comparison, per seed, sweep, and the missing runs."""
    settings = document["study"]
    lines = [
        f"Main comparison: k = {settings['preset_slots']}, {settings['steps']} steps, last checkpoint, "
        f"first {study.test_images} `test` images ({settings['mean_objects']:.2f} objects per image "
        "on average, plus the background); mean ± std over seeds.",
        "",
        *main_table(document["main"]),
        "",
        "Per seed:",
        "",
        *per_seed_table(study, evaluated),
        "",
        f"Slot-count sweep (seeds {', '.join(map(str, study.sweep_seeds))}): mean ± std over seeds.",
        "",
        *sweep_table(document["sweep"]),
    ]
    if document["sparsity"]:
        lines += [
            "",
            f"AdaSlot's sparsity sweep (k = {settings['preset_slots']}, seeds "
            f"{', '.join(map(str, study.sweep_seeds))}): mean ± std over seeds.",
            "",
            *sparsity_table(document["sparsity"]),
        ]
    lines += keep_decision_table(study, evaluated)
    lines += spare_slot_table(evaluated)
    reused = [key.name for key, run in evaluated.items() if run.reused]
    if reused:
        lines += ["", f"Reused from {study.previous} ({len(reused)} runs, no pictures): " + ", ".join(reused)]
    if document["missing"]:
        lines += ["", f"Missing runs ({len(document['missing'])}): " + ", ".join(document["missing"])]
    return "\n".join(lines) + "\n"


def keep_decision_table(study: Study, evaluated: dict[RunKey, Evaluated]) -> list[str]:
    """AdaSlot's main-comparison runs evaluated with both keep decisions (the sampled one as released,
    the argmax one deterministic): FG-ARI, kept slots and the count error, per seed."""
    runs = [evaluated[key] for key in main_runs(study) if key in evaluated and evaluated[key].other_keep]
    if not runs:
        return []
    shown, other = study.adaslot_eval_keep, "argmax" if study.adaslot_eval_keep == "sample" else "sample"
    names = ("fg_ari", "active_slots", "background_count_error")
    header = ["seed"] + [f"{LABELS[name]} ({keep})" for name in names for keep in (shown, other)]
    rows = [
        [str(run.key.seed)]
        + [number(values[name]) for name in names for values in (run.metrics, run.other_keep)]
        for run in runs
    ]
    return [
        "",
        f"AdaSlot's keep decision at evaluation, {shown} (the tables above) and {other}:",
        "",
    ] + table(header, rows)


SPARE_LABELS = {
    "spare_slots": "spare slots (win no pixel)",
    "spare_alpha_share": "their share of the alpha",
    "spare_keep_probability": "their keep probability",
    "winning_keep_probability": "winning slots' keep probability",
    "loss_all_kept": "pixel loss, all kept",
    "loss_spare_dropped": "pixel loss, spare dropped",
}


def spare_slot_table(evaluated: dict[RunKey, Evaluated]) -> list[str]:
    """`spare_slots` of every AdaSlot run: what dropping the slots that win no pixel would cost."""
    runs = [run for run in evaluated.values() if run.spare is not None]
    if not runs:
        return []
    rows = [[run.key.name] + [number(run.spare[name]) for name in SPARE_LABELS] for run in runs]
    return [
        "",
        f"AdaSlot's spare slots on the first {SPARE_CHECK_IMAGES} test images (`spare_slots`): what "
        "dropping the slots that win no pixel would do to the pixel loss:",
        "",
    ] + table(["run", *SPARE_LABELS.values()], rows)


# --- pictures --------------------------------------------------------------------------------------


def save_figure(figure: Any, path: Path) -> Path:
    """Write the PNG under a temporary name first, so a reader never sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    figure.tight_layout()
    figure.savefig(temporary, dpi=110, format="png")
    pyplot.close(figure)
    temporary.replace(path)
    return path


def grid_panels(row: int, samples: dict[str, PictureSamples]) -> list[tuple[str, numpy.ndarray]]:
    """One grid row: the image, its ground truth and each model's kept-slot segmentation."""
    first = next(iter(samples.values()))
    picture = displayable(torch.cat(first.images)[row])
    segment = torch.cat(first.segments)[row]
    objects = int((segment.unique() > 0).sum())
    panels = [
        ("image", picture),
        (
            f"truth: {objects} object{'s' * (objects != 1)}",
            label_overlay(picture, segment.numpy(), int(segment.max()) + 1),
        ),
    ]
    for name, model_samples in samples.items():
        masks, keep = torch.cat(model_samples.masks)[row], torch.cat(model_samples.keep)[row]
        # Slots from colour 1 on, so none shares the truth's background colour (0).
        labels = kept_slot_labels(masks, keep).numpy() + 1
        kept = int(keep.sum())
        overlay = label_overlay(picture, labels, masks.shape[0] + 1)
        panels.append((f"{name}: {kept} slot{'s' * (kept != 1)}", overlay))
    return panels


def save_comparison_grid(samples: dict[str, PictureSamples], path: Path) -> Path:
    """Rows of test images: image | ground truth | each model's segmentation, titled with its kept slots."""
    rows = next(iter(samples.values())).count
    columns = 2 + len(samples)
    figure, axes = pyplot.subplots(rows, columns, figsize=(1.9 * columns, 1.7 * rows), squeeze=False)
    for row in range(rows):
        for column, (title, panel) in enumerate(grid_panels(row, samples)):
            axis = axes[row, column]
            axis.imshow(numpy.clip(panel, 0, 1), interpolation="nearest")
            axis.set_title(title, fontsize=7)
            axis.set_xticks([])
            axis.set_yticks([])
    return save_figure(figure, path)


def kept_per_object_count(counts: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """From ``counts[objects, kept]``: the object counts present, and the mean and std of kept slots."""
    per_count = counts.sum(1)
    used = numpy.nonzero(per_count)[0]
    slots = numpy.arange(counts.shape[1])
    mean = (counts[used] * slots).sum(1) / per_count[used]
    spread = numpy.sqrt((counts[used] * (slots - mean[:, None]) ** 2).sum(1) / per_count[used])
    return used, mean, spread


def save_count_histograms(histograms: dict[str, numpy.ndarray], path: Path) -> Path:
    """Left: kept slots − (objects + 1) over the test images of all seeds (0: one slot per object plus
    the background); right: mean ± std of kept slots per object count against objects + 1."""
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(9, 3.4))
    width = 0.8 / len(histograms)
    for index, (name, counts) in enumerate(histograms.items()):
        objects, slots = numpy.nonzero(counts)
        differences = numpy.repeat(slots - objects - 1, counts[objects, slots].astype(int))
        values, frequency = numpy.unique(differences, return_counts=True)
        offset = (index - (len(histograms) - 1) / 2) * width
        left.bar(values + offset, frequency / frequency.sum(), width, label=name)
        used, mean, spread = kept_per_object_count(counts)
        right.errorbar(used + offset / 4, mean, yerr=spread, marker="o", capsize=3, label=name)
    left.axvline(0, color="grey", linestyle="--", linewidth=0.8)
    left.set_xlabel("kept slots − (objects + 1)   (0: one slot per object + background)")
    left.set_ylabel("fraction of test images")
    left.legend(fontsize=8)
    top = max(right.get_xlim()[1], right.get_ylim()[1])
    right.plot([0, top], [1, top + 1], color="black", linestyle="--", linewidth=1, label="objects + 1")
    right.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=0.8, label="objects")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel("annotated objects")
    right.set_ylabel("kept slots (mean ± std)")
    right.legend(fontsize=8)
    return save_figure(figure, path)


def save_sweep_plot(sweep: dict[str, list[dict[str, Any]]], mean_objects: float, path: Path) -> Path:
    """FG-ARI, kept slots and segments against the slot count k (mean ± std over seeds); the count panels
    mark the test images' mean objects + 1 (dashed) and k itself (dotted: every slot kept)."""
    figure, (quality, kept, seen) = pyplot.subplots(1, 3, figsize=(13, 3.4))
    slot_counts = sorted({row["slots"] for rows in sweep.values() for row in rows})
    for index, (name, rows) in enumerate(sweep.items()):
        present = [row for row in rows if row["seeds"]]
        slots = numpy.asarray([row["slots"] for row in present], dtype=float) + 0.08 * (index - 0.5)
        for axis, metric in ((quality, "fg_ari"), (kept, "active_slots"), (seen, "segments")):
            means = [row[metric]["mean"] for row in present]
            spreads = [row[metric]["std"] for row in present]
            axis.errorbar(slots, means, yerr=spreads, marker="o", capsize=3, label=name)
    for axis in (kept, seen):
        axis.axhline(mean_objects + 1, color="black", linestyle="--", linewidth=1, label="mean objects + 1")
        axis.plot(slot_counts, slot_counts, color="grey", linestyle=":", linewidth=0.8, label="k (all slots)")
    for axis, label in (
        (quality, "FG-ARI"),
        (kept, "kept slots"),
        (seen, "segments"),
    ):
        axis.set_xticks(slot_counts)
        axis.set_xlabel("slots k")
        axis.set_ylabel(f"{label} (mean ± std over seeds)")
        axis.legend(fontsize=8)
    seen.set_title("segments: slots that win a pixel", fontsize=9)
    return save_figure(figure, path)


def save_sparsity_plot(
    points: list[dict[str, Any]], metaslot: dict[str, Any] | None, mean_objects: float, path: Path
) -> Path:
    """AdaSlot's FG-ARI, kept slots and count error against λ (log scale, mean ± std over seeds), the
    preset's λ marked; MetaSlot's main-comparison mean (dashed) where it was trained, for scale."""
    figure, panels = pyplot.subplots(1, 3, figsize=(13, 3.4))
    present = [point for point in points if point["seeds"]]
    weights = [point["sparsity_weight"] for point in present]
    metrics = (
        ("fg_ari", "FG-ARI"),
        ("active_slots", "kept slots"),
        ("background_count_error", "|kept − (objects + 1)|"),
    )
    for axis, (metric, label) in zip(panels, metrics, strict=True):
        means = [point[metric]["mean"] for point in present]
        spreads = [point[metric]["std"] for point in present]
        axis.errorbar(weights, means, yerr=spreads, marker="o", capsize=3, label="AdaSlot")
        if present and present[0]["preset"]:
            axis.axvline(weights[0], color="grey", linestyle=":", linewidth=0.8, label="preset λ")
        if metaslot is not None and metaslot["seeds"]:
            axis.axhline(
                metaslot[metric]["mean"], color="tab:orange", linestyle="--", linewidth=1, label="MetaSlot"
            )
        if metric == "active_slots":
            axis.axhline(
                mean_objects + 1, color="black", linestyle="--", linewidth=1, label="mean objects + 1"
            )
        axis.set_xscale("log")
        axis.set_xlabel("sparsity weight λ")
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    figure.suptitle("AdaSlot against its sparsity weight (mean ± std over seeds)", fontsize=10)
    return save_figure(figure, path)


# --- the report ------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """NaN and infinities as null (strict JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(name): json_safe(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def trimmed(histogram: numpy.ndarray) -> list[list[int]]:
    """``histogram[objects][kept]`` cut after the last object count and slot count that occur."""
    rows, columns = numpy.nonzero(histogram)
    return histogram[: rows.max(initial=0) + 1, : columns.max(initial=0) + 1].astype(int).tolist()


def run_record(run: Evaluated) -> dict[str, Any]:
    extra: dict[str, Any] = {"reused": True} if run.reused else {}
    if run.other_keep is not None:
        extra["other_keep"] = run.other_keep
    if run.spare is not None:
        extra["spare_slots"] = run.spare
    return (
        dataclasses.asdict(run.key)
        | {"step": run.step}
        | run.metrics
        | {"slot_histogram": trimmed(run.histogram)}
        | extra
    )


def padded(histogram: numpy.ndarray, shape: tuple[int, int]) -> numpy.ndarray:
    """``histogram`` with zero rows and columns added up to ``shape``."""
    out = numpy.zeros(shape)
    out[: histogram.shape[0], : histogram.shape[1]] = histogram
    return out


def write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def study_settings(study: Study, evaluated: dict[RunKey, Evaluated]) -> dict[str, Any]:
    """The options, plus what the preset decided (slot count, steps) and the test images' mean objects."""
    some_run = next(iter(evaluated.values()))
    return {name: str(value) if isinstance(value, Path) else value for name, value in vars(study).items()} | {
        "preset": "autoencoder_shapes",
        "preset_slots": preset_slots(),
        "steps": run_config(study, some_run.key).loop.steps,
        "test_split": "test",
        "mean_objects": some_run.metrics["true_objects"],
    }


def save_pictures(study: Study, document: dict[str, Any], evaluated: dict[RunKey, Evaluated]) -> None:
    """The comparison grid (lowest finished main seed of each model), kept slots against objects (all
    main seeds) and the sweep plot, each only when its runs exist."""
    main = [evaluated[key] for key in main_runs(study) if key in evaluated]
    first_seed: dict[str, Evaluated] = {}
    histograms: dict[str, numpy.ndarray] = {}
    shape = tuple(max(run.histogram.shape[axis] for run in main) for axis in (0, 1)) if main else (0, 0)
    for run in sorted(main, key=lambda run: run.key.seed):
        if run.samples is not None:  # runs reused from --previous have no pictures
            first_seed.setdefault(run.key.aggregator, run)
        histograms[run.key.aggregator] = histograms.get(run.key.aggregator, 0) + padded(run.histogram, shape)
    if first_seed:
        grid = {f"{name} seed {run.key.seed}": run.samples for name, run in first_seed.items()}
        save_comparison_grid(grid, study.output / "shapes_study_grid.png")
        save_count_histograms(histograms, study.output / "shapes_study_counts.png")
    if any(row["seeds"] for rows in document["sweep"].values() for row in rows):
        mean_objects = document["study"]["mean_objects"]
        save_sweep_plot(document["sweep"], mean_objects, study.output / "shapes_study_sweep.png")
    if any(point["seeds"] for point in document["sparsity"]):
        save_sparsity_plot(
            document["sparsity"],
            document["main"].get("metaslot"),
            document["study"]["mean_objects"],
            study.output / "shapes_study_sparsity.png",
        )


def write_report(study: Study, evaluated: dict[RunKey, Evaluated], missing: list[str]) -> dict[str, Any]:
    """``shapes_study.json``, ``shapes_study.md`` and the PNGs in ``--output``; returns the JSON document.

    ``missing`` holds a note per unfinished run (`missing_note`): listed, left out of every summary.
    """
    study.output.mkdir(parents=True, exist_ok=True)
    document = {
        "study": study_settings(study, evaluated),
        "runs": {run.key.name: run_record(run) for run in evaluated.values()},
        "main": main_summary(study, evaluated),
        "sweep": sweep_summary(study, evaluated),
        "sparsity": sparsity_summary(study, evaluated),
        "missing": missing,
    }
    write_text(study.output / "shapes_study.json", json.dumps(json_safe(document), indent=2) + "\n")
    write_text(study.output / "shapes_study.md", markdown_report(study, document, evaluated))
    save_pictures(study, document, evaluated)
    return document


def run_study(study: Study) -> dict[str, Any]:
    """Train (or resume, or skip) this process's runs, then report every finished run of the study
    (unless ``--no-report``)."""
    if not study.report_only:
        for key in runs_to_train(study):
            train_run(study, key)
        if not study.report:
            return {}
    finished = [key for key in all_runs(study) if is_finished(study, key)]
    reused = previous_runs(study, [key for key in all_runs(study) if key not in finished])
    missing = [
        missing_note(study, key) for key in all_runs(study) if key not in finished and key not in reused
    ]
    if missing:
        print(f"missing runs ({len(missing)}), left out of the report: " + ", ".join(missing))
    if not finished and not reused:
        print(f"no finished run under {study.runs_dir}: nothing to report")
        return {}
    evaluated = {key: evaluate_run(study, key) for key in finished} | reused
    evaluated = {key: evaluated[key] for key in all_runs(study) if key in evaluated}  # study order
    document = write_report(study, evaluated, missing)
    print((study.output / "shapes_study.md").read_text())
    return document


def main(argv: list[str] | None = None) -> None:
    study = tyro.cli(Study, args=argv, description=__doc__)
    try:
        run_study(study)
    except TrainingInterrupted as error:
        # The run's checkpoint is saved; the study resumes it by itself (no --resume to add).
        raise SystemExit(
            "shapes_study: stopped by a signal; run the same command again to continue"
        ) from error
    except MetaslotError as error:
        raise SystemExit(f"shapes_study: error: {error}") from error


if __name__ == "__main__":
    main()
