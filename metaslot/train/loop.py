"""The training loop: `train(config, evaluation=...)` from an empty or existing run folder to the last step.

`train` reads like the run: `open_run` (lock the run folder, check it against the flags, find the
checkpoint to resume from; `metaslot.train.run_folder`), `prepare` the run (or resume it), then per
optimiser step `optimizer_step` (learning rate from the step, ``accumulate`` micro-batches with
gradients synchronised by DDP on the last, clipping, the update, then ``pipeline.after_optimizer_step``,
the codebook upkeep on the kept slots of every micro-batch, and one host read of the loss together with
a finiteness check of the weights and optimiser state), `record_step` (progress and the training log),
`validate_and_keep_best` and `checkpoint` when they are due, and at the end `finish` (the final
evaluation). A SIGINT/SIGTERM checkpoints and raises `TrainingInterrupted`. Validation, logging and
checkpoints are counted in optimiser steps. Everything random the run consumes is derived from
(seed, step) or saved in the checkpoint, so ``--resume`` continues bit for bit on the CPU.

The evaluation comes in as an `Evaluation` (the command line passes `metaslot.eval.SplitEvaluation`):
training and evaluation do not import each other. The data order is `metaslot.train.batches`'s;
video datasets (MOVi-D) arrive as batches of frames, which the pipelines train on as images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import attrs
import numpy
import torch
import torch.nn
from jaxtyping import UInt8

from metaslot.data.loader import available_cpus, worker_count
from metaslot.data.records import Batch
from metaslot.errors import ConfigError, MetaslotError, NonFiniteLossError, TrainingInterrupted
from metaslot.models.interfaces import Pipeline
from metaslot.models.records import AggregatorOutput, PipelineOutput, join_aggregator_outputs
from metaslot.runtime import distributed
from metaslot.runtime.device import autocast, resolve_device, resolve_precision
from metaslot.train import checkpoint as checkpoints
from metaslot.train import finite, run_folder
from metaslot.train.batches import BatchLayout, fewer_workers_note, training_batches
from metaslot.train.checkpoint import LoopState
from metaslot.train.config import TrainConfig, to_jsonable
from metaslot.train.datasets import run_datasets
from metaslot.train.loggers import LoggerGroup, WandbSettings, open_loggers
from metaslot.train.logging import read_metrics
from metaslot.train.progress import Progress, make_progress
from metaslot.train.run_folder import RunFolder
from metaslot.train.schedules import warmup_cosine
from metaslot.train.signals import StopRequest
from metaslot.train.stages import build_pipeline

__all__ = [
    "BatchLayout",
    "Evaluation",
    "RunState",
    "TrainResult",
    "TrainingSession",
    "fewer_workers_note",
    "read_metrics",
    "train",
    "training_batches",
]


@runtime_checkable
class ValidationOutcome(Protocol):
    """What a validation gives back: metric means and, when pictures were asked for, the segmentation
    grid of the first images as RGB pixels (logged to TensorBoard / W&B)."""

    @property
    def metrics(self) -> dict[str, float]: ...

    @property
    def picture(self) -> UInt8[numpy.ndarray, "h w 3"] | None: ...


@runtime_checkable
class Evaluation(Protocol):
    """What the loop needs from the evaluation (`metaslot.eval.SplitEvaluation` is the standard one)."""

    def validate(
        self,
        pipeline: Pipeline,
        dataset: torch.utils.data.Dataset,
        *,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype,
        max_batches: int | None,
        world_size: int,
        rank: int,
        seed: int,
        average: Literal["image", "batch"],
        pictures: int,
    ) -> ValidationOutcome:
        """Metric means over ``dataset`` (its first ``max_batches`` batches per process), and on rank 0
        the segmentation grid of its first ``pictures`` images (none for 0); collective."""
        ...

    def report(
        self,
        pipeline: Pipeline,
        dataset: torch.utils.data.Dataset,
        *,
        output_dir: Path,
        title: str,
        batch_size: int,
        device: torch.device,
        dtype: torch.dtype,
        max_batches: int | None,
        pictures: int,
        gallery_codes: int,
        gallery_examples: int,
        world_size: int,
        rank: int,
        seed: int,
        average: Literal["image", "batch"],
        checkpoint: str,
        step: int,
        split: str,
        selected_on: str | None,
    ) -> dict[str, float]:
        """`validate`, then (rank 0) the metrics JSON, the printed table and pictures in ``output_dir``;
        both name the ``checkpoint`` ("last", "best" or a file) at ``step``, the ``split`` reported and,
        for "best", the split it was ``selected_on``."""
        ...


@attrs.frozen
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    last_validation: dict[str, float] | None


class LossAndOutput(torch.nn.Module):
    """Puts the loss first in the output so DDP finds the graph (it cannot look inside a dataclass)."""

    def __init__(self, pipeline: torch.nn.Module) -> None:
        super().__init__()
        self.pipeline = pipeline

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, PipelineOutput]:
        output = self.pipeline(image)
        return output.loss, output


@attrs.frozen
class TrainingSession:
    """Everything `prepare` sets up once for a run; the phases read it (model and optimiser change in place)."""

    config: TrainConfig
    context: distributed.DistributedContext
    device: torch.device
    dtype: torch.dtype
    pipeline: torch.nn.Module
    runner: torch.nn.Module
    """What a micro-step calls: the pipeline behind `LossAndOutput`, DDP and ``torch.compile`` as configured."""
    ddp: torch.nn.parallel.DistributedDataParallel | None
    parameters: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    layout: BatchLayout
    batches: Iterator[Batch]
    val_set: torch.utils.data.Dataset
    """What validation reads: the held-out training samples or the val split (``--loop.val-split``)."""
    validation_split: str
    """``train-holdout`` or ``val``: where the ``best`` checkpoint is chosen."""
    log: LoggerGroup
    """metrics.jsonl, and TensorBoard / W&B when asked (no logger on ranks other than 0)."""
    progress: Progress
    run_id: str | None = None
    """The run's identity from ``config.json``, recorded in every checkpoint."""

    @property
    def checkpoint_dir(self) -> Path:
        return self.config.run_dir / "checkpoints"

    @property
    def stop_at(self) -> int:
        return stop_step(self.config)

    @property
    def eval_batch_size(self) -> int:
        return self.config.evaluation.batch_size or self.layout.micro_batch_size


