"""The resolved training configuration: frozen attrs specs, one per concern, and the JSON round trip.

``TrainConfig.model`` and ``TrainConfig.data`` are annotated ``object`` on purpose: tyro narrows them
to the preset's concrete spec classes, so overrides are plain flags (``--model.aggregator.num-slots 7``)
and no union turns into a subcommand.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import json
import pathlib
import sys
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from metaslot import validators
from metaslot.errors import CheckpointError, ConfigError
from metaslot.eval_settings import EvalSpec
from metaslot.runtime.device import DeviceChoice, PrecisionChoice
from metaslot.train import spec_names


def _adam_betas(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """Adam's two decay rates, each in [0, 1) (torch raises a traceback deep in the optimiser otherwise)."""
    ok = isinstance(value, tuple) and len(value) == 2
    ok = ok and all(isinstance(beta, (int, float)) and 0.0 <= beta < 1.0 for beta in value)
    if not ok:
        raise ConfigError(
            f"--optim.betas {value!r} must be two numbers in [0, 1), such as the default 0.9 0.999"
        )


@attrs.frozen
class OptimSpec:
    """Adam as in every reference config (betas 0.9/0.999, eps 1e-8, no weight decay) plus gradient clipping."""

    learning_rate: float = attrs.field(default=2e-4, validator=validators.positive)
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), validator=_adam_betas)
    eps: float = attrs.field(default=1e-8, validator=validators.positive)
    weight_decay: float = attrs.field(default=0.0, validator=validators.non_negative)
    clip_norm: float | None = attrs.field(default=1.0, validator=validators.positive_or_none)
    """Maximum gradient norm; None disables clipping."""
    clip_norm_type: Literal["l2", "inf"] = "l2"

    def build(self, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            parameters, lr=self.learning_rate, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay
        )


@attrs.frozen
class ScheduleSpec:
    """Linear warm-up over a fraction of the run, then cosine to ``final_learning_rate`` (reference: 5 %, 0)."""

    warmup_fraction: float = attrs.field(default=0.05, validator=validators.fraction)
    final_learning_rate: float = attrs.field(default=0.0, validator=validators.non_negative)


@attrs.frozen
class LoopSpec:
    """How long to train and how often to validate, log and checkpoint (all counted in optimiser steps)."""

    steps: int = attrs.field(default=50_000, validator=validators.positive)
    batch_size: int = attrs.field(default=32, validator=validators.positive)
    """Global batch per optimiser step, split over processes and accumulation micro-steps."""
    accumulate: int = attrs.field(default=1, validator=validators.positive)
    val_every: int = attrs.field(default=1250, validator=validators.positive)
    val_batches: int | None = attrs.field(default=20, validator=validators.positive_or_none)
    """Cap on validation batches during training (None: the whole split)."""
    val_split: Literal["train-holdout", "val"] = "val"
    """Where validation runs, and so where the ``best`` checkpoint is chosen: 'train-holdout' (the
    ``val_holdout`` training samples set aside, never trained on) or the dataset's 'val' split (for
    VOC/COCO/ClevrTex the paper's test split, the one reported: a 'best' chosen there peeks at it)."""
    val_holdout: int = attrs.field(default=256, validator=validators.positive)
    """Training samples (images; clips for video) held out for validation with val_split='train-holdout'
    (the same ones for every run and seed); unused with val_split='val'."""
    checkpoint_every: int = attrs.field(default=1000, validator=validators.positive)
    keep_checkpoints: int = attrs.field(default=2, validator=validators.positive)
    best_metric: str = "fg_ari"
    best_mode: Literal["max", "min"] = "max"
    log_every: int = attrs.field(default=50, validator=validators.positive)
    seed: int = 42
    num_workers: int = attrs.field(default=4, validator=validators.non_negative)
    stop_at: int | None = attrs.field(default=None, validator=validators.positive_or_none)
    """Save a checkpoint and stop after this step (schedules still span ``steps``); for time-sliced jobs."""


