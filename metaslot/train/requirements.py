"""Everything a run needs, checked before the run folder is touched, and reported all at once.

A new user's ``python -m cli.train --model slate --data voc`` on a machine without network, data or
stage-1 model once spent 52 s in hub retries, named only the DINO weights and left a run folder
behind. `check_requirements` looks first at what can be checked here and now — the dataset's split
files, the stage-1 VQ-VAE, weight files given by path, a writable runs dir — then, only for weights
that must come from the Hugging Face hub and are not in its local cache, makes one short attempt to
reach the hub. Whatever is missing is one `MissingFileError` listing each item with the command or
flag that provides it. Specs say what they need through two protocols (`NeedsSplitFiles`,
`NeedsFiles`); the model spec tree is walked for the latter.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from metaslot.errors import ConfigError, MissingFileError
from metaslot.runtime.hub import HubFile, hub_unreachable, in_hub_cache
from metaslot.train.config import TrainConfig
from metaslot.train.memory_check import too_large


@runtime_checkable
class NeedsSplitFiles(Protocol):
    """A dataset spec whose splits are files on disk."""

    def missing_split(self, split: str) -> str | None:
        """None when ``split``'s file is there, else one sentence naming it and how to get it."""
        ...


@runtime_checkable
class NeedsFiles(Protocol):
    """A model part that reads weights: local files (checked here) or hub files (cache, then network)."""

    def missing_files(self, flag: str) -> list[str]:
        """Sentences for the local files this part needs and lacks (``flag``: its option prefix)."""
        ...

    def hub_files(self) -> list[HubFile]: ...


def check_requirements(config: TrainConfig) -> None:
    """Raise one `MissingFileError` listing everything ``config`` needs and lacks (see the module); a
    size that can only run out of memory is a `ConfigError` first (`metaslot.train.memory_check`)."""
    oversized = too_large(config)
    if oversized is not None:
        raise ConfigError(f"{oversized} (nothing was written)")
    missing = local_missing(config)
    missing += unreachable_hub_files(config)
    if missing:
        numbered = " ".join(f"({index}) {item}" for index, item in enumerate(missing, start=1))
        raise MissingFileError(
            f"this run cannot start, {len(missing)} thing{'s' if len(missing) > 1 else ''} missing "
            f"(nothing was written): {numbered}"
        )


def local_missing(config: TrainConfig) -> list[str]:
    return [
        *missing_data(config),
        *missing_stage_one(config),
        *missing_model_files(config),
        *unwritable(config),
    ]


def needed_splits(config: TrainConfig) -> list[str]:
    splits = ["train", "train" if config.loop.val_split == "train-holdout" else "val"]
    if config.evaluate_at_end:
        splits.append(config.evaluation.split)
    return list(dict.fromkeys(splits))


def missing_data(config: TrainConfig) -> list[str]:
    if not isinstance(config.data, NeedsSplitFiles):
        return []
    found = (config.data.missing_split(split) for split in needed_splits(config))
    return [message for message in found if message is not None]


def missing_stage_one(config: TrainConfig) -> list[str]:
    from metaslot.models.pipelines.stage_two import StageTwoSpec
    from metaslot.train.stages import data_selector, stage_one_command

    if not isinstance(config.model, StageTwoSpec):
        return []
    if config.vqvae is None:
        variant = config.model.stage_one_variant  # type: ignore[attr-defined]
        return [
            f"the stage-1 VQ-VAE: run `{stage_one_command(config.model, config.data)}` first, "  # type: ignore[arg-type]
            f"then add --vqvae runs/vqvae-{variant}-{data_selector(config.data)}"
        ]
    if not Path(config.vqvae).exists():
        return [f"--vqvae {config.vqvae} does not exist: pass the stage-1 run folder or a checkpoint file"]
    return []


def parts(spec: object, flag: str) -> Iterator[tuple[str, object]]:
    """(option prefix, spec) for ``spec`` and every attrs spec inside it."""
    yield flag, spec
    if attrs.has(type(spec)):
        for field in attrs.fields(type(spec)):
            value = getattr(spec, field.name)
            if attrs.has(type(value)):
                yield from parts(value, f"{flag}.{field.name.replace('_', '-')}")


def missing_model_files(config: TrainConfig) -> list[str]:
    missing = []
    for flag, part in parts(config.model, "--model"):
        if isinstance(part, NeedsFiles):
            missing += part.missing_files(flag)
    if config.teacher is not None and not Path(config.teacher).exists():
        missing.append(f"--teacher {config.teacher} does not exist: pass the stage-1 SPOT run folder")
    if config.init_from is not None and not Path(config.init_from).exists():
        missing.append(
            f"--init-from {config.init_from} does not exist: pass a run folder or a checkpoint file"
        )
    return missing


def unwritable(config: TrainConfig) -> list[str]:
    """The runs dir, or the nearest folder above it that exists, must be writable."""
    folder = Path(config.runs_dir).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK):
        return []
    what = "is not a folder" if folder.exists() and not folder.is_dir() else "is not writable"
    return [f"the runs dir {config.runs_dir} cannot be made ({folder} {what}): pass --runs-dir FOLDER"]


def unreachable_hub_files(config: TrainConfig) -> list[str]:
    """Hub files not in the local cache, when the hub cannot be reached (one short attempt, no retries)."""
    needed = [
        hub_file
        for _, part in parts(config.model, "--model")
        if isinstance(part, NeedsFiles)
        for hub_file in part.hub_files()
        if not in_hub_cache(hub_file)
    ]
    if not needed:
        return []
    reason = hub_unreachable()
    if reason is None:
        return []
    return [
        f"{hub_file.what} {hub_file.repo}/{hub_file.filename} ({reason}): {hub_file.fix}"
        for hub_file in needed
    ]
