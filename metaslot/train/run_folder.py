"""What a training may do with its run folder ``runs/<name>/`` before the first step; nothing is overwritten.

`claim` refuses a symbolic link among what the run writes (`RUN_ENTRIES`), locks the folder
(`metaslot.train.run_lock`; rank 0), removes temporary files a killed writer left, and then:

- a new run (no ``--resume``) is refused when the folder already holds checkpoints or metrics (add
  ``--resume``, or another ``--name``), or a ``config.json`` that no training wrote (a shared model's);
  otherwise ``config.json`` is written with a new run id;
- ``--resume`` needs the folder and its ``config.json``, which stays as it was: flags that change what
  the run trains (`MAY_CHANGE_ON_RESUME` lists the others) are refused with the list of differences.
  It resumes from the checkpoint ``checkpoints/latest.json`` names, which must carry this run's id;
  without ``latest.json``, from the newest checkpoint that is complete and this run's. A run whose last
  step and final evaluation are done is complete: resuming it does nothing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from metaslot.errors import CheckpointError, ConfigError, MissingFileError
from metaslot.runtime import files
from metaslot.train import checkpoint as checkpoints
from metaslot.train import run_lock
from metaslot.train.config import (
    TrainConfig,
    config_to_json,
    defaulted_note,
    read_config,
    require_same_model,
    to_jsonable,
)
from metaslot.train.loggers import WANDB_ID_FILE
from metaslot.train.logging import METRICS_FILE, read_rows

CONFIG_FILE = "config.json"
RUN_ENTRIES = (
    CONFIG_FILE,
    run_lock.LOCK_FILE,
    METRICS_FILE,
    WANDB_ID_FILE,
    "checkpoints",
    "eval",
    "tensorboard",
    "wandb",  # W&B's own files (`metaslot.train.loggers`: ``dir=`` the run folder)
)
"""What a training writes in its run folder: none of it may be a symbolic link (nor hold one)."""

MAY_CHANGE_ON_RESUME = frozenset(
    {
        # where the run lives (``--resume RUN_FOLDER`` follows a moved folder)
        "name",
        "runs_dir",
        "resume",
        # how it runs and reports, not what it learns
        "device",
        "precision",
        "compile",
        "progress",
        "tensorboard",
        "wandb",
        "wandb_project",
        "wandb_name",
        "evaluate_at_end",
        "loop.num_workers",
        "loop.log_every",
        "loop.stop_at",
        "loop.val_every",
        "loop.checkpoint_every",
        "loop.keep_checkpoints",
        "evaluation.batch_size",
        "evaluation.pictures",
        "evaluation.gallery_codes",
        "evaluation.gallery_examples",
        # where the same data lies on this machine
        "data.root",
    }
)
"""Config fields ``--resume`` may change; every other difference from ``config.json`` is refused."""


@attrs.frozen
class RunFolder:
    """The run folder as this invocation found it."""

    run_dir: Path
    run_id: str | None
    """Made when the run was created (``config.json``); None for runs older than run ids."""
    checkpoint: Path | None = None
    """The checkpoint sidecar to resume from (None: start at step 0)."""
    step: int = 0
    complete: bool = False
    """Every step and the final evaluation are done: nothing to train."""
    final_metrics: dict[str, float] | None = None
    notes: tuple[str, ...] = ()
    """What the trainer should tell the user (a recovered checkpoint, a stale lock taken over)."""


def claim(
    config: TrainConfig, invocation: Mapping[str, Any] | None, *, is_main: bool
) -> tuple[RunFolder, run_lock.RunLock | None]:
    """Lock (rank 0) and check the run folder; returns it with the lock to release after training."""
    if config.resume:
        require_resumable(config.run_dir)
    lock = None
    if is_main:
        try:
            config.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise files.write_error(config.run_dir, error) from error
        files.refuse_links_below(config.run_dir, RUN_ENTRIES)
        lock = run_lock.acquire(config.run_dir)
    try:
        if is_main:
            files.remove_temporaries(config.run_dir)
            files.remove_temporaries(config.run_dir / "checkpoints")
        folder = resumed_run(config) if config.resume else new_run(config, invocation, is_main=is_main)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if lock is not None and lock.previous is not None:
        note = f"took over the lock left by a training that is gone ({lock.previous.describe()})"
        folder = attrs.evolve(folder, notes=(note, *folder.notes))
    return folder, lock


# --- a new run ------------------------------------------------------------------------------------


def new_run(config: TrainConfig, invocation: Mapping[str, Any] | None, *, is_main: bool) -> RunFolder:
    """Refuse a folder that holds a run already; write ``config.json`` with a new run id (rank 0)."""
    refuse_foreign_config(config.run_dir)
    held = run_contents(config.run_dir)
    if held:
        raise ConfigError(
            f"run folder {config.run_dir} already holds {' and '.join(held)} of a run; add --resume to "
            "continue it, or pick another --name (a run is never overwritten)"
        )
    run_id = secrets.token_hex(8) if is_main else None
    if is_main:
        document = config_to_json(config, invocation=dict(invocation or {}), run_id=run_id)
        files.atomic_write_bytes(config.run_dir / CONFIG_FILE, document.encode())
    return RunFolder(run_dir=config.run_dir, run_id=run_id)


def refuse_foreign_config(run_dir: Path) -> None:
    """Refuse a folder whose ``config.json`` no training wrote (a shared model, a project's own file):
    a new run would replace it. A training's own one (from a start that never took a step) may go."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        document = None
    if isinstance(document, dict) and "config" in document and "pretrained" not in document:
        return
    raise ConfigError(
        f"{path} was not written by a training (a shared model's or another program's file), and a new "
        f"run would replace it; pick another --name or --runs-dir (nothing was written)"
    )


def run_contents(run_dir: Path) -> list[str]:
    """What in ``run_dir`` belongs to a run that has started: its checkpoints, its metrics."""
    held = []
    directory = run_dir / "checkpoints"
    if directory.is_dir() and any(path.suffix in (".json", ".safetensors") for path in directory.iterdir()):
        held.append("checkpoints")
    metrics = run_dir / METRICS_FILE
    if metrics.is_file() and metrics.stat().st_size > 0:
        held.append(METRICS_FILE)
    return held


# --- resuming -------------------------------------------------------------------------------------


def require_resumable(run_dir: Path) -> None:
    """Refuse ``--resume`` where there is no run: name the folder that was looked for."""
    if not run_dir.is_dir():
        raise MissingFileError(
            f"nothing to resume: there is no run folder {run_dir}; start the run without --resume, or "
            "name an existing one: --resume runs/NAME"
        )
    if not (run_dir / CONFIG_FILE).is_file():
        raise MissingFileError(
            f"nothing to resume: {run_dir} has no {CONFIG_FILE}, so it is not a run folder written by "
            "training; name another one: --resume runs/NAME"
        )


def resumed_run(config: TrainConfig) -> RunFolder:
    """The run as ``config.json`` and the checkpoints say; refuses flags that change its meaning."""
    path = config.run_dir / CONFIG_FILE
    text = path.read_text()
    stored, defaulted = read_config(text)
    refuse_meaning_changes(stored, config)
    run_id = stored_run_id(text)
    sidecar, notes = resume_checkpoint(config.run_dir / "checkpoints", run_id)
    document = checkpoints.read_sidecar(sidecar) if sidecar is not None else None
    if document is not None:
        require_same_model(document.get("model_config"), stored.model, path, sidecar)
    notes = (*notes, *filter(None, [defaulted_note(path, defaulted)]))
    step = int(document["state"]["step"]) if document is not None else 0
    final_metrics = completed_evaluation(config, step)
    complete = step >= config.loop.steps and (final_metrics is not None or not config.evaluate_at_end)
    return RunFolder(
        run_dir=config.run_dir,
        run_id=run_id,
        checkpoint=sidecar,
        step=step,
        complete=complete,
        final_metrics=final_metrics,
        notes=notes,
    )


def stored_run_id(config_text: str) -> str | None:
    run_id = json.loads(config_text).get("run_id")
    return run_id if isinstance(run_id, str) else None


def completed_evaluation(config: TrainConfig, step: int) -> dict[str, float] | None:
    """The metrics of the end-of-run evaluation at ``step`` or later, if ``metrics.jsonl`` has them."""
    if step < config.loop.steps:
        return None
    rows = [row for row in read_rows(config.run_dir / METRICS_FILE) if row["split"] == "eval"]
    rows = [row for row in rows if row["step"] >= step]
    if not rows:
        return None
    return {name: float(value) for name, value in rows[-1].items() if name not in ("step", "split")}


def resume_checkpoint(directory: Path, run_id: str | None) -> tuple[Path | None, tuple[str, ...]]:
    """(sidecar to resume from, notes): what ``latest.json`` names, or without it the newest valid one."""
    named = checkpoints.latest_checkpoint(directory)
    if named is not None:
        require_own(checkpoints.read_sidecar(named), run_id, named)
        return named, ()
    skipped = []
    for _, sidecar in reversed(checkpoints.step_checkpoints(directory)):
        try:
            require_own(checkpoints.verify_checkpoint(sidecar), run_id, sidecar)
        except CheckpointError as error:
            skipped.append(f"{sidecar.stem}: {error}")
            continue
        note = f"{directory / 'latest.json'} is missing; resuming from {sidecar.stem}, the newest valid checkpoint"
        return sidecar, (note + (f" (skipped {'; '.join(skipped)})" if skipped else ""),)
    if skipped:
        raise CheckpointError(
            f"{directory} has no latest.json and no usable checkpoint ({'; '.join(skipped)}); "
            "start a new run under another --name"
        )
    return None, ()


def require_own(document: Mapping[str, Any], run_id: str | None, sidecar: Path) -> None:
    """Refuse a checkpoint another run wrote (runs from before run ids are not checked)."""
    if run_id is None or document.get("run_id") == run_id:
        return
    raise CheckpointError(
        f"checkpoint {sidecar} belongs to another run (run id {document.get('run_id')}, this run's "
        f"config.json says {run_id}); point latest.json at one of this run's checkpoints, or delete it "
        "to resume from the newest of them"
    )


# --- flags that change a run's meaning --------------------------------------------------------------


def refuse_meaning_changes(stored: TrainConfig, given: TrainConfig) -> None:
    changes = meaning_changes(stored, given)
    if not changes:
        return
    shown = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
    raise ConfigError(
        f"--resume would change what run {given.run_dir} trains: {shown}. Its config.json keeps the "
        "original settings: drop these flags to continue the run as it was, or start a new run under "
        "another --name (the flags --resume may change are listed in docs/training.md)"
    )


def meaning_changes(stored: TrainConfig, given: TrainConfig) -> list[str]:
    """``--flag stored → given`` for each field outside `MAY_CHANGE_ON_RESUME` that differs."""
    before, after = flat_fields(to_jsonable(stored)), flat_fields(to_jsonable(given))
    missing = object()
    changed = [
        key
        for key in sorted(set(before) | set(after))
        if before.get(key, missing) != after.get(key, missing) and key not in MAY_CHANGE_ON_RESUME
    ]
    # A spec of another class differs in all its fields: name the class change only.
    replaced = [key.removesuffix(".__type__") for key in changed if key.endswith(".__type__")]
    changed = [key for key in changed if not any(key.startswith(f"{spec}.") for spec in replaced)]
    return [describe_change(key, before.get(key), after.get(key)) for key in changed] + [
        f"--{flag_name(spec)} {short_type(before.get(spec + '.__type__'))} → "
        f"{short_type(after.get(spec + '.__type__'))}"
        for spec in replaced
    ]


def flat_fields(value: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON config tree as ``{"loop.batch_size": 32, "model.__type__": ..., ...}`` (tagged values are leaves)."""
    is_leaf = not isinstance(value, dict) or any(
        tag in value for tag in ("__path__", "__tuple__", "__enum__")
    )
    if is_leaf:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if key == "__type__" and not prefix:
            continue  # the TrainConfig itself
        flat.update(flat_fields(item, f"{prefix}.{key}" if prefix else key))
    return flat


def describe_change(key: str, before: Any, after: Any) -> str:
    return f"--{flag_name(key)} {shown_value(before)} → {shown_value(after)}"


def flag_name(key: str) -> str:
    return key.replace("_", "-")


def shown_value(value: Any) -> str:
    if isinstance(value, dict) and "__path__" in value:
        return str(value["__path__"])
    if isinstance(value, dict) and "__tuple__" in value:
        return " ".join(str(item) for item in value["__tuple__"])
    if isinstance(value, dict) and "__enum__" in value:
        return str(value.get("name"))
    return "(none)" if value is None else str(value)


def short_type(qualified: Any) -> str:
    return str(qualified).rpartition(":")[2] if qualified else "(none)"