def _run_name(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """A run's name is a folder inside the runs dir: never empty, ``.``, ``..``, absolute or leaving it
    (``--name ..`` once trained into the project folder, over its own ``config.json``)."""
    parts = str(value).split("/")
    if not isinstance(value, str) or value.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ConfigError(
            f"--name {value!r} is not a folder inside the runs dir: use a plain name such as "
            "'slate-voc' (or 'group/slate-voc'); to train elsewhere, set --runs-dir"
        )


@attrs.frozen
class TrainConfig:
    """Everything one run needs; saved as ``runs/<name>/config.json``."""

    name: str = attrs.field(validator=_run_name)
    model: object
    """A pipeline spec (``AutoencoderSpec``, ``SlateSpec``, ...) with ``build() -> nn.Module``."""
    data: object
    """A dataset spec with ``build(split, train) -> Dataset[Sample]``."""
    optim: OptimSpec = OptimSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    loop: LoopSpec = LoopSpec()
    evaluation: EvalSpec = EvalSpec()
    """The evaluation's choices (`metaslot.eval_settings.EvalSpec`, shared with `metaslot.eval`)."""
    runs_dir: Path = Path("runs")
    device: DeviceChoice = "auto"
    precision: PrecisionChoice = "auto"
    compile: bool = False
    """torch.compile the pipeline (shape checking is off under compile)."""
    tensorboard: bool = False
    """Also log to TensorBoard (``<run>/tensorboard``): every scalar, and the validation segmentation grid."""
    wandb: bool = False
    """Also log to Weights & Biases (scalars and the validation grid); ``WANDB_MODE=offline`` keeps the run
    under ``<run>/wandb`` for a later ``wandb sync``."""
    wandb_project: str = "metaslot"
    wandb_name: str | None = None
    """The W&B run name (default: ``--name``)."""
    progress: bool = True
    """A progress bar on a terminal, one plain line per log step otherwise (files, pipes, SLURM)."""
    resume: bool = False
    """Continue the run in ``runs/<name>`` (which must exist) exactly where its last checkpoint stopped;
    ``config.json`` stays as it was and flags that would change what the run trains are refused
    (`metaslot.train.run_folder`). On the command line: ``--resume [RUN_FOLDER]``."""
    vqvae: Path | None = None
    """Stage-1 VQ-VAE run folder or checkpoint (SLATE and SlotDiffusion only)."""
    teacher: Path | None = None
    """Stage-1 SPOT run folder or checkpoint whose decoder masks teach a SPOT stage-2 student
    (``--model spot --teacher RUN``; its weights are loaded into the frozen ``teacher``)."""
    init_from: Path | None = None
    """Start from this run folder's last checkpoint (or this checkpoint file): every weight whose name
    and shape fit is loaded, the rest start fresh, and the log lists both (`metaslot.train.init_from`).
    AdaSlot's second stage starts from a fixed-K run this way. Ignored when the run resumes."""
    evaluate_at_end: bool = True

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name


def rebuild(value: Any) -> Any:
    """Re-create an attrs tree bottom-up, so every validator and ``__attrs_post_init__`` runs again.

    The CLI parses with validators disabled (tyro would draw its own multi-line box around a
    validator's ValueError) and calls this afterwards, so a bad value surfaces as our one-line error.
    """
    if not attrs.has(type(value)):
        return value
    arguments = {
        field.alias: rebuild(getattr(value, field.name)) for field in attrs.fields(type(value)) if field.init
    }
    return type(value)(**arguments)


# --- JSON round trip -------------------------------------------------------------------------------
# Self-describing JSON: attrs instances carry "__type__" (a stable registered name, `spec_names`; a
# plug-in's class its "module:QualName"), paths, tuples and enums are tagged. The document carries
# "format": CONFIG_FORMAT. Loading builds only metaslot's own attrs specs and enums, plus classes a program allowed
# with `allow_in_config` (no eval, no pickle, no attribute walk outside metaslot): a config.json that
# named "os:environ" as an enum used to read the environment into a config field.

CONFIG_FORMAT = 2
"""Version of the ``config.json`` layout: 1 named classes by ``module:QualName`` and had no
``"format"`` key; 2 names them by `spec_names.SPEC_NAMES`. Readers take every format up to this one."""

_ALLOWED_OUTSIDE_METASLOT: dict[str, type] = {}


def allow_in_config(*classes: type) -> None:
    """Let config.json name these attrs specs or enums from outside metaslot (a plug-in's own specs)."""
    for cls in classes:
        if not (attrs.has(cls) or (isinstance(cls, type) and issubclass(cls, enum.Enum))):
            raise ConfigError(f"{cls!r} is neither an attrs class nor an Enum, so config.json cannot hold it")
        _ALLOWED_OUTSIDE_METASLOT[_qualified_name(cls)] = cls


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _saved_name(cls: type) -> str:
    """What config.json calls ``cls``: its stable registered name, else its ``module:QualName``."""
    location = _qualified_name(cls)
    return spec_names.registered_name(location) or location


def to_jsonable(value: Any) -> Any:
    """An attrs config tree as plain JSON values."""
    if attrs.has(type(value)):
        fields = {field.name: to_jsonable(getattr(value, field.name)) for field in attrs.fields(type(value))}
        return {"__type__": _saved_name(type(value)), **fields}
    if isinstance(value, pathlib.PurePath):
        return {"__path__": str(value)}
    if isinstance(value, enum.Enum):
        return {"__enum__": _saved_name(type(value)), "name": value.name}
    if isinstance(value, tuple):
        return {"__tuple__": [to_jsonable(item) for item in value]}
    if isinstance(value, list):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"cannot save config value {value!r} of type {type(value).__name__} as JSON")


