"""``metaslot.load``: a trained pipeline in evaluation mode from a run, a checkpoint, a folder or the hub.

Sources, in the order they are recognised:

- a folder written by ``save_pretrained`` (``model.safetensors`` + ``config.json``, no ``checkpoints/``);
- a run folder (or its ``checkpoints/`` folder): its last checkpoint, or its best with ``checkpoint="best"``;
- a checkpoint file (``step-*.json`` sidecar or its ``.safetensors``), verified against the sidecar's
  sizes and SHA-256, with the run's ``config.json`` two folders up;
- a reference ``.pth`` file (the MetaSlot authors' code and its parent framework's releases) with the
  preset it was trained as: ``load(FILE, model="dinosaur", data="coco", aggregator="metaslot")``
  (``reference.py``);
- ``ftdinosaur:NAME`` (downloaded through the Hugging Face cache), or a local FT-DINOSAUR file: by its
  published name, or any name with ``model="ftdinosaur-<size>-<resolution>"``; mapped onto that preset
  (``ftdinosaur.py``);
- otherwise, a Hugging Face Hub repo id (``owner/name``), through ``huggingface_hub.snapshot_download``
  (with ``HF_HUB_OFFLINE=1`` it reads the local cache only).

The pipeline is built without downloads and every weight, frozen backbones included, comes from the
checkpoint (``building.py``), so a model loads on any machine that has the files.
"""

from __future__ import annotations

import json
import os
import re
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from metaslot.errors import CheckpointError, ConfigError
from metaslot.pretrained import ftdinosaur
from metaslot.pretrained.building import build_for_weights, load_weights
from metaslot.pretrained.errors import HubError, ModelNotFoundError
from metaslot.train import checkpoint as checkpoints
from metaslot.train.config import TrainConfig, read_config_file, require_same_model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
PRETRAINED_FILES = (WEIGHTS_FILE, CONFIG_FILE, CARD_FILE)
"""What ``save_pretrained`` writes and a hub repo of a metaslot model holds."""

CheckpointChoice = Literal["last", "best"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@attrs.frozen
class Origin:
    """Where a loaded pipeline came from: what ``save_pretrained`` writes into its config and card."""

    config: TrainConfig
    source: str
    checkpoint: str | None = None
    """Checkpoint name (``step-0002000``, ``best``), when known."""
    step: int | None = None
    """Optimiser steps the weights were trained for, when known."""
    evaluation: dict[str, Any] | None = None
    """The ``evaluation.json`` of exactly these weights, when the run has one."""
    invocation: dict[str, Any] | None = None
    """The training command's selectors and overrides (from the run's ``config.json``)."""
    reference: dict[str, Any] | None = None
    """For weights converted from a reference file: that file's name, format, size and SHA-256, the
    stage-1 file's, and the catalog's reported numbers and protocol (``reference.load_reference``)."""


_ORIGINS: weakref.WeakKeyDictionary[torch.nn.Module, Origin] = weakref.WeakKeyDictionary()


def record_origin(
    pipeline: torch.nn.Module, config: TrainConfig, *, source: str, checkpoint: str | None = None
) -> None:
    """Remember where a pipeline loaded from another format came from (``origin_of``, ``save_pretrained``)."""
    _ORIGINS[pipeline] = Origin(config=config, source=source, checkpoint=checkpoint)


def origin_of(pipeline: torch.nn.Module) -> Origin | None:
    """The :class:`Origin` of a pipeline returned by ``load`` (None for one built by hand)."""
    return _ORIGINS.get(pipeline)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{what} {path} is not readable JSON ({error}); the files are damaged"
        ) from error
    except RecursionError:
        raise CheckpointError(
            f"{what} {path} is nested too deeply to be a metaslot file; it is damaged or not ours"
        ) from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{what} {path} does not hold a JSON object; is it a metaslot file?")
    return document


def read_run_config(run_dir: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's TrainConfig and the whole ``config.json`` document (invocation, pretrained block)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{run_dir} has no {CONFIG_FILE}, so the model cannot be rebuilt: pass a run folder written by "
            "`python -m cli.train` (or a checkpoint inside its checkpoints/ folder)"
        )
    document = _read_json(path, "config")
    return read_config_file(path), document


