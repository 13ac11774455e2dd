"""Preparing a run: open its folder (lock, checks, the checkpoint to resume from), then build what the
training loop reads once — model on its device, data, optimiser, logs, the evaluation settings — as a
`TrainingSession`, with the `RunState` the first step starts from.

Each function takes the part of the config it reads (`stop_step` the loop settings, `wrap_for_training`
the ``--compile`` flag); `prepare` hands them out.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn

from metaslot.data.loader import available_cpus, worker_count
from metaslot.data.records import Batch
from metaslot.errors import ConfigError, MetaslotError
from metaslot.eval_settings import EvaluationSettings
from metaslot.models.records import PipelineOutput
from metaslot.runtime import distributed
from metaslot.train import checkpoint as checkpoints
from metaslot.train import run_folder
from metaslot.train.batches import BatchLayout, fewer_workers_note, training_batches
from metaslot.train.checkpoint import LoopState
from metaslot.train.config import LoopSpec, TrainConfig, to_jsonable
from metaslot.train.datasets import run_datasets
from metaslot.train.init_from import initialise_from, print_report
from metaslot.train.loggers import LoggerGroup, WandbSettings, open_loggers
from metaslot.train.progress import Progress, make_progress
from metaslot.train.run_folder import RunFolder
from metaslot.train.stages import build_pipeline


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
    evaluation: EvaluationSettings
    """The final report's settings (``--evaluation.*`` on this device and process); validation narrows them."""
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
        return stop_step(self.config.loop)


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
    if config.init_from is not None and folder.checkpoint is None:
        start_from(pipeline, config, context)
    torch.manual_seed(config.loop.seed + 1_000 * context.rank)

    datasets = run_datasets(config)
    layout = BatchLayout(
        dataset_size=len(datasets.train),
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
    runner, ddp = wrap_for_training(pipeline, config.compile, device)
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
        batches=batches_from(datasets.train, layout, state.step, config.loop, context, device),
        val_set=datasets.validation,
        validation_split=datasets.validation_split,
        evaluation=EvaluationSettings(
            spec=config.evaluation,
            batch_size=config.evaluation.batch_size or layout.micro_batch_size,
            device=device,
            dtype=dtype,
            seed=config.loop.seed,
            world_size=context.world_size,
            rank=context.rank,
        ),
        log=log,
        progress=make_progress(
            stop_step(config.loop),
            initial=state.step,
            description=config.name,
            every=config.loop.log_every,
            enabled=context.is_main and config.progress,
        ),
        run_id=folder.run_id,
    )
    return session, RunState(loop=state, last_saved=folder.checkpoint)


def start_from(
    pipeline: torch.nn.Module, config: TrainConfig, context: distributed.DistributedContext
) -> None:
    """``--init-from``: load the fitting weights of another run; rank 0 logs the key report and keeps
    it as ``init_from.json`` in the run folder."""
    report = initialise_from(pipeline, config.init_from)
    if context.is_main:
        print_report(report)
        (config.run_dir / "init_from.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")


def trainable_parameters(pipeline: torch.nn.Module) -> list[torch.nn.Parameter]:
    parameters = [parameter for parameter in pipeline.parameters() if parameter.requires_grad]
    if not parameters:
        raise ConfigError(
            "the pipeline has no trainable parameters; check the frozen-parameter options of --model"
        )
    return parameters


def wrap_for_training(
    pipeline: torch.nn.Module, compiled: bool, device: torch.device
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
    if compiled:
        runner = torch.compile(runner)
    return runner, ddp


def batches_from(
    train_set: torch.utils.data.Dataset,
    layout: BatchLayout,
    start_step: int,
    loop: LoopSpec,
    context: distributed.DistributedContext,
    device: torch.device,
) -> Iterator[Batch]:
    """This process's training micro-batches from ``start_step`` on (fewer workers than CPUs, with a note)."""
    num_workers = worker_count(loop.num_workers, available_cpus())
    if context.is_main and num_workers < loop.num_workers:
        print(fewer_workers_note(loop.num_workers, num_workers), file=sys.stderr)
    return training_batches(
        train_set,
        layout,
        start_step=start_step,
        seed=loop.seed,
        num_workers=num_workers,
        distributed=distributed.is_distributed(),
        pin_memory=device.type == "cuda",
    )


def stop_step(loop: LoopSpec) -> int:
    """The step this invocation stops after (``--loop.stop-at``; schedules still span all steps)."""
    return min(loop.stop_at or loop.steps, loop.steps)


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