def _resolve(saved: str, tag: Literal["__type__", "__enum__"]) -> type:
    """The class a saved name stands for (a registered name, or ``module:QualName``): a metaslot attrs
    spec (``__type__``) or Enum (``__enum__``)."""
    wanted = "an attrs spec class" if tag == "__type__" else "an Enum"
    if not isinstance(saved, str):
        raise CheckpointError(f"config.json has {tag} {saved!r}, expected a spec name such as 'MetaSlotSpec'")
    qualified = spec_names.location_of(saved)
    module_name, _, qualname = qualified.partition(":")
    target: Any = _ALLOWED_OUTSIDE_METASLOT.get(qualified)
    if target is None:
        if module_name != "metaslot" and not module_name.startswith("metaslot."):
            raise CheckpointError(
                f"config.json names {tag} {qualified}, which is outside metaslot; refusing to load it "
                "(a program using its own specs calls metaslot.train.config.allow_in_config first)"
            )
        try:
            target = importlib.import_module(module_name)
            for part in qualname.split("."):
                target = getattr(target, part)
                # Only classes nested in classes: never a module, function or object re-exported there.
                if not isinstance(target, type):
                    raise AttributeError(f"{part!r} is not a class")
        except (ImportError, AttributeError) as error:
            raise CheckpointError(
                f"config.json names {tag} {qualified}, which this version lacks ({error})"
            ) from error
    is_kind = attrs.has(target) if tag == "__type__" else issubclass(target, enum.Enum)
    if not is_kind or _qualified_name(target) != qualified:
        raise CheckpointError(
            f"config.json names {tag} {qualified}, which is not {wanted} defined there; refusing to load it"
        )
    return target


def from_jsonable(value: Any) -> Any:
    """Inverse of `to_jsonable`."""
    return _from_jsonable(value, "", [])


def _from_jsonable(value: Any, where: str, defaulted: list[str]) -> Any:
    """`from_jsonable`, adding to ``defaulted`` the dotted names of fields the document lacks (an older
    file completed with today's defaults)."""
    if isinstance(value, list):
        return [_from_jsonable(item, where, defaulted) for item in value]
    if not isinstance(value, dict):
        return value
    if "__path__" in value:
        return Path(value["__path__"])
    if "__tuple__" in value:
        return tuple(_from_jsonable(item, where, defaulted) for item in value["__tuple__"])
    if "__enum__" in value:
        members = _resolve(value["__enum__"], "__enum__").__members__
        if not isinstance(value.get("name"), str) or value["name"] not in members:
            raise CheckpointError(
                f"config.json names member {value.get('name')!r} of {value['__enum__']}, which has "
                f"only {sorted(members)}"
            )
        return members[value["name"]]
    if "__type__" in value:
        cls = _resolve(value["__type__"], "__type__")
        known = {field.name: field for field in attrs.fields(cls)}
        unknown = set(value) - set(known) - {"__type__"}
        if unknown:
            raise CheckpointError(
                f"config.json has fields {sorted(unknown)} that {cls.__name__} does not know"
            )
        arguments = {
            name: _from_jsonable(item, f"{where}.{name}".lstrip("."), defaulted)
            for name, item in value.items()
            if name != "__type__"
        }
        init_arguments = {name: item for name, item in arguments.items() if known[name].init}
        defaulted += [
            f"{where}.{name}".lstrip(".")
            for name, field in known.items()
            if field.init and name not in value and field.default is not attrs.NOTHING
        ]
        return cls(**init_arguments)
    return {key: _from_jsonable(item, f"{where}.{key}".lstrip("."), defaulted) for key, item in value.items()}


def config_to_json(config: TrainConfig, **extra: Any) -> str:
    return json.dumps({"format": CONFIG_FORMAT, "config": to_jsonable(config), **extra}, indent=2)