@attrs.frozen
class RunState:
    """Where the run stands between optimiser steps."""

    loop: LoopState
    """Steps taken and the best validation score so far (what a checkpoint records)."""
    last_saved: Path | None = None
    last_validation: dict[str, float] | None = None
    window_start: float = attrs.field(factory=time.perf_counter)
    """Start of the current logging window (for steps per second)."""
    window_steps: int = 0

    @property
    def step(self) -> int:
        return self.loop.step


@attrs.frozen
class StepResult:
    """One optimiser step: its loss (mean over micro-batches and processes), learning rate and the last
    micro-batch's output (whose named loss terms are logged), its aggregator output joined over the step's
    micro-batches (what the codebook upkeep saw)."""

    loss: float
    learning_rate: float
    output: PipelineOutput


def train(
    config: TrainConfig, *, evaluation: Evaluation, invocation: dict[str, Any] | None = None
) -> TrainResult:
    """Train (or resume) the run ``config.run_dir``; collective under torchrun."""
    context = distributed.context_from_environment()
    device = resolve_device(config.device, context.local_rank)
    dtype = resolve_precision(config.precision, device)
    distributed.start(context, device)
    try:
        with open_run(config, context, device, invocation) as folder:
            if folder.complete:
                return already_complete(config, folder, context)
            session, run = prepare(config, context, device, dtype, folder)
            run = train_steps(session, run, evaluation)
            return finish(session, run, evaluation)
    finally:
        distributed.stop(context)


def train_steps(session: TrainingSession, run: RunState, evaluation: Evaluation) -> RunState:
    """Optimiser steps until ``stop_at``, each followed by the log, validation and checkpoint when due."""
    loop = session.config.loop
    session.pipeline.train()
    with StopRequest() as stop_request:
        while run.step < session.stop_at:
            run = record_step(session, run, optimizer_step(session, run))
            if run.step % loop.val_every == 0 or run.step == loop.steps:
                run = validate_and_keep_best(session, run, evaluation)
            stop_signal = agreed_stop_signal(stop_request.signal_number)
            if run.step % loop.checkpoint_every == 0 or run.step == session.stop_at or stop_signal:
                run = checkpoint(session, run)
            if stop_signal:
                interrupt(session, run, stop_request.signal_number or 15)
    session.progress.close()
    return run


