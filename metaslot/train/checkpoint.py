"""Checkpoints without pickle: tensors in safetensors, everything else in a JSON sidecar.

Layout inside ``runs/<name>/checkpoints/``::

    step-0000100.safetensors        model state (loadable alone, e.g. by `cli.eval`)
    step-0000100.train.safetensors  optimiser tensors, RNG states, scaler scale
    step-0000100.json               step, data position, optimiser hyper-parameters, sizes + SHA-256 of both files
    latest.json                     {"checkpoint": "step-0000100"}
    best.safetensors / best.json    model state of the best validation score

All files of a checkpoint are first written to temporary names (`metaslot.runtime.files`), then moved
into place with ``os.replace``: the tensors, the sidecar, and ``latest.json`` last, so ``latest`` never
points at a half-written checkpoint. A failed write (disk full, read-only folder) removes the temporary
files and raises a one-line `WriteError`. A checkpoint whose weights or optimiser state hold a NaN or an
infinity is never written (`NonFiniteLossError`). The sidecar records the run's identity (``run_id``,
from ``config.json``), so a run refuses another run's checkpoint. Loading checks sizes and hashes
before parsing, so truncation is reported in one line.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy
import safetensors
import safetensors.torch
import torch

from metaslot.errors import CheckpointError, NonFiniteLossError
from metaslot.runtime import files
from metaslot.train import finite

FORMAT_VERSION = 1
_STEP_PATTERN = re.compile(r"^step-(\d{7,})\.json$")
_NAME_PATTERN = re.compile(r"^step-\d{7,}$")


@attrs.frozen
class LoopState:
    """Where the loop stands: optimiser steps taken and the best validation score so far."""

    step: int = 0
    best_value: float | None = None
    best_step: int | None = None


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}"


def _tensor_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    # Copies to CPU also break shared storage (tied weights), which safetensors refuses.
    cpu = {key: value.detach().to("cpu", copy=True).contiguous() for key, value in tensors.items()}
    return safetensors.torch.save(cpu, metadata=metadata)


def _json_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()


def _atomic_write_json(path: Path, document: dict[str, Any]) -> None:
    files.atomic_write_bytes(path, _json_bytes(document))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _payload_record(path: Path, payload: bytes) -> dict[str, Any]:
    """What the sidecar records about a file it refers to (checked again when loading)."""
    return {"file": path.name, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}


def _verify(directory: Path, record: dict[str, Any], sidecar: Path) -> Path:
    path = directory / record["file"]
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {sidecar} refers to {path}, which is missing; the checkpoint is incomplete"
        )
    size = path.stat().st_size
    if size != record["bytes"]:
        raise CheckpointError(
            f"checkpoint file {path} is truncated or altered ({size} bytes, expected {record['bytes']}); "
            "resume from an older checkpoint (edit latest.json) or start again"
        )
    if _sha256(path) != record["sha256"]:
        raise CheckpointError(
            f"checkpoint file {path} is corrupt (SHA-256 mismatch); resume from an older checkpoint"
        )
    return path


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file on the CPU; a damaged file is a `CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"checkpoint file {path} is not a readable safetensors file ({first_line})"
        ) from error


def module_generators(module: torch.nn.Module) -> Iterator[tuple[str, torch.Generator]]:
    """Explicit `torch.Generator`s held by submodules (e.g. an aggregator's noise stream), by dotted name."""
    for module_name, submodule in module.named_modules():
        for attribute, value in vars(submodule).items():
            if isinstance(value, torch.Generator):
                yield (f"{module_name}.{attribute}" if module_name else attribute), value


def _rng_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = state
    numpy_state = numpy.random.get_state()
    tensors["rng.numpy.keys"] = torch.from_numpy(numpy_state[1].astype(numpy.int64))
    for name, generator in module_generators(model):
        tensors[f"rng.module.{name}"] = generator.get_state()
    return tensors


def _rng_json() -> dict[str, Any]:
    numpy_state = numpy.random.get_state()
    python_state = random.getstate()
    return {
        "numpy": {
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "gauss": float(numpy_state[4]),
        },
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }


def _restore_rng(tensors: dict[str, torch.Tensor], document: dict[str, Any], model: torch.nn.Module) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[key] for key in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    numpy_json = document["numpy"]
    numpy.random.set_state(
        (
            "MT19937",
            tensors["rng.numpy.keys"].numpy().astype(numpy.uint32),
            numpy_json["position"],
            numpy_json["has_gauss"],
            numpy_json["gauss"],
        )
    )
    version, internal, gauss = document["python"]
    random.setstate((version, tuple(internal), gauss))
    for name, generator in module_generators(model):
        key = f"rng.module.{name}"
        if key in tensors:
            generator.set_state(tensors[key])


def _split_optimizer_state(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, parameter_state in state["state"].items():
        for key, value in parameter_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], document: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in document["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": document["param_groups"]}


def load_model_state(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Strict load with a one-line explanation of missing, unexpected or mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    mismatched = sorted(key for key in set(own) & set(tensors) if own[key].shape != tensors[key].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            key = mismatched[0]
            parts.append(
                f"{len(mismatched)} with other shapes (e.g. {key}: {tuple(tensors[key].shape)} vs {tuple(own[key].shape)})"
            )
        raise CheckpointError(
            f"checkpoint {source} does not fit this model: {', '.join(parts)} keys; "
            "was it written for another --model/--data or other widths?"
        )
    require_sound_tensors(own, tensors, source)
    model.load_state_dict(tensors, strict=True)


def require_sound_tensors(
    own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor], source: Path
) -> None:
    """Refuse weights of another kind than the model's (integers where floats belong, or the other way)
    and NaN/inf values: `load_state_dict` would cast the one and keep the other without a word."""
    for key, tensor in tensors.items():
        if tensor.is_floating_point() != own[key].is_floating_point():
            raise CheckpointError(
                f"{source} holds {key} as {tensor.dtype}, but the model keeps it as {own[key].dtype}; the "
                "file was edited or written for another model: use the file as it was saved"
            )
    floating = [tensor for tensor in tensors.values() if tensor.is_floating_point() and tensor.numel()]
    if not floating:
        return
    finite = torch.stack([torch.isfinite(tensor).all() for tensor in floating])
    if bool(finite.all()):
        return
    bad = next(
        key
        for key, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    )
    raise CheckpointError(
        f"{source} holds NaN or infinite values (e.g. in {bad}); the weights are damaged: use another "
        "checkpoint or save the model again"
    )


def save_checkpoint(
    directory: Path,
    name: str,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler | None,
    state: LoopState,
    data_position: dict[str, int],
    extra: dict[str, Any] | None = None,
    point_latest: bool = True,
) -> Path:
    """Write one checkpoint atomically and (optionally) move ``latest.json`` to it; returns the sidecar path.

    Refuses (`NonFiniteLossError`) when the weights or the optimiser state hold a NaN or an infinity.
    """
    require_finite_state(model, optimizer, name)
    files.refuse_link(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payloads = checkpoint_payloads(directory, name, model, optimizer, scaler, state, data_position, extra)
    staged: list[tuple[Path, Path]] = []
    try:
        for path, payload in payloads.items():
            staged.append((files.stage_bytes(path, payload), path))
        for temporary, path in staged:  # tensors first, the sidecar that vouches for them last
            files.commit(temporary, path)
    finally:
        for temporary, _ in staged:
            files.discard(temporary)
    sidecar = directory / f"{name}.json"
    if point_latest:
        _atomic_write_json(directory / "latest.json", {"checkpoint": name})
    return sidecar


def require_finite_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, name: str) -> None:
    """Stop before a checkpoint with NaN/inf weights or optimiser state is written (one host read)."""
    tensors = finite.training_state(model.parameters(), model, optimizer)
    device = tensors[0].device if tensors else torch.device("cpu")
    if not float(finite.nonfinite_count(tensors, device)):
        return
    names = finite.nonfinite_names(model, optimizer)
    raise NonFiniteLossError(
        f"not writing checkpoint {name}: {finite.describe(names)} hold NaN or infinite values; the "
        "previous checkpoints are left as they were; lower --optim.learning-rate, keep --optim.clip-norm "
        "on, or use --precision bf16/fp32"
    )


def checkpoint_payloads(
    directory: Path,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: torch.amp.GradScaler | None,
    state: LoopState,
    data_position: dict[str, int],
    extra: dict[str, Any] | None,
) -> dict[Path, bytes]:
    """The checkpoint's files and their contents, the sidecar (which records the others' hashes) last."""
    model_path = directory / f"{name}.safetensors"
    payloads = {
        model_path: _tensor_bytes(
            model.state_dict(), metadata={"format": "metaslot", "step": str(state.step)}
        )
    }
    document: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "state": attrs.asdict(state),
        "data_position": data_position,
        "model": _payload_record(model_path, payloads[model_path]),
        **(extra or {}),
    }
    if optimizer is not None:
        train_path = directory / f"{name}.train.safetensors"
        optimizer_tensors, optimizer_json = _split_optimizer_state(optimizer)
        payloads[train_path] = _tensor_bytes({**optimizer_tensors, **_rng_tensors(model)})
        document["train"] = _payload_record(train_path, payloads[train_path])
        document["optimizer"] = optimizer_json
        document["rng"] = _rng_json()
        document["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
    payloads[directory / f"{name}.json"] = _json_bytes(document)
    return payloads


def read_sidecar(sidecar: Path) -> dict[str, Any]:
    if not sidecar.is_file():
        raise CheckpointError(f"checkpoint {sidecar} does not exist")
    try:
        document = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise CheckpointError(f"checkpoint {sidecar} is not valid JSON ({error}); it is damaged") from error
    if (
        not isinstance(document, dict)
        or document.get("format_version") != FORMAT_VERSION
        or "model" not in document
    ):
        raise CheckpointError(
            f"{sidecar} is not a metaslot checkpoint (format_version {FORMAT_VERSION} expected)"
        )
    _check_fields(document, sidecar)
    return document


def _check_fields(document: dict[str, Any], sidecar: Path) -> None:
    """The sidecar's file records and loop state have the types the loader reads, or a CheckpointError."""
    records = [document["model"]] + ([document["train"]] if "train" in document else [])
    for record in records:
        fine = isinstance(record, dict) and isinstance(record.get("file"), str)
        fine = fine and type(record.get("bytes")) is int and isinstance(record.get("sha256"), str)
        if not fine or "/" in record["file"] or record["file"] in ("", ".", ".."):
            raise CheckpointError(
                f"checkpoint {sidecar} is malformed (a file record is not {{file, bytes, sha256}} naming a "
                "file of its folder); it was edited or damaged: resume from another checkpoint"
            )
    state = document.get("state", {})
    fine = isinstance(state, dict) and type(state.get("step", 0)) is int
    fine = fine and all(
        state.get(key) is None or isinstance(state.get(key), (int, float))
        for key in ("best_value", "best_step")
    )
    if not fine or not set(state) <= {field.name for field in attrs.fields(LoopState)}:
        raise CheckpointError(
            f"checkpoint {sidecar} is malformed (its loop state is not {{step, best_value, best_step}} "
            "numbers); it was edited or damaged: resume from another checkpoint"
        )


def latest_checkpoint(directory: Path) -> Path | None:
    """The sidecar ``latest.json`` points at, or None when the run has no checkpoint yet.

    ``latest.json`` names a checkpoint of its own folder (``step-0000100``); anything else, such as a
    path into another run, is refused.
    """
    pointer = directory / "latest.json"
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{pointer} is damaged ({error}); point it at a step-*.json by hand") from error
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise CheckpointError(
            f"{pointer} names {name!r}, which is not a checkpoint of this folder (step-NNNNNNN); "
            "delete latest.json to resume from the newest valid checkpoint here"
        )
    return directory / f"{name}.json"


def step_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, sidecar) of the folder's step checkpoints, oldest first."""
    return sorted(
        (int(match.group(1)), path)
        for path in directory.glob("step-*.json")
        if (match := _STEP_PATTERN.match(path.name))
    )


def verify_checkpoint(sidecar: Path) -> dict[str, Any]:
    """The sidecar document after checking every file it refers to (sizes and SHA-256); else CheckpointError."""
    document = read_sidecar(sidecar)
    _verify(sidecar.parent, document["model"], sidecar)
    if "train" in document:
        _verify(sidecar.parent, document["train"], sidecar)
    return document


def resolve_checkpoint(path: Path, choice: Literal["last", "best"] = "last") -> tuple[Path, Path]:
    """(run folder, checkpoint sidecar) for a run folder, a checkpoints folder, a sidecar or a .safetensors file.

    A folder gives its run's last checkpoint, or with ``choice="best"`` the best one (chosen on the
    validation split, ``--loop.val-split``); a file is that checkpoint, whatever ``choice``.
    """
    path = Path(path)
    if path.is_dir():
        run_dir = path.parent if path.name == "checkpoints" else path
        checkpoints = run_dir / "checkpoints"
        candidate = checkpoints / "best.json" if choice == "best" else latest_checkpoint(checkpoints)
        if candidate is not None and candidate.is_file():
            return run_dir, candidate
        if choice == "best":
            raise CheckpointError(
                f"run folder {run_dir} has no best checkpoint (checkpoints/best.json is written at the first "
                "validation); evaluate its last one (drop --checkpoint best)"
            )
        raise CheckpointError(f"run folder {run_dir} has no checkpoint (no checkpoints/latest.json)")
    if path.suffix == ".safetensors":
        stem = path.name.removesuffix(".safetensors").removesuffix(".train")
        path = path.with_name(f"{stem}.json")
    if path.suffix != ".json" or not path.exists():
        raise CheckpointError(f"{path} is neither a run folder nor a checkpoint (step-*.json / .safetensors)")
    return path.parent.parent, path


@attrs.frozen
class ModelWeights:
    """A checkpoint's model weights, read after their size and SHA-256 were checked against the sidecar."""

    document: dict[str, Any]
    """The sidecar (``document["state"]["step"]``, the run id, ...)."""
    tensors: dict[str, torch.Tensor]
    path: Path
    """The safetensors file they came from (for messages)."""


def read_model_weights(sidecar: Path) -> ModelWeights:
    """The one way to read a checkpoint's model weights: the sidecar, then the verified file."""
    document = read_sidecar(sidecar)
    model_path = _verify(sidecar.parent, document["model"], sidecar)
    return ModelWeights(document=document, tensors=read_tensors(model_path), path=model_path)


def load_model_checkpoint(sidecar: Path, model: torch.nn.Module) -> dict[str, Any]:
    """Verify and load only the model weights of a checkpoint; returns the sidecar document."""
    weights = read_model_weights(sidecar)
    load_model_state(model, weights.tensors, weights.path)
    return weights.document


def load_training_checkpoint(
    sidecar: Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> tuple[LoopState, dict[str, Any]]:
    """Restore model, optimiser, scaler and RNG streams; returns the loop state and the sidecar."""
    document = load_model_checkpoint(sidecar, model)
    if "train" not in document:
        raise CheckpointError(f"{sidecar} holds weights only (no optimiser state); it cannot be resumed")
    train_path = _verify(sidecar.parent, document["train"], sidecar)
    tensors = read_tensors(train_path)
    try:
        optimizer.load_state_dict(_join_optimizer_state(tensors, document["optimizer"]))
    except (ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"optimiser state in {train_path} does not fit this model ({error})") from error
    if scaler is not None and document.get("scaler"):
        scaler.load_state_dict(document["scaler"])
    _restore_rng(tensors, document["rng"], model)
    return LoopState(**document["state"]), document


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` step checkpoints (never the one latest.json points at)."""
    latest = latest_checkpoint(directory)
    steps = step_checkpoints(directory)
    for _, sidecar in steps[:-keep] if keep > 0 else steps:
        if latest is not None and sidecar == latest:
            continue
        stem = sidecar.name.removesuffix(".json")
        for suffix in (".json", ".safetensors", ".train.safetensors"):
            (directory / f"{stem}{suffix}").unlink(missing_ok=True)