def is_pretrained_folder(path: Path) -> bool:
    """A folder written by ``save_pretrained`` (weights + config, and no run's ``checkpoints/``)."""
    return (
        path.is_dir()
        and (path / WEIGHTS_FILE).is_file()
        and (path / CONFIG_FILE).is_file()
        and not (path / "checkpoints").is_dir()
    )


def _run_checkpoint(run_dir: Path, checkpoint: CheckpointChoice) -> Path:
    folder = run_dir / "checkpoints"
    if checkpoint == "best":
        best = folder / "best.json"
        if not best.is_file():
            raise CheckpointError(
                f"run {run_dir} has no best checkpoint ({best} is written at the first validation): "
                "load its last one (checkpoint='last')"
            )
        return best
    latest = checkpoints.latest_checkpoint(folder)
    if latest is None or not latest.is_file():
        raise CheckpointError(
            f"run {run_dir} has no checkpoint yet (no {folder / 'latest.json'}): train it first, or pass "
            "a checkpoint file"
        )
    return latest


def _same_weights_as_latest(run_dir: Path, sidecar: Path, step: int | None) -> bool:
    """Whether ``sidecar`` holds the run's final weights (it is the latest, or saved at the same step)."""
    latest = checkpoints.latest_checkpoint(run_dir / "checkpoints")
    if latest is None or not latest.is_file():
        return False
    if latest == sidecar:
        return True
    try:
        return step is not None and checkpoints.read_sidecar(latest)["state"].get("step") == step
    except CheckpointError:
        return False


def _evaluation_of(run_dir: Path, sidecar: Path, split: str, step: int | None) -> dict[str, Any] | None:
    """The evaluation.json written for exactly these weights: by `cli.eval` for this checkpoint, or the
    end-of-run evaluation (of the final weights) when they are the run's last ones."""
    name = sidecar.name.removesuffix(".json")
    candidates = [run_dir / f"eval-{name}-{split}" / "evaluation.json"]
    if _same_weights_as_latest(run_dir, sidecar, step):
        candidates.append(run_dir / "eval" / "evaluation.json")
    for candidate in candidates:
        if candidate.is_file():
            try:
                return _read_json(candidate, "evaluation")
            except CheckpointError:
                return None  # a damaged report only costs the model card its table
    return None


