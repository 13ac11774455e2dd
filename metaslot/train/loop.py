"""The training loop: `train(config, evaluation=...)` from an empty or existing run folder to the last step.

`train` reads like the run: `open_run` (lock the run folder, check it against the flags, find the
checkpoint to resume from) and `prepare` the run or resume it (both in `metaslot.train.preparation`), then per
optimiser step `optimizer_step` (learning rate from the step, ``accumulate`` micro-batches with
gradients synchronised by DDP on the last, clipping, the update, then ``pipeline.after_optimizer_step``,
the codebook upkeep on the kept slots of every micro-batch, and one host read of the loss together with
a finiteness check of the weights and optimiser state), `record_step` (progress and the training log),
`validate_and_keep_best` and `checkpoint` when they are due, and at the end `finish` (the final
evaluation). A signal that ends the job (SIGINT/TERM/HUP/USR1/USR2) checkpoints the step and raises
`TrainingInterrupted`, as does one during the final evaluation. Validation, logging and checkpoints are counted in optimiser steps. Everything random the run consumes is derived from
(seed, step) or saved in the checkpoint, so ``--resume`` continues bit for bit on the CPU.

The evaluation comes in as an `Evaluation` (the command line passes `metaslot.eval.SplitEvaluation`)
and is called with one `EvaluationSettings` record (`metaslot.eval_settings`, which training and
evaluation share without importing each other). The data order is `metaslot.train.batches`'s;
video datasets (MOVi-D) arrive as batches of frames, which the pipelines train on as images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from pathlib import Path
from typing import Any

import attrs
import torch

from metaslot.errors import NonFiniteLossError, TrainingInterrupted
from metaslot.eval_settings import Evaluation, Provenance
from metaslot.models.records import AggregatorOutput, PipelineOutput, join_aggregator_outputs
from metaslot.runtime import distributed
from metaslot.runtime.device import autocast, resolve_device, resolve_precision
from metaslot.train import checkpoint as checkpoints
from metaslot.train import finite
from metaslot.train.checkpoint import LoopState
from metaslot.train.config import OptimSpec, ScheduleSpec, TrainConfig, model_record
from metaslot.train.preparation import (
    RunState,
    TrainingSession,
    TrainResult,
    already_complete,
    open_run,
    prepare,
)
from metaslot.train.requirements import check_requirements
from metaslot.train.schedules import warmup_cosine
from metaslot.train.signals import Stopped, StopRequest, signal_name
from metaslot.train.stages import attach_teacher

__all__ = ["TrainResult", "train"]


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
    """Train (or resume) the run ``config.run_dir``; collective under torchrun. Everything the run needs
    is checked first, and all that is missing reported at once, before the run folder is touched."""
    check_requirements(config)
    config = attach_teacher(config)  # SPOT stage 2: the teacher's spec goes into config.json
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


# --- one optimiser step ---------------------------------------------------------------------------


def optimizer_step(session: TrainingSession, run: RunState) -> StepResult:
    """Optimiser step ``run.step + 1``: accumulate the micro-batches' gradients, check the loss, update."""
    config, accumulate = session.config, session.config.loop.accumulate
    learning_rate = learning_rate_at(run.step, config.optim, config.schedule, config.loop.steps)
    for group in session.optimizer.param_groups:
        group["lr"] = learning_rate
    session.optimizer.zero_grad(set_to_none=True)
    loss_sum, output = accumulate_gradients(session)
    session.scaler.unscale_(session.optimizer)
    clip_gradients(session.parameters, config.optim)
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


def learning_rate_at(step: int, optim: OptimSpec, schedule: ScheduleSpec, total_steps: int) -> float:
    """The learning rate of the step after ``step``: warm-up, then cosine over all ``total_steps``."""
    return warmup_cosine(
        step,
        peak=optim.learning_rate,
        total_steps=total_steps,
        warmup_steps=int(total_steps * schedule.warmup_fraction),
        final=schedule.final_learning_rate,
    )


def clip_gradients(parameters: list[torch.nn.Parameter], optim: OptimSpec) -> None:
    if optim.clip_norm is None:
        return
    norm_type = 2.0 if optim.clip_norm_type == "l2" else math.inf
    torch.nn.utils.clip_grad_norm_(parameters, optim.clip_norm, norm_type=norm_type)


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
    pictures = config.evaluation.pictures if session.log.wants_images else 0
    settings = session.evaluation.for_validation(config.loop.val_batches, pictures)
    outcome = evaluation.validate(session.pipeline, session.val_set, settings)
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
        extra={
            "run": session.config.name,
            "run_id": session.run_id,
            "model_config": model_record(session.config.model),
        },
        point_latest=point_latest,
    )
    if not name:
        checkpoints.prune_checkpoints(session.checkpoint_dir, session.config.loop.keep_checkpoints)
    return sidecar


def agreed_stop_signal(local_signal: int | None) -> int:
    """Non-zero when any process received an ending signal, so every rank stops after the same step."""
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
        f"stopped by {signal_name(signal_number)} at step {run.step}; checkpoint saved in {session.checkpoint_dir}; "
        f"continue with the same command plus --resume, or with --resume {session.config.run_dir}",
        signal_number=signal_number,
    )


# --- finish ---------------------------------------------------------------------------------------


def finish(session: TrainingSession, run: RunState, evaluation: Evaluation) -> TrainResult:
    """The final evaluation (with its report and pictures) once the last step is done; close the logs."""
    config, context = session.config, session.context
    if config.evaluate_at_end and run.step >= config.loop.steps:
        split = config.evaluation.split
        try:
            metrics = evaluation.report(
                session.pipeline,
                config.data.build(split, False),
                session.evaluation,
                output_dir=config.run_dir / "eval",
                title=f"{config.name} step {run.step} ({split})",
                provenance=Provenance(checkpoint="last", split=split, step=run.step),
            )
        except (Stopped, KeyboardInterrupt) as stopped:
            number = stopped.signal_number if isinstance(stopped, Stopped) else signal.SIGINT
            session.log.close()
            raise TrainingInterrupted(
                f"stopped by {signal_name(number)} during the final evaluation; every step is done and "
                f"saved in {session.checkpoint_dir}; run the final evaluation with the same command plus "
                f"--resume, or with --resume {config.run_dir}",
                signal_number=number,
            ) from None
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
