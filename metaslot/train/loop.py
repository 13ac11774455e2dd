"""The training loop: one function, `train(config)`, from an empty or existing run folder to the last step.

Per optimiser step: learning rate from the step, ``accumulate`` micro-batches (forward under autocast,
backward, gradients synchronised by DDP on the last one), a finiteness check on the loss (before the
update, so weights stay good), clipping, the optimiser step, then ``pipeline.after_optimizer_step``
(codebook upkeep). Validation, logging and checkpoints are counted in steps. Everything random that
the run consumes is either derived from (seed, step) or saved in the checkpoint, so ``--resume``
continues bit for bit on the CPU.

Data order: `metaslot.data.loader.make_loader` (the project's one `ResumableSampler`) with the
epoch's order sharded over processes; each optimiser step consumes ``batch_size`` consecutive samples
of the epoch order, split into ``world_size × accumulate`` micro-batches, so a run's samples per step
do not depend on the number of processes. The last incomplete global batch of an epoch is dropped.
Video datasets (MOVi-D) arrive as batches of frames (see `metaslot.data.video`): the pipelines train
on every frame as an image.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn
from tqdm import tqdm

from metaslot.data.loader import available_cpus, make_loader, worker_count
from metaslot.data.records import Batch
from metaslot.eval.evaluate import EvaluationResult, evaluate
from metaslot.eval.session import evaluate_and_report
from metaslot.models.records import PipelineOutput
from metaslot.train import checkpoint as checkpoints
from metaslot.train import distributed
from metaslot.train.config import TrainConfig, config_to_json
from metaslot.train.device import autocast, resolve_device, resolve_precision
from metaslot.train.errors import ConfigError, NonFiniteLossError, TrainingInterrupted
from metaslot.train.logging import MetricsLog
from metaslot.train.schedules import warmup_cosine
from metaslot.train.signals import StopRequest
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
class BatchLayout:
    """How one optimiser step's ``batch_size`` samples split over processes and accumulation steps."""

    dataset_size: int
    batch_size: int
    accumulate: int = 1
    world_size: int = 1

    def __attrs_post_init__(self) -> None:
        parts = self.world_size * self.accumulate
        if self.batch_size % parts != 0:
            raise ConfigError(
                f"--loop.batch-size {self.batch_size} is not divisible by processes × accumulation ({parts}); "
                f"use a multiple of {parts}"
            )
        if self.dataset_size < self.batch_size:
            raise ConfigError(
                f"the training split has {self.dataset_size} samples, fewer than --loop.batch-size "
                f"{self.batch_size}; lower the batch size or use a bigger split"
            )

    @property
    def micro_batch_size(self) -> int:
        return self.batch_size // (self.world_size * self.accumulate)

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset_size // self.batch_size

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, step within the epoch) at which optimiser step ``step`` (0-based) reads its data."""
        return divmod(step, self.steps_per_epoch)

    def samples_before(self, step_in_epoch: int) -> int:
        """How many samples of the epoch this process has consumed before ``step_in_epoch``."""
        return step_in_epoch * self.accumulate * self.micro_batch_size


def training_batches(
    dataset: torch.utils.data.Dataset,
    layout: BatchLayout,
    *,
    start_step: int,
    seed: int,
    num_workers: int,
    distributed: bool,
    pin_memory: bool,
) -> Iterator[Batch]:
    """This process's micro-batches from optimiser step ``start_step`` on, epoch after epoch."""
    epoch, within = layout.position(start_step)
    while True:
        yield from make_loader(
            dataset,
            layout.micro_batch_size,
            shuffle=True,
            num_workers=num_workers,
            seed=seed,
            epoch=epoch,
            distributed=distributed,
            drop_last=True,
            pin_memory=pin_memory,
            start_index=layout.samples_before(within),
            global_batch_size=layout.batch_size,
        )
        epoch, within = epoch + 1, 0


def _clip_gradients(parameters: list[torch.nn.Parameter], config: TrainConfig) -> None:
    if config.optim.clip_norm is None:
        return
    norm_type = 2.0 if config.optim.clip_norm_type == "l2" else math.inf
    torch.nn.utils.clip_grad_norm_(parameters, config.optim.clip_norm, norm_type=norm_type)