def _require_known_format(version: Any) -> None:
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= CONFIG_FORMAT:
        raise CheckpointError(
            f"config.json has format {version!r}, but this metaslot reads formats 1 to {CONFIG_FORMAT}: "
            "it was written by a newer metaslot (upgrade) or it is damaged"
        )


def config_from_json(text: str) -> TrainConfig:
    return read_config(text)[0]


def read_config(text: str) -> tuple[TrainConfig, list[str]]:
    """The config in a ``config.json`` text, and the fields it lacked that took today's defaults."""
    defaulted: list[str] = []
    try:
        document = json.loads(text)
        if isinstance(document, dict):
            _require_known_format(document.get("format", 1))
        config = _from_jsonable(document.get("config"), "", defaulted) if isinstance(document, dict) else None
    except json.JSONDecodeError as error:
        raise CheckpointError(
            f"config.json is not valid JSON ({error}); the run folder is damaged"
        ) from error
    except RecursionError:
        raise CheckpointError(
            "config.json is nested too deeply to be a metaslot config; the file is damaged or not ours"
        ) from None
    if not isinstance(config, TrainConfig):
        raise CheckpointError("config.json does not hold a TrainConfig; is this a metaslot run folder?")
    return config, defaulted


def defaulted_note(path: Path, defaulted: list[str]) -> str | None:
    """The one line that says which fields an older ``config.json`` lacked (None when it lacked none)."""
    if not defaulted:
        return None
    shown = ", ".join(defaulted[:6]) + (f" and {len(defaulted) - 6} more" if len(defaulted) > 6 else "")
    return f"note: {path} predates {shown}; today's defaults are used for them"


_NOTED: set[str] = set()


def read_config_file(path: Path) -> TrainConfig:
    """`read_config` of the file ``path``; says once per file on stderr which fields took defaults."""
    config, defaulted = read_config(Path(path).read_text())
    note = defaulted_note(path, defaulted)
    if note is not None and str(path) not in _NOTED:
        _NOTED.add(str(path))
        print(note, file=sys.stderr)
    return config


# --- the model's fingerprint -----------------------------------------------------------------------
# Weights mean something only with the model spec they were trained with. A checkpoint sidecar and
# the pretrained block of a save_pretrained config.json record the spec and its SHA-256 (canonical
# JSON); loading compares them with config.json's model, so a hand edit (num_iterations 3 -> 1) is
# refused instead of silently evaluating other code on the weights. Files without the record load.


def model_record(model: object) -> dict[str, Any]:
    """What is stored with weights about the model spec that gives them their meaning."""
    spec = to_jsonable(model)
    return {"sha256": _canonical_sha256(spec), "spec": spec}


def _canonical_sha256(jsonable: Any) -> str:
    canonical = json.dumps(jsonable, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _changed_fields(recorded: Any, current: Any, where: str = "model") -> list[str]:
    """Dotted names (with old -> new values) where two jsonable specs differ."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        if recorded.get("__type__") != current.get("__type__"):
            return [f"{where} {recorded.get('__type__')} -> {current.get('__type__')}"]
        changed = []
        for key in recorded.keys() & current.keys():
            if key != "__type__":
                changed += _changed_fields(recorded[key], current[key], f"{where}.{key}")
        return sorted(changed)
    if recorded != current:
        return [f"{where} {_shown(recorded)} -> {_shown(current)}"]
    return []


def _shown(value: Any) -> str:
    if isinstance(value, dict) and "__tuple__" in value:
        return repr(tuple(value["__tuple__"]))
    return json.dumps(value) if isinstance(value, (dict, list)) else repr(value)


def require_same_model(record: Any, model: object, config_path: Path, weights: Path) -> None:
    """Refuse ``model`` (from ``config_path``) when it is not the spec ``weights`` recorded (see above)."""
    if not isinstance(record, dict) or "sha256" not in record:
        return  # written before the record existed
    current = to_jsonable(model)
    if record["sha256"] == _canonical_sha256(current):
        return
    spec = record.get("spec")
    if spec is not None:
        try:  # the recorded spec as this version reads it (fields added since take their defaults)
            spec = to_jsonable(from_jsonable(spec))
        except (CheckpointError, ConfigError, TypeError, ValueError):
            pass
        if spec == current:
            return
    changed = _changed_fields(spec, current) if spec is not None else []
    what = f" ({', '.join(changed[:3])})" if changed else ""
    raise CheckpointError(
        f"{config_path}: the model differs from the one {weights} was trained with{what}; config.json "
        "was edited after training: restore the recorded value, or train a new run with the new setting"
    )