# --- open the run folder, prepare the run (or resume it) ------------------------------------------


@contextlib.contextmanager
def open_run(
    config: TrainConfig,
    context: distributed.DistributedContext,
    device: torch.device,
    invocation: dict[str, Any] | None,
) -> Iterator[RunFolder]:
    """Hold the run folder's lock (rank 0) while training; check the folder against the flags and find
    the checkpoint to resume from. When that fails on any process, every process stops."""
    folder, lock, error = None, None, None
    try:
        folder, lock = run_folder.claim(config, invocation, is_main=context.is_main)
    except MetaslotError as caught:
        error = caught
    failures = distributed.all_reduce_sum(torch.tensor(float(error is not None), device=device))
    if error is not None or float(failures) or folder is None:
        if lock is not None:
            lock.release()
        raise error or MetaslotError(f"another process could not open {config.run_dir}; rank 0 says why")
    try:
        if context.is_main:
            for note in folder.notes:
                print(f"note: {note}", file=sys.stderr)
        yield folder
    finally:
        if lock is not None:
            lock.release()


def already_complete(
    config: TrainConfig, folder: RunFolder, context: distributed.DistributedContext
) -> TrainResult:
    """Resuming a run whose steps and final evaluation are done: say so, change nothing."""
    if context.is_main:
        print(
            f"run {config.run_dir} is complete (step {folder.step} of {config.loop.steps}, final evaluation "
            "done); nothing to train",
            file=sys.stderr,
        )
    return TrainResult(
        run_dir=config.run_dir,
        step=folder.step,
        checkpoint=folder.checkpoint,
        last_validation=folder.final_metrics,
    )


def prepare(
    config: TrainConfig,
    context: distributed.DistributedContext,
    device: torch.device,
    dtype: torch.dtype,
    folder: RunFolder,
) -> tuple[TrainingSession, RunState]:
    """Build model, data, optimiser and logs for this process, resuming from ``folder.checkpoint`` if any."""
    # Same seed on every rank for the weights; DDP also broadcasts rank 0's state at wrap time.
    torch.manual_seed(config.loop.seed)
    pipeline = build_pipeline(config).to(device)
    torch.manual_seed(config.loop.seed + 1_000 * context.rank)

    datasets = run_datasets(config)
    train_set = datasets.train
    layout = BatchLayout(
        dataset_size=len(train_set),
        batch_size=config.loop.batch_size,
        accumulate=config.loop.accumulate,
        world_size=context.world_size,
    )
    parameters = trainable_parameters(pipeline)
    optimizer = config.optim.build(parameters)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    state = LoopState()
    if folder.checkpoint is not None:
        state, _ = checkpoints.load_training_checkpoint(
            folder.checkpoint, model=pipeline, optimizer=optimizer, scaler=scaler
        )
    log = open_run_loggers(config, context)
    log.truncate_after(state.step)
    runner, ddp = wrap_for_training(pipeline, config, context, device)
    session = TrainingSession(
        config=config,
        context=context,
        device=device,
        dtype=dtype,
        pipeline=pipeline,
        runner=runner,
        ddp=ddp,
        parameters=parameters,
        optimizer=optimizer,
        scaler=scaler,
        layout=layout,
        batches=batches_from(train_set, layout, state.step, config, context, device),
        val_set=datasets.validation,
        validation_split=datasets.validation_split,
        log=log,
        progress=make_progress(
            stop_step(config),
            initial=state.step,
            description=config.name,
            every=config.loop.log_every,
            enabled=context.is_main and config.progress,
        ),
        run_id=folder.run_id,
    )
    return session, RunState(loop=state, last_saved=folder.checkpoint)


def trainable_parameters(pipeline: torch.nn.Module) -> list[torch.nn.Parameter]:
    parameters = [parameter for parameter in pipeline.parameters() if parameter.requires_grad]
    if not parameters:
        raise ConfigError(
            "the pipeline has no trainable parameters; check the frozen-parameter options of --model"
        )
    return parameters


