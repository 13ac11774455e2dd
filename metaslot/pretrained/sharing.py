"""Share a trained model: ``save_pretrained`` writes a self-contained folder, ``push_to_hub`` uploads it.

The folder holds ``model.safetensors`` (every tensor of the pipeline, frozen backbones included),
``config.json`` (the run's config in the run-folder format, plus a ``pretrained`` block: source,
checkpoint, step, evaluation) and a model card ``README.md``. ``metaslot.load(folder)`` and
``metaslot.load("owner/name")`` give the same weights back, bit for bit.

``save_pretrained`` is a function rather than a pipeline method: the pipelines live in
``metaslot.models``, which must not import the training config it writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from metaslot.errors import ConfigError
from metaslot.pretrained.card import model_card
from metaslot.pretrained.errors import HubError, OutputFolderError
from metaslot.pretrained.loading import (
    CARD_FILE,
    CONFIG_FILE,
    PRETRAINED_FILES,
    WEIGHTS_FILE,
    CheckpointChoice,
    Origin,
    is_pretrained_folder,
    load,
    origin_of,
)
from metaslot.runtime.files import atomic_write_bytes, write_error
from metaslot.train.config import TrainConfig, config_to_json, model_record


def _shared_block(folder: Path) -> dict[str, Any] | None:
    """The ``pretrained`` block of ``folder``'s config.json when save_pretrained wrote it, else None."""
    try:
        document = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(document, dict) or "config" not in document:
        return None
    block = document.get("pretrained")
    return block if isinstance(block, dict) else None


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _check_output_folder(folder: Path, origin: Origin, replace: bool) -> None:
    """Refuse a folder whose files save_pretrained did not write; without ``replace``, also one holding
    another model (another source) or a model card edited by hand since it was written."""
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder} is a file, not a folder: choose a folder to save the model into")
    if (folder / "checkpoints").exists():
        raise OutputFolderError(f"{folder} is a run folder: save the pretrained model into another folder")
    present = [name for name in PRETRAINED_FILES if (folder / name).exists()]
    if not present:
        return
    block = _shared_block(folder)
    if block is None:
        raise OutputFolderError(
            f"{folder} already holds {', '.join(present)} not written by save_pretrained; nothing was "
            "written: choose an empty or new folder"
        )
    if replace:
        return
    if block.get("source") != origin.source:
        raise OutputFolderError(
            f"{folder} holds another model (saved from {block.get('source')}); nothing was written: "
            "choose a new folder, or replace it on purpose with --replace (replace=True)"
        )
    card = folder / CARD_FILE
    recorded = block.get("card_sha256")
    if card.is_file() and isinstance(recorded, str) and _sha256(card.read_bytes()) != recorded:
        raise OutputFolderError(
            f"{card} was edited by hand since it was saved; nothing was written: move your edits aside, "
            "or replace it on purpose with --replace (replace=True)"
        )


def _pipeline_and_origin(
    pipeline_or_run: torch.nn.Module | str | os.PathLike,
    checkpoint: CheckpointChoice,
    config: TrainConfig | None,
) -> tuple[torch.nn.Module, Origin]:
    if isinstance(pipeline_or_run, torch.nn.Module):
        pipeline = pipeline_or_run
    else:
        pipeline = load(pipeline_or_run, checkpoint=checkpoint)
    origin = origin_of(pipeline)
    if config is not None:
        origin = Origin(config=config, source="a pipeline in memory")
    if origin is None:
        raise ConfigError(
            "this pipeline was not loaded with metaslot.load, so its training config is unknown: pass "
            "config= (the run's TrainConfig) or save the run folder instead"
        )
    return pipeline, origin


def save_pretrained(
    pipeline_or_run: torch.nn.Module | str | os.PathLike,
    folder: str | os.PathLike,
    *,
    checkpoint: CheckpointChoice = "last",
    config: TrainConfig | None = None,
    name_for_loading: str | None = None,
    replace: bool = False,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` into ``folder``; returns it.

    ``pipeline_or_run``: a pipeline from ``metaslot.load`` (its current weights are saved), or anything
    ``load`` accepts (a run folder: its ``checkpoint``, last by default). A pipeline built by hand needs
    its ``config``. Files in ``folder`` that save_pretrained did not write are never overwritten.
    ``name_for_loading`` is what the card's example loads (default: the folder). A folder holding another
    model, or a model card edited since it was written, is refused unless ``replace``.
    """
    pipeline, origin = _pipeline_and_origin(pipeline_or_run, checkpoint, config)
    folder = Path(folder)
    _check_output_folder(folder, origin, replace)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(folder, error) from error
    # Copies on the CPU also untie shared storage, which safetensors refuses.
    tensors = {
        name: value.detach().to("cpu", copy=True).contiguous()
        for name, value in pipeline.state_dict().items()
    }
    metadata = {"format": "metaslot", "step": str(origin.step if origin.step is not None else "")}
    atomic_write_bytes(folder / WEIGHTS_FILE, safetensors.torch.save(tensors, metadata=metadata))
    card = model_card(origin, name_for_loading or str(folder)).encode()
    block = {
        "source": origin.source,
        "checkpoint": origin.checkpoint,
        "step": origin.step,
        "evaluation": origin.evaluation,
        "card_sha256": _sha256(card),  # a later save tells a hand-edited card from its own
        "model_config": model_record(origin.config.model),  # loading refuses a config.json edited since
    }
    if origin.reference is not None:
        block["reference"] = origin.reference
    document = config_to_json(origin.config, invocation=origin.invocation or {}, pretrained=block)
    atomic_write_bytes(folder / CONFIG_FILE, document.encode())
    atomic_write_bytes(folder / CARD_FILE, card)
    return folder


def _upload(folder: Path, repo_id: str, private: bool | None, token: str | None, message: str) -> str:
    import huggingface_hub
    from huggingface_hub import errors

    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            allow_patterns=list(PRETRAINED_FILES),
            commit_message=message,
        )
    except errors.OfflineModeIsEnabled as error:
        raise HubError(
            f"cannot upload to {repo_id} while HF_HUB_OFFLINE is set: unset it (and log in with "
            "`hf auth login`) to push"
        ) from error
    except errors.HFValidationError as error:
        raise HubError(f"{repo_id!r} is not a valid Hugging Face repo id (owner/name): {error}") from error
    except (errors.HfHubHTTPError, OSError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HubError(
            f"could not upload to the Hugging Face repo {repo_id}: {first_line} (log in with "
            "`hf auth login` or pass token=)"
        ) from error
    return str(commit.commit_url)


def push_to_hub(
    folder_or_pipeline: torch.nn.Module | str | os.PathLike,
    repo_id: str,
    *,
    checkpoint: CheckpointChoice = "last",
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload metaslot model",
) -> str:
    """Upload a ``save_pretrained`` folder to the hub repo ``repo_id`` (created if needed); returns the
    commit URL. A folder goes up as it is (its card loads what ``name_for_loading`` said when it was
    saved); a pipeline or a run folder is saved into a temporary folder first, its card loading
    ``repo_id``."""
    if not isinstance(folder_or_pipeline, torch.nn.Module) and is_pretrained_folder(Path(folder_or_pipeline)):
        return _upload(Path(folder_or_pipeline), repo_id, private, token, commit_message)
    with tempfile.TemporaryDirectory(prefix="metaslot-push-") as temporary:
        folder = save_pretrained(
            folder_or_pipeline, Path(temporary) / "model", checkpoint=checkpoint, name_for_loading=repo_id
        )
        return _upload(folder, repo_id, private, token, commit_message)