def _improved(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def _write_config(config: TrainConfig, run_dir: Path, invocation: dict[str, Any] | None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints._atomic_write_bytes(
        run_dir / "config.json", config_to_json(config, invocation=invocation or {}).encode()
    )


def train(config: TrainConfig, *, invocation: dict[str, Any] | None = None) -> TrainResult:
    """Train (or resume) the run ``config.run_dir``; collective under torchrun."""
    context = distributed.context_from_environment()
    device = resolve_device(config.device, context.local_rank)
    dtype = resolve_precision(config.precision, device)
    distributed.start(context, device)
    try:
        return _train(config, context, device, dtype, invocation)
    finally:
        distributed.stop(context)


def _train(
    config: TrainConfig,
    context: distributed.DistributedContext,
    device: torch.device,
    dtype: torch.dtype,
    invocation: dict[str, Any] | None,
) -> TrainResult:
    run_dir = config.run_dir
    checkpoint_dir = run_dir / "checkpoints"
    latest = checkpoints.latest_checkpoint(checkpoint_dir)
    if latest is not None and not config.resume:
        raise ConfigError(
            f"run folder {run_dir} already has checkpoints; add --resume to continue it or pick another --name"
        )

    # Same seed on every rank for the weights; DDP also broadcasts rank 0's state at wrap time.
    torch.manual_seed(config.loop.seed)
    pipeline = build_pipeline(config).to(device)
    torch.manual_seed(config.loop.seed + 1_000 * context.rank)

    train_set = config.data.build("train", True)
    val_set = config.data.build(config.evaluation.split, False)
    layout = BatchLayout(
        dataset_size=len(train_set),
        batch_size=config.loop.batch_size,
        accumulate=config.loop.accumulate,
        world_size=context.world_size,
    )
    parameters = [parameter for parameter in pipeline.parameters() if parameter.requires_grad]
    if not parameters:
        raise ConfigError(
            "the pipeline has no trainable parameters; check the frozen-parameter options of --model"
        )
    optimizer = config.optim.build(parameters)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    state = checkpoints.LoopState()
    if config.resume and latest is not None:
        state, _ = checkpoints.load_training_checkpoint(
            latest, model=pipeline, optimizer=optimizer, scaler=scaler
        )
    if context.is_main:
        _write_config(config, run_dir, invocation)
    log = MetricsLog(run_dir, enabled=context.is_main, tensorboard=config.tensorboard)
    log.truncate_after(state.step)

    runner: torch.nn.Module = LossAndOutput(pipeline)
    if context.enabled:
        runner = torch.nn.parallel.DistributedDataParallel(
            runner,
            device_ids=[device.index] if device.type == "cuda" else None,
            # MetaSlot's prototypes get gradients only on some steps; codebook buffers sync in update_codebook.
            find_unused_parameters=True,
            broadcast_buffers=False,
        )
    if config.compile:
        runner = torch.compile(runner)

    total = config.loop.steps
    stop_at = min(config.loop.stop_at or total, total)
    warmup = int(total * config.schedule.warmup_fraction)
    num_workers = worker_count(config.loop.num_workers, available_cpus())
    if context.is_main and num_workers < config.loop.num_workers:
        print(fewer_workers_note(config.loop.num_workers, num_workers), file=sys.stderr)
    batches = training_batches(
        train_set,
        layout,
        start_step=state.step,
        seed=config.loop.seed,
        num_workers=num_workers,
        distributed=context.enabled,
        pin_memory=device.type == "cuda",
    )
    progress = tqdm(
        total=stop_at,
        initial=state.step,
        disable=not (context.is_main and config.progress),
        dynamic_ncols=True,
        desc=config.name,
        file=sys.stderr,
    )
    last_validation: dict[str, float] | None = None
    last_saved: Path | None = latest if config.resume else None

    def save(name: str = "", point_latest: bool = True) -> Path | None:
        if not context.is_main:
            return None
        epoch, within = layout.position(state.step)
        sidecar = checkpoints.save_checkpoint(
            checkpoint_dir,
            name or checkpoints.checkpoint_name(state.step),
            model=pipeline,
            optimizer=None if name else optimizer,
            scaler=scaler,
            state=state,
            data_position={"epoch": epoch, "step_in_epoch": within},
            extra={"run": config.name},
            point_latest=point_latest,
        )
        if not name:
            checkpoints.prune_checkpoints(checkpoint_dir, config.loop.keep_checkpoints)
        return sidecar

    def validate() -> EvaluationResult:
        return evaluate(
            pipeline,
            val_set,
            batch_size=config.evaluation.batch_size or layout.micro_batch_size,
            device=device,
            dtype=dtype,
            max_batches=config.loop.val_batches,
            world_size=context.world_size,
            rank=context.rank,
            seed=config.loop.seed,
            average=config.evaluation.average,
        )

    window_start = time.perf_counter()
    window_steps = 0
    pipeline.train()
    with StopRequest() as stop_request:
        while state.step < stop_at:
            step = state.step
            learning_rate = warmup_cosine(
                step,
                peak=config.optim.learning_rate,
                total_steps=total,
                warmup_steps=warmup,
                final=config.schedule.final_learning_rate,
            )
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            optimizer.zero_grad(set_to_none=True)
            loss_sum = torch.zeros((), device=device)
            output: PipelineOutput | None = None
            for micro in range(config.loop.accumulate):
                batch = next(batches).to(device, non_blocking=True)
                synchronise = micro == config.loop.accumulate - 1 or not context.enabled
                sync_context = runner.no_sync() if not synchronise and hasattr(runner, "no_sync") else _null()
                with sync_context:
                    with autocast(device, dtype):
                        loss, output = runner(batch.image)
                    scaler.scale(loss.float() / config.loop.accumulate).backward()
                loss_sum += loss.detach().float()
            reduced = distributed.all_reduce_sum(loss_sum / (config.loop.accumulate * context.world_size))
            step_loss = float(reduced)
            if not math.isfinite(step_loss):
                where = (
                    f"; the last good checkpoint is {last_saved}"
                    if last_saved
                    else " before any checkpoint was saved"
                )
                raise NonFiniteLossError(
                    f"loss became {step_loss} at step {step + 1}{where}; lower --optim.learning-rate, "
                    "keep --optim.clip-norm on, or use --precision bf16/fp32"
                )
            scaler.unscale_(optimizer)
            _clip_gradients(parameters, config)
            scaler.step(optimizer)
            scaler.update()
            assert output is not None
            pipeline.after_optimizer_step(output)
            state = attrs.evolve(state, step=step + 1)
            window_steps += 1
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4g}", lr=f"{learning_rate:.2e}", refresh=False)

            if state.step % config.loop.log_every == 0 or state.step == stop_at:
                elapsed = time.perf_counter() - window_start
                terms = {
                    f"loss/{name}": float(value.detach().float().mean())
                    for name, value in output.terms.items()
                }
                statistics = pipeline.codebook_statistics()
                codebook = statistics.as_metrics() if statistics is not None else {}
                log.write(
                    state.step,
                    "train",
                    {
                        "loss": step_loss,
                        "lr": learning_rate,
                        **terms,
                        **codebook,
                        "time/steps_per_second": window_steps / max(elapsed, 1e-9),
                    },
                )
                window_start, window_steps = time.perf_counter(), 0

            if state.step % config.loop.val_every == 0 or state.step == total:
                result = validate()
                last_validation = result.metrics
                log.write(state.step, "val", result.metrics)
                value = result.metrics.get(config.loop.best_metric, float("nan"))
                if _improved(value, state.best_value, config.loop.best_mode):
                    state = attrs.evolve(state, best_value=value, best_step=state.step)
                    save("best", point_latest=False)
                if context.is_main:
                    progress.write(_format_validation(state.step, result.metrics))

            stop_signal = stop_request.signal_number or 0
            if context.enabled:
                stop_signal = int(distributed.all_reduce_sum(torch.tensor(stop_signal, dtype=torch.long)))
            if state.step % config.loop.checkpoint_every == 0 or state.step == stop_at or stop_signal:
                last_saved = save() or last_saved
            if stop_signal:
                progress.close()
                log.close()
                distributed.barrier()
                raise TrainingInterrupted(
                    f"stopped by signal at step {state.step}; checkpoint saved in {checkpoint_dir}; "
                    f"continue with the same command plus --resume",
                    signal_number=stop_request.signal_number or 15,
                )
    progress.close()
    if config.evaluate_at_end and state.step >= total:
        final = evaluate_and_report(
            pipeline,
            val_set,
            output_dir=run_dir / "eval",
            batch_size=config.evaluation.batch_size or layout.micro_batch_size,
            device=device,
            dtype=dtype,
            max_batches=config.evaluation.max_batches,
            pictures=config.evaluation.pictures,
            gallery_codes=config.evaluation.gallery_codes,
            gallery_examples=config.evaluation.gallery_examples,
            world_size=context.world_size,
            rank=context.rank,
            seed=config.loop.seed,
            title=f"{config.name} step {state.step} ({config.evaluation.split})",
            average=config.evaluation.average,
        )
        last_validation = final.metrics
        log.write(state.step, "eval", final.metrics)
    log.close()
    distributed.barrier()
    if context.is_main and last_saved is None:
        last_saved = checkpoint_dir / f"{checkpoints.checkpoint_name(state.step)}.json"
    return TrainResult(
        run_dir=run_dir, step=state.step, checkpoint=last_saved, last_validation=last_validation
    )


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


def fewer_workers_note(requested: int, used: int) -> str:
    """The one line that says the loader starts fewer workers than ``--loop.num-workers`` asked for."""
    return (
        f"data loader: {used} worker{'s' if used != 1 else ''} instead of --loop.num-workers {requested}, "
        f"one per available CPU"
    )


def _format_validation(step: int, metrics: dict[str, float]) -> str:
    shown = ("loss", "ari", "fg_ari", "mbo", "miou", "active_slots")
    parts = [f"{name} {metrics[name]:.4f}" for name in shown if name in metrics]
    return f"step {step} val: " + ", ".join(parts)


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (for tests and notebooks)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.is_file() else []