def wrap_for_training(
    pipeline: torch.nn.Module,
    config: TrainConfig,
    context: distributed.DistributedContext,
    device: torch.device,
) -> tuple[torch.nn.Module, torch.nn.parallel.DistributedDataParallel | None]:
    """(what the step calls, the DDP wrapper or None): loss first for DDP, then DDP and compile if asked."""
    runner: torch.nn.Module = LossAndOutput(pipeline)
    ddp = None
    if distributed.is_distributed():
        runner = ddp = torch.nn.parallel.DistributedDataParallel(
            runner,
            device_ids=[device.index] if device.type == "cuda" else None,
            # MetaSlot's prototypes get gradients only on some steps; codebook buffers sync in update_codebook.
            find_unused_parameters=True,
            broadcast_buffers=False,
        )
    if config.compile:
        runner = torch.compile(runner)
    return runner, ddp


def batches_from(
    train_set: torch.utils.data.Dataset,
    layout: BatchLayout,
    start_step: int,
    config: TrainConfig,
    context: distributed.DistributedContext,
    device: torch.device,
) -> Iterator[Batch]:
    """This process's training micro-batches from ``start_step`` on (fewer workers than CPUs, with a note)."""
    num_workers = worker_count(config.loop.num_workers, available_cpus())
    if context.is_main and num_workers < config.loop.num_workers:
        print(fewer_workers_note(config.loop.num_workers, num_workers), file=sys.stderr)
    return training_batches(
        train_set,
        layout,
        start_step=start_step,
        seed=config.loop.seed,
        num_workers=num_workers,
        distributed=distributed.is_distributed(),
        pin_memory=device.type == "cuda",
    )


def stop_step(config: TrainConfig) -> int:
    """The step this invocation stops after (``--loop.stop-at``; schedules still span all steps)."""
    return min(config.loop.stop_at or config.loop.steps, config.loop.steps)


def open_run_loggers(config: TrainConfig, context: distributed.DistributedContext) -> LoggerGroup:
    """metrics.jsonl, plus TensorBoard (``--tensorboard``) and W&B (``--wandb``) on rank 0."""
    wandb = WandbSettings(config.wandb_project, config.wandb_name) if config.wandb else None
    return open_loggers(
        config.run_dir,
        enabled=context.is_main,
        run_name=config.name,
        tensorboard=config.tensorboard,
        wandb=wandb,
        config=to_jsonable(config) if config.wandb else None,
    )


# --- one optimiser step ---------------------------------------------------------------------------


def optimizer_step(session: TrainingSession, run: RunState) -> StepResult:
    """Optimiser step ``run.step + 1``: accumulate the micro-batches' gradients, check the loss, update."""
    config, accumulate = session.config, session.config.loop.accumulate
    learning_rate = warmup_cosine(
        run.step,
        peak=config.optim.learning_rate,
        total_steps=config.loop.steps,
        warmup_steps=int(config.loop.steps * config.schedule.warmup_fraction),
        final=config.schedule.final_learning_rate,
    )
    for group in session.optimizer.param_groups:
        group["lr"] = learning_rate
    session.optimizer.zero_grad(set_to_none=True)
    loss_sum, output = accumulate_gradients(session)
    session.scaler.unscale_(session.optimizer)
    clip_gradients(session.parameters, config)
    session.scaler.step(session.optimizer)
    session.scaler.update()
    session.pipeline.after_optimizer_step(output)
    step_loss = checked_loss(session, run, loss_sum / (accumulate * session.context.world_size))
    return StepResult(loss=step_loss, learning_rate=learning_rate, output=output)


def accumulate_gradients(session: TrainingSession) -> tuple[torch.Tensor, PipelineOutput]:
    """Forward and backward of the step's ``accumulate`` micro-batches: (sum of their losses, device
    tensor; the step's output). The output is the last micro-batch's, with the aggregator outputs of
    all micro-batches joined, so the codebook upkeep sees every kept slot of the step once."""
    accumulate = session.config.loop.accumulate
    loss_sum = torch.zeros((), device=session.device)
    aggregated: list[AggregatorOutput] = []
    for micro in range(accumulate):
        batch = next(session.batches).to(session.device, non_blocking=True)
        with gradient_sync(session, last_micro_batch=micro == accumulate - 1):
            with autocast(session.device, session.dtype):
                loss, output = session.runner(batch.image)
            session.scaler.scale(loss.float() / accumulate).backward()
        loss_sum += loss.detach().float()
        if output.aggregator is not None:
            aggregated.append(output.aggregator)
    if len(aggregated) > 1:
        output = dataclasses.replace(output, aggregator=join_aggregator_outputs(aggregated))
    return loss_sum, output