def load_checkpoint(
    config: TrainConfig, sidecar: Path, device: torch.device | str = "cpu"
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The pipeline of ``config`` with the weights of checkpoint ``sidecar`` (verified), in eval mode,
    built without downloads; returns it with the sidecar document (``document["state"]["step"]``)."""
    pipeline = build_for_weights(config.model)
    weights = checkpoints.read_model_weights(sidecar)
    load_weights(pipeline, weights.tensors, weights.path)  # weights of another model: named by key first
    config_path = sidecar.parent.parent / CONFIG_FILE
    require_same_model(weights.document.get("model_config"), config.model, config_path, sidecar)
    return pipeline.to(device).eval(), weights.document


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def load_moving_checkpoint(
    config: TrainConfig, pick: Callable[[], Path], device: torch.device | str = "cpu", tries: int = 3
) -> tuple[torch.nn.Module, dict[str, Any], Path]:
    """`load_checkpoint` of the sidecar ``pick()`` names, picked again when a training running meanwhile
    pruned or replaced it while it was read (its last or best checkpoint moves on); returns the
    sidecar actually loaded too. A checkpoint that is damaged and stays put is a `CheckpointError`."""
    for attempt in range(tries):
        sidecar = pick()
        before = _stamp(sidecar)
        try:
            pipeline, document = load_checkpoint(config, sidecar, device)
            return pipeline, document, sidecar
        except CheckpointError:
            moved = _stamp(sidecar) != before or pick() != sidecar
            if not moved or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _load_run_checkpoint(
    run_dir: Path, sidecar: Path, device: torch.device, pick: Callable[[], Path] | None = None
) -> torch.nn.Module:
    config, document = read_run_config(run_dir)
    pipeline, state, sidecar = load_moving_checkpoint(config, pick or (lambda: sidecar), device)
    step = state["state"].get("step")
    _ORIGINS[pipeline] = Origin(
        config=config,
        source=str(sidecar),
        checkpoint=sidecar.name.removesuffix(".json"),
        step=step,
        evaluation=_evaluation_of(run_dir, sidecar, config.evaluation.split, step),
        invocation=document.get("invocation"),
    )
    return pipeline


def load_pretrained_folder(folder: Path, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The pipeline saved in ``folder`` by ``save_pretrained`` (or downloaded from the hub), in eval mode."""
    config, document = read_run_config(folder)
    block = document.get("pretrained") or {}
    weights = folder / WEIGHTS_FILE
    pipeline = build_for_weights(config.model)
    load_weights(pipeline, checkpoints.read_tensors(weights), weights)
    if isinstance(block, dict):
        require_same_model(block.get("model_config"), config.model, folder / CONFIG_FILE, weights)
    _ORIGINS[pipeline] = Origin(
        config=config,
        source=str(block.get("source") or folder),
        checkpoint=block.get("checkpoint"),
        step=block.get("step"),
        evaluation=block.get("evaluation"),
        invocation=document.get("invocation"),
        reference=block.get("reference"),
    )
    return pipeline.to(device).eval()


def _download(repo_id: str, revision: str | None, cache_dir: Path | None) -> Path:
    """The hub repo's files in the local cache (downloaded unless HF_HUB_OFFLINE=1), or a HubError."""
    import huggingface_hub
    from huggingface_hub import errors

    from metaslot.typechecking import __version__

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=list(PRETRAINED_FILES),
            library_name="metaslot",
            library_version=__version__,
        )
    except errors.HFValidationError as error:
        raise ModelNotFoundError(
            f"{repo_id!r} is no local path and not a valid Hugging Face repo id ({error})"
        ) from error
    except errors.LocalEntryNotFoundError as error:
        raise HubError(
            f"{repo_id!r} is no local path, and the Hugging Face repo {repo_id} is not in the local cache "
            f"while the hub cannot be reached (HF_HUB_OFFLINE=1 or no network): check the path, or fetch "
            f"the repo once online (`hf download {repo_id}`)"
        ) from error
    except errors.RepositoryNotFoundError as error:
        raise HubError(
            f"{repo_id!r} is no local path and no Hugging Face repo {repo_id} exists (a private or gated "
            "repo needs a login: `hf auth login`)"
        ) from error
    except errors.RevisionNotFoundError as error:
        raise HubError(f"the Hugging Face repo {repo_id} has no revision {revision!r}") from error
    except (errors.HfHubHTTPError, OSError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HubError(f"could not fetch the Hugging Face repo {repo_id}: {first_line}") from error
    folder = Path(folder)
    if not is_pretrained_folder(folder):
        raise HubError(
            f"the Hugging Face repo {repo_id} holds no metaslot model ({WEIGHTS_FILE} and {CONFIG_FILE} "
            "written by metaslot.save_pretrained)"
        )
    return folder


def _load_reference_file(
    path: Path,
    model: str | None,
    data: str | None,
    aggregator: str,
    vqvae: str | os.PathLike | None,
    device: torch.device,
) -> torch.nn.Module:
    from metaslot.pretrained.reference import load_reference, read_reference_file, trained_as

    if model is None or data is None:
        found = trained_as(read_reference_file(path).tensors)
        looks = f" (it looks trained as {found})" if found else ""
        raise ConfigError(
            f"{path} is a reference checkpoint{looks}: name the preset it was trained as, "
            'metaslot.load(FILE, model="dinosaur", data="coco", aggregator="metaslot")'
        )
    pipeline, config, facts = load_reference(path, model, data, aggregator, vqvae=vqvae)
    _ORIGINS[pipeline] = Origin(
        config=config,
        source=str(path),
        invocation={"selection": {**facts["preset"]}, "overrides": []},
        reference=facts,
    )
    return pipeline.to(device)


REFERENCE_SUFFIXES = (".pth", ".pt", ".ckpt")


def load(
    source: str | os.PathLike,
    device: torch.device | str | None = None,
    checkpoint: CheckpointChoice = "last",
    *,
    model: str | None = None,
    data: str | None = None,
    aggregator: str = "metaslot",
    vqvae: str | os.PathLike | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> torch.nn.Module:
    """A trained pipeline in evaluation mode, every weight from ``source`` (see the module docstring).

    ``device`` defaults to the CPU. ``checkpoint`` picks a run folder's ``"last"`` (default) or
    ``"best"`` checkpoint. ``model``, ``data`` and ``aggregator`` name the preset a reference ``.pth``
    file was trained as; ``vqvae`` is a reference SLATE/SlotDiffusion file's stage-1 VQ-VAE file (needed
    to render images). ``revision`` and ``cache_dir`` go to the hub download. Slot pipelines then
    segment images with ``pipeline.segment(images)``.
    """
    if checkpoint not in ("last", "best"):
        raise ConfigError(f"checkpoint must be 'last' or 'best', got {checkpoint!r}")
    target = torch.device(device) if device is not None else torch.device("cpu")
    text = os.fspath(source)
    if text.startswith(ftdinosaur.PREFIX):
        if model is not None or data is not None or vqvae is not None:
            raise ConfigError(f"{text} names its preset itself: drop model=, data= and vqvae=")
        if checkpoint == "best":
            raise ConfigError(
                f"checkpoint='best' picks among a run's checkpoints; {text} is one published file"
            )
        return ftdinosaur.load_ftdinosaur(text, target, revision=revision, cache_dir=cache_dir)
    path = Path(text).expanduser()
    if path.is_file():
        published = ftdinosaur.file_for(path, model)
        if published is not None:
            if data not in (None, "coco"):
                raise ConfigError(f"FT-DINOSAUR was published for coco only, got data={data!r}: drop data=")
            return ftdinosaur.load_file(path, published, target)
    names_a_preset = model is not None or data is not None or vqvae is not None
    if names_a_preset and path.is_dir():
        raise ConfigError(
            f"model=, data=, aggregator= and vqvae= name the preset of a reference .pth file; {text} is a "
            "folder: drop them (a run folder or save_pretrained folder knows its own config)"
        )
    if names_a_preset or (path.is_file() and path.suffix in REFERENCE_SUFFIXES):
        # A missing file is reported by the reader, naming where the published files are listed.
        return _load_reference_file(path, model, data, aggregator, vqvae, target)
    if path.exists():
        if checkpoint == "best" and not (path.is_dir() and not is_pretrained_folder(path)):
            raise ConfigError(
                f"checkpoint='best' picks among a run folder's checkpoints, but {path} is a single model: "
                "drop checkpoint='best' or pass the run folder"
            )
        if is_pretrained_folder(path):
            return load_pretrained_folder(path, target)
        if path.is_file() and path.name == WEIGHTS_FILE and is_pretrained_folder(path.parent):
            return load_pretrained_folder(path.parent, target)
        if path.is_dir():
            run_dir = path.parent if path.name == "checkpoints" else path
            if not (run_dir / CONFIG_FILE).is_file() and not (run_dir / "checkpoints").is_dir():
                raise ModelNotFoundError(
                    f"{path} is neither a run folder (config.json, checkpoints/) nor a folder written by "
                    f"save_pretrained ({WEIGHTS_FILE}, {CONFIG_FILE})"
                )
            pick = lambda: _run_checkpoint(run_dir, checkpoint)  # noqa: E731  (a training may move it on)
            return _load_run_checkpoint(run_dir, pick(), target, pick)
        run_dir, sidecar = checkpoints.resolve_checkpoint(path)
        return _load_run_checkpoint(run_dir, sidecar, target)
    if not _REPO_ID.match(text):
        raise ModelNotFoundError(
            f"{text} does not exist: pass a run folder, a checkpoint file, a folder written by "
            "save_pretrained or a Hugging Face repo id (owner/name)"
        )
    folder = _download(text, revision, Path(cache_dir) if cache_dir is not None else None)
    return load_pretrained_folder(folder, target)