def gradient_sync(session: TrainingSession, last_micro_batch: bool) -> contextlib.AbstractContextManager:
    """DDP all-reduces the gradients of the last micro-batch only (``no_sync`` before it)."""
    if session.ddp is None or last_micro_batch:
        return contextlib.nullcontext()
    return session.ddp.no_sync()


def checked_loss(session: TrainingSession, run: RunState, loss: torch.Tensor) -> float:
    """The step's loss (mean over processes), read from the device in one go with the number of weight,
    buffer and optimiser-state tensors the update left non-finite; either kind of NaN/inf stops the run."""
    state = finite.training_state(session.parameters, session.pipeline, session.optimizer)
    health = torch.stack([loss, finite.nonfinite_count(state, loss.device)])
    step_loss, nonfinite = distributed.all_reduce_sum(health).tolist()  # the step's one host read
    require_finite(step_loss, run, nonfinite_tensors=int(nonfinite))
    return step_loss


def require_finite(step_loss: float, run: RunState, nonfinite_tensors: int = 0) -> None:
    """Stop at the first NaN/inf loss, weight or optimiser state, naming the last good checkpoint (which
    stays what ``latest.json`` points at: the step is never saved)."""
    if math.isfinite(step_loss) and not nonfinite_tensors:
        return
    where = (
        f"; the last good checkpoint is {run.last_saved}"
        if run.last_saved
        else " before any checkpoint was saved"
    )
    what = (
        f"loss became {step_loss}"
        if not math.isfinite(step_loss)
        else f"{nonfinite_tensors} weight or optimiser-state tensors became NaN/inf (loss {step_loss:.4g})"
    )
    raise NonFiniteLossError(
        f"{what} at step {run.step + 1}{where}; lower --optim.learning-rate, "
        "keep --optim.clip-norm on, or use --precision bf16/fp32"
    )


def clip_gradients(parameters: list[torch.nn.Parameter], config: TrainConfig) -> None:
    if config.optim.clip_norm is None:
        return
    norm_type = 2.0 if config.optim.clip_norm_type == "l2" else math.inf
    torch.nn.utils.clip_grad_norm_(parameters, config.optim.clip_norm, norm_type=norm_type)


def record_step(session: TrainingSession, run: RunState, result: StepResult) -> RunState:
    """Count the step, move the progress bar and, when due, write the training row of ``metrics.jsonl``."""
    step = run.step + 1
    run = attrs.evolve(run, loop=attrs.evolve(run.loop, step=step), window_steps=run.window_steps + 1)
    session.progress.advance(step, {"loss": f"{result.loss:.4g}", "lr": f"{result.learning_rate:.2e}"})
    if step % session.config.loop.log_every != 0 and step != session.stop_at:
        return run
    elapsed = time.perf_counter() - run.window_start
    terms = {
        f"loss/{name}": float(value.detach().float().mean()) for name, value in result.output.terms.items()
    }
    statistics = session.pipeline.codebook_statistics()
    codebook = statistics.as_metrics() if statistics is not None else {}
    row = {
        "loss": result.loss,
        "lr": result.learning_rate,
        **terms,
        **codebook,
        "time/steps_per_second": run.window_steps / max(elapsed, 1e-9),
    }
    session.log.log_scalars(step, "train", row)
    return attrs.evolve(run, window_start=time.perf_counter(), window_steps=0)


# --- validate and keep the best, checkpoint -------------------------------------------------------


def validate_and_keep_best(session: TrainingSession, run: RunState, evaluation: Evaluation) -> RunState:
    """Score the pipeline on the validation data (``--loop.val-split``), log the metrics and the
    segmentation grid (where a logger shows pictures); a better ``best_metric`` saves the ``best`` weights."""
    config = session.config
    outcome = evaluation.validate(
        session.pipeline,
        session.val_set,
        batch_size=session.eval_batch_size,
        device=session.device,
        dtype=session.dtype,
        max_batches=config.loop.val_batches,
        world_size=session.context.world_size,
        rank=session.context.rank,
        seed=config.loop.seed,
        average=config.evaluation.average,
        pictures=config.evaluation.pictures if session.log.wants_images else 0,
    )
    metrics = outcome.metrics
    session.log.log_scalars(run.step, "val", metrics)
    if outcome.picture is not None:
        session.log.log_image(run.step, "val/segmentation", outcome.picture)
    run = attrs.evolve(run, last_validation=metrics)
    value = metrics.get(config.loop.best_metric, float("nan"))
    if improved(value, run.loop.best_value, config.loop.best_mode):
        run = attrs.evolve(run, loop=attrs.evolve(run.loop, best_value=value, best_step=run.step))
        save(session, run.loop, "best", point_latest=False)
    if session.context.is_main:
        session.progress.write(format_validation(run.step, session.validation_split, metrics))
    return run


def improved(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def format_validation(step: int, split: str, metrics: dict[str, float]) -> str:
    shown = ("loss", "ari", "fg_ari", "mbo", "miou", "active_slots")
    parts = [f"{name} {metrics[name]:.4f}" for name in shown if name in metrics]
    return f"step {step} val ({split}): " + ", ".join(parts)


def checkpoint(session: TrainingSession, run: RunState) -> RunState:
    """Save the step's checkpoint (rank 0) and keep only the newest ``--loop.keep-checkpoints``."""
    return attrs.evolve(run, last_saved=save(session, run.loop) or run.last_saved)


def save(
    session: TrainingSession, state: LoopState, name: str = "", point_latest: bool = True
) -> Path | None:
    """Write checkpoint ``name`` (a step checkpoint with optimiser and RNG state when empty) on rank 0."""
    if not session.context.is_main:
        return None
    epoch, within = session.layout.position(state.step)
    sidecar = checkpoints.save_checkpoint(
        session.checkpoint_dir,
        name or checkpoints.checkpoint_name(state.step),
        model=session.pipeline,
        optimizer=None if name else session.optimizer,
        scaler=session.scaler,
        state=state,
        data_position={"epoch": epoch, "step_in_epoch": within},
        extra={"run": session.config.name, "run_id": session.run_id},
        point_latest=point_latest,
    )
    if not name:
        checkpoints.prune_checkpoints(session.checkpoint_dir, session.config.loop.keep_checkpoints)
    return sidecar


def agreed_stop_signal(local_signal: int | None) -> int:
    """Non-zero when any process received SIGINT/SIGTERM, so every rank stops after the same step."""
    stop_signal = local_signal or 0
    if distributed.is_distributed():
        stop_signal = int(distributed.all_reduce_sum(torch.tensor(stop_signal, dtype=torch.long)))
    return stop_signal


def interrupt(session: TrainingSession, run: RunState, signal_number: int) -> None:
    """Close the logs and raise `TrainingInterrupted` (the checkpoint of this step is already saved)."""
    session.progress.close()
    session.log.close()
    distributed.barrier()
    raise TrainingInterrupted(
        f"stopped by signal at step {run.step}; checkpoint saved in {session.checkpoint_dir}; "
        f"continue with the same command plus --resume, or with --resume {session.config.run_dir}",
        signal_number=signal_number,
    )


# --- finish ---------------------------------------------------------------------------------------


def finish(session: TrainingSession, run: RunState, evaluation: Evaluation) -> TrainResult:
    """The final evaluation (with its report and pictures) once the last step is done; close the logs."""
    config, context = session.config, session.context
    if config.evaluate_at_end and run.step >= config.loop.steps:
        metrics = evaluation.report(
            session.pipeline,
            config.data.build(config.evaluation.split, False),
            output_dir=config.run_dir / "eval",
            title=f"{config.name} step {run.step} ({config.evaluation.split})",
            batch_size=session.eval_batch_size,
            device=session.device,
            dtype=session.dtype,
            max_batches=config.evaluation.max_batches,
            pictures=config.evaluation.pictures,
            gallery_codes=config.evaluation.gallery_codes,
            gallery_examples=config.evaluation.gallery_examples,
            world_size=context.world_size,
            rank=context.rank,
            seed=config.loop.seed,
            average=config.evaluation.average,
            checkpoint="last",
            step=run.step,
            split=config.evaluation.split,
            selected_on=None,
        )
        session.log.log_scalars(run.step, "eval", metrics)
        run = attrs.evolve(run, last_validation=metrics)
    session.log.close()
    distributed.barrier()
    last_saved = run.last_saved
    if context.is_main and last_saved is None:
        last_saved = session.checkpoint_dir / f"{checkpoints.checkpoint_name(run.step)}.json"
    return TrainResult(
        run_dir=config.run_dir, step=run.step, checkpoint=last_saved, last_validation=run.last_validation
    )
