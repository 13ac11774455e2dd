"""FT-DINOSAUR's published weights (Didolkar et al. 2024, arXiv 2408.09162): ``metaslot.load("ftdinosaur:NAME")``.

The four files on the Hugging Face Hub (repo ``mseitzer/ftdinosaur``) are plain state dicts of the
public loader's model (github rw-ocrl/ftdinosaur-inference): a fine-tuned DINOv2 ViT-S/14 or ViT-B/14
(``encoder.*``, timm's names, position embedding stored at 518×518), the slot initialiser
(``slot_init.*``), the feature transform and Slot Attention (``slot_attention.*``) and the top-3 MLP
decoder (``decoder.*``). They map key by key, shapes checked, onto the pipeline of the preset
``--model ftdinosaur-<size>-<resolution> --data coco --aggregator slot-attention``; the one reshape is the
decoder's position embedding ``(1, n, d)`` → ``(1, 1, n, d)``. The file holds no target encoder (the frozen
DINOv2 the model was trained to reconstruct), so the loaded pipeline has none: its ``forward`` loss compares
with its own features, while slots, masks and reconstruction are the published model's.

Read with ``torch.load(weights_only=True)`` only. Downloads go through ``huggingface_hub`` and its cache;
with ``HF_HUB_OFFLINE=1`` (or no network) a file not in the cache is a one-line `HubError` naming the file,
where to get it, and the two ways to provide it (``hf download``, or the file's path).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path

import attrs
import torch
from jaxtyping import Float, UInt8
from torch import Tensor

from metaslot.errors import CheckpointError, CheckpointMismatchError, ConfigError, DataError
from metaslot.ops.imagenet import IMAGENET_MEAN, IMAGENET_STD
from metaslot.pretrained.building import build_for_weights
from metaslot.pretrained.catalog import PresetChoice, PublishedModel, ReportedNumber
from metaslot.pretrained.errors import HubError
from metaslot.train.config import TrainConfig

PREFIX = "ftdinosaur:"
REPO_ID = "mseitzer/ftdinosaur"
AGGREGATOR = "slot-attention"
"""The published models use plain Slot Attention (the presets' ``--aggregator slot-attention``)."""


@attrs.frozen
class FTDinosaurFile:
    """One published file: its name here, the preset it maps onto, its name in the hub repo."""

    name: str
    """``small-224``, ``small-518``, ``base-224``, ``base-518`` (``ftdinosaur:<name>``)."""
    file_name: str
    """The file in ``mseitzer/ftdinosaur``; the publisher's model key is the part before ``-<hash>.pth``."""

    @property
    def model(self) -> str:
        """The preset's ``--model``."""
        return f"ftdinosaur-{self.name}"

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{REPO_ID}/resolve/main/{self.file_name}"


FILES: dict[str, FTDinosaurFile] = {
    entry.name: entry
    for entry in (
        FTDinosaurFile("small-224", "dinosaur_small_patch14_224_topk3.coco_dv2_ft_s7_300k-fbc7a7c7.pth"),
        FTDinosaurFile("small-518", "dinosaur_small_patch14_518_topk3.coco_dv2_ft_s7_300k+10k-d23af290.pth"),
        FTDinosaurFile("base-224", "dinosaur_base_patch14_224_topk3.coco_dv2_ft_s7_300k-b617dc95.pth"),
        FTDinosaurFile("base-518", "dinosaur_base_patch14_518_topk3.coco_dv2_ft_s7_300k+10k-15486674.pth"),
    )
}
"""The public loader's four checkpoints (its ``CONFIGS`` table); the hex before ``.pth`` is the publisher's
short hash, not a SHA-256 this code can check. Sizes and SHA-256: `FTDINOSAUR_MODELS`."""

_TITLES = {"small": "ViT-S/14", "base": "ViT-B/14"}
_PROTOCOL = (
    "COCO 2017 val object discovery (FG-ARI and instance mBO, in percent) with the authors' own "
    "evaluation code (OCLF; its mask resolution and crop were not checked here); mean over 3 training "
    "seeds (the project page says so); which seed the published file is, is not stated"
)


def _published(entry: FTDinosaurFile) -> PublishedModel:
    size, resolution = entry.name.split("-")
    hi_res = resolution == "518"
    reported: tuple[ReportedNumber, ...] = ()
    reported_in = (
        "the paper reports this variant in its ablations (arXiv 2408.09162); its numbers were not copied "
        "into this catalog"
    )
    if entry.name == "base-518":
        reported = (ReportedNumber("FG-ARI", 48.8), ReportedNumber("mBO", 36.3))
        reported_in = (
            "FT-DINOSAUR (arXiv 2408.09162), COCO comparison with prior work (ViT-B/14, top-k decoding, "
            "high-resolution adaptation), as quoted in issue 23"
        )
    return PublishedModel(
        name=f"ftdinosaur-{entry.name}",
        title=(
            f"FT-DINOSAUR, fine-tuned DINOv2 {_TITLES[size]} at {resolution}x{resolution}, 7 slots, top-3 "
            f"decoding{', high-resolution adaptation (300k + 10k steps)' if hi_res else ' (300k steps)'}, COCO"
        ),
        publisher="FT-DINOSAUR authors (Didolkar, Zadaianchuk et al.; rw-ocrl/ftdinosaur-inference)",
        source=f"{REPO_ID}/{entry.file_name}",
        source_verified=False,
        file_format="state-dict-pth",
        size=None,
        sha256=None,
        preset=PresetChoice(entry.model, "coco", AGGREGATOR),
        reported=reported,
        reported_in=reported_in,
        protocol=_PROTOCOL,
        load_name=f"{PREFIX}{entry.name}",
    )


FTDINOSAUR_MODELS: tuple[PublishedModel, ...] = tuple(_published(entry) for entry in FILES.values())
"""The catalog's FT-DINOSAUR entries (`metaslot.list_models`). The hub repo's listing could not be read
from where they were written (no network), so size and SHA-256 are None: the first download prints both."""


def published_model(entry: FTDinosaurFile) -> PublishedModel:
    """The catalog entry of ``entry``."""
    return next(model for model in FTDINOSAUR_MODELS if model.load_name == f"{PREFIX}{entry.name}")


def find_file(name: str) -> FTDinosaurFile:
    """The entry called ``name``; a ConfigError listing the names otherwise."""
    if name not in FILES:
        raise ConfigError(
            f"no FT-DINOSAUR model called {name!r}: choose one of "
            + ", ".join(f"{PREFIX}{known}" for known in FILES)
        )
    return FILES[name]


def file_for(path: Path, model: str | None) -> FTDinosaurFile | None:
    """The entry a local file is: named by ``model`` (``ftdinosaur-<name>``, any file name), else by the
    published file name ``path`` carries; None when neither says FT-DINOSAUR."""
    if model is not None:
        name = model.removeprefix("ftdinosaur-")
        return find_file(name) if model.startswith("ftdinosaur-") else None
    for entry in FILES.values():
        if path.name == entry.file_name:
            return entry
    return None


def preset_config(entry: FTDinosaurFile) -> TrainConfig:
    """The preset the file was trained as (``--model ftdinosaur-<name> --data coco --aggregator slot-attention``)."""
    from metaslot.train.presets import preset

    return preset(model=entry.model, data="coco", aggregator=AGGREGATOR)


def inference_spec(config: TrainConfig) -> object:
    """The preset's model without its target encoder (the file has none; only the training loss reads it)."""
    return attrs.evolve(config.model, target_encoder=None)


# --- reading and mapping ----------------------------------------------------------------------------


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` state dict (or of a dict holding one under ``"state_dict"``), read with
    ``weights_only=True`` on the CPU; anything that needs more than tensors is refused unread."""
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).splitlines()[0] if str(error) else "not a plain tensor file"
        raise CheckpointError(
            f"{path} is refused: it needs more than tensors to unpickle ({first_line}); a published "
            "FT-DINOSAUR file is a plain state dict, so this is another or a tampered file"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable .pth file ({first_line}): it is truncated or damaged; download it again"
        ) from error
    if isinstance(document, Mapping) and isinstance(document.get("state_dict"), Mapping):
        document = document["state_dict"]
    if not isinstance(document, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in document.items()
    ):
        raise CheckpointError(f"{path} holds no state dict (a mapping of names to tensors)")
    return dict(document)


_RENAMES: tuple[tuple[str, str], ...] = (
    ("encoder.", "frontend.encoder.backbone."),  # timm's own names on both sides
    ("slot_init.slots_mu", "frontend.aggregator.initializer.mean"),
    ("slot_init.slots_logsigma", "frontend.aggregator.initializer.log_std"),
    ("slot_attention.feature_transform.", "frontend.projection.mlp."),  # LayerNorm 0, Linear 1 and 3
    ("slot_attention.slot_attention.norm_input.", "frontend.aggregator.norm_features."),
    ("slot_attention.slot_attention.norm_slots.", "frontend.aggregator.norm_queries."),
    ("slot_attention.slot_attention.to_q.", "frontend.aggregator.project_queries."),
    ("slot_attention.slot_attention.to_k.", "frontend.aggregator.project_keys."),
    ("slot_attention.slot_attention.to_v.", "frontend.aggregator.project_values."),
    ("slot_attention.slot_attention.gru.", "frontend.aggregator.gru."),
    ("slot_attention.slot_attention.ff_mlp.module.0.", "frontend.aggregator.norm_mlp."),
    ("slot_attention.slot_attention.ff_mlp.module.1.", "frontend.aggregator.mlp.0."),
    ("slot_attention.slot_attention.ff_mlp.module.3.", "frontend.aggregator.mlp.2."),
    ("decoder.pos_embed", "decoder.position"),  # (1, n, d) → (1, 1, n, d)
    ("decoder.decoder.", "decoder.mlp."),  # Linear at 0, 2, 4, 6 on both sides
)
"""Their key prefix → ours, first match wins."""

UNUSED_KEYS = ("frontend.encoder.backbone.norm.weight", "frontend.encoder.backbone.norm.bias")
"""Ours only and never read: the ViT's final norm (FT-DINOSAUR takes the last block's output,
``final_norm=False``); they keep their initial values (ones, zeros)."""


def our_key(their_key: str) -> str | None:
    """Where ``their_key`` goes in the pipeline's state dict (None: it has no place there)."""
    for theirs, ours in _RENAMES:
        if their_key.startswith(theirs):
            return ours + their_key[len(theirs) :]
    return None


def _converted(their_key: str, tensor: torch.Tensor) -> torch.Tensor:
    if their_key == "decoder.pos_embed" and tensor.ndim == 3:
        return tensor[:, None]
    return tensor


def map_state_dict(
    theirs: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], source: str = "the file"
) -> dict[str, torch.Tensor]:
    """Their tensors under our names, every key and shape of ``own`` (the pipeline's state dict) checked.

    A key of theirs with no place in ours, one of ours (besides `UNUSED_KEYS`) that they lack, or a shape
    that differs is a `CheckpointMismatchError` naming the keys and, where the shapes tell, the
    FT-DINOSAUR model the file is.
    """
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    mismatched_targets: set[str] = set()
    for key, tensor in theirs.items():
        target = our_key(key)
        if target is None or target not in own:
            unexpected.append(key)
            continue
        converted = _converted(key, tensor)
        if converted.shape != own[target].shape:
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {target} {tuple(own[target].shape)}")
            mismatched_targets.add(target)
            continue
        mapped[target] = converted
    missing = sorted(
        key for key in own if key not in mapped and key not in UNUSED_KEYS and key not in mismatched_targets
    )
    if unexpected or missing or mismatched:
        raise CheckpointMismatchError(
            _mismatch_message(source, theirs, sorted(unexpected), missing, mismatched)
        )
    for key in UNUSED_KEYS:
        if key in own:
            mapped[key] = own[key]
    return mapped


def _mismatch_message(
    source: str,
    theirs: Mapping[str, torch.Tensor],
    unexpected: list[str],
    missing: list[str],
    mismatched: list[str],
) -> str:
    parts = []
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) of the file ({', '.join(unexpected[:3])})")
    if missing:
        parts.append(f"{len(missing)} key(s) the model needs missing ({', '.join(missing[:3])})")
    if mismatched:
        parts.append(f"{len(mismatched)} of another shape ({'; '.join(mismatched[:3])})")
    guess = guess_model(theirs)
    hint = (
        f"; its shapes are those of {PREFIX}{guess} (preset --model ftdinosaur-{guess} --data coco "
        f"--aggregator {AGGREGATOR})"
        if guess is not None
        else "; is it an FT-DINOSAUR file (rw-ocrl/ftdinosaur-inference layout)?"
    )
    return f"{source} does not fit the FT-DINOSAUR pipeline: " + ", ".join(parts) + hint


def guess_model(theirs: Mapping[str, torch.Tensor]) -> str | None:
    """The FT-DINOSAUR model whose shapes the file has (ViT width, decoder tokens), or None."""
    cls_token = theirs.get("encoder.cls_token")
    position = theirs.get("decoder.pos_embed")
    if cls_token is None or position is None or position.ndim < 2:
        return None
    size = {384: "small", 768: "base"}.get(int(cls_token.shape[-1]))
    resolution = {256: 224, 1369: 518}.get(int(position.shape[-2]))
    if size is None or resolution is None:
        return None
    return f"{size}-{resolution}"


def load_state_into(
    pipeline: torch.nn.Module, theirs: Mapping[str, torch.Tensor], source: str = "the file"
) -> None:
    """Load an FT-DINOSAUR state dict into ``pipeline`` (every key checked, see `map_state_dict`)."""
    mapped = map_state_dict(theirs, pipeline.state_dict(), source)
    pipeline.load_state_dict(mapped, strict=True)


# --- downloading ---------------------------------------------------------------------------------


def how_to_provide(entry: FTDinosaurFile) -> str:
    """The fix for a missing file, in one line."""
    return (
        f"download {entry.url} once online and either put it into the Hugging Face cache "
        f'(`hf download {REPO_ID} {entry.file_name}`, then metaslot.load("{PREFIX}{entry.name}") works '
        f'offline) or pass the file\'s path: metaslot.load("/path/to/{entry.file_name}"), or under any '
        f'name with model="{entry.model}"'
    )


def download(entry: FTDinosaurFile, *, revision: str | None = None, cache_dir: Path | None = None) -> Path:
    """The file in the local Hugging Face cache (fetched unless ``HF_HUB_OFFLINE=1``), or a one-line HubError."""
    import huggingface_hub
    from huggingface_hub import errors

    from metaslot.typechecking import __version__

    cached = huggingface_hub.try_to_load_from_cache(
        REPO_ID, entry.file_name, cache_dir=cache_dir, revision=revision
    )
    try:
        path = huggingface_hub.hf_hub_download(
            REPO_ID,
            entry.file_name,
            revision=revision,
            cache_dir=cache_dir,
            library_name="metaslot",
            library_version=__version__,
        )
    except errors.LocalEntryNotFoundError as error:
        raise HubError(
            f"{PREFIX}{entry.name} needs {entry.file_name}, which is not in the Hugging Face cache "
            f"while the hub cannot be reached (HF_HUB_OFFLINE=1 or no network): {how_to_provide(entry)}"
        ) from error
    except (errors.RepositoryNotFoundError, errors.EntryNotFoundError, errors.RevisionNotFoundError) as error:
        raise HubError(
            f"the Hugging Face repo {REPO_ID} (revision {revision or 'main'}) does not serve "
            f"{entry.file_name} ({type(error).__name__}): {how_to_provide(entry)}"
        ) from error
    except (errors.HfHubHTTPError, OSError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise HubError(
            f"could not fetch {entry.file_name} from {REPO_ID}: {first_line}; {how_to_provide(entry)}"
        ) from error
    path = Path(path)
    verify_or_report(published_model(entry), path, first_download=not isinstance(cached, str))
    return path


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return path.stat().st_size, digest.hexdigest()


def verify_or_report(published: PublishedModel, path: Path, *, first_download: bool) -> None:
    """Check size and SHA-256 where the catalog knows them; otherwise print them at the first download,
    so they can be filled in (`FTDINOSAUR_MODELS`)."""
    if published.size is None and published.sha256 is None:
        if first_download:
            size, sha256 = file_digest(path)
            print(
                f"{published.load_name}: downloaded {path.name}, {size} bytes, SHA-256 {sha256} (not yet in "
                "metaslot's catalog: fill them into metaslot/pretrained/ftdinosaur.py)",
                file=sys.stderr,
            )
        return
    size, sha256 = file_digest(path)
    if (published.size is not None and size != published.size) or (
        published.sha256 is not None and sha256 != published.sha256
    ):
        raise CheckpointError(
            f"{path} is {size} bytes with SHA-256 {sha256}, but the catalog lists {published.size} bytes "
            f"with SHA-256 {published.sha256}: the download is damaged or the file was replaced; delete it "
            "and download it again"
        )


# --- the publisher's input transform -------------------------------------------------------------



def publisher_preprocess(images: UInt8[Tensor, "b 3 h w"], size: int) -> Float[Tensor, "b 3 size size"]:
    """The public loader's inference transform (its ``build_preprocessing``, no centre crop): the whole
    image resized to ``size``×``size`` (aspect ratio not kept; bicubic, antialiased, on uint8 so the
    result is rounded back to uint8), scaled to [0, 1] and ImageNet-normalised. `SlotPipeline.segment`
    crops the centred square instead (metaslot's evaluation transform); feed this to the pipeline's
    forward to see exactly what the publisher's loader shows."""
    # The v2 kernel, as their loader's transforms.v2.Resize: v1's rounds uint8 differently (off by one).
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    if images.dtype != torch.uint8:
        raise DataError(f"publisher_preprocess takes uint8 images (0-255), got {images.dtype}")
    resized = tvf.resize(images, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    pixels = tvf.to_dtype(resized, torch.float32, scale=True)
    return tvf.normalize(pixels, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD))


# --- loading -------------------------------------------------------------------------------------


def load_file(path: Path, entry: FTDinosaurFile, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The pipeline of ``entry``'s preset with the weights of the file at ``path``, in evaluation mode."""
    from metaslot.pretrained.loading import record_origin

    preset = preset_config(entry)
    config = attrs.evolve(preset, model=inference_spec(preset))
    pipeline = build_for_weights(config.model)
    load_state_into(pipeline, read_state_dict(path), str(path))
    record_origin(pipeline, config, source=str(path), checkpoint=entry.file_name)
    return pipeline.to(device).eval()


def load_ftdinosaur(
    source: str,
    device: torch.device | str = "cpu",
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> torch.nn.Module:
    """``metaslot.load("ftdinosaur:NAME")``: the file from the hub (or its cache), mapped and loaded."""
    entry = find_file(source.removeprefix(PREFIX))
    path = download(entry, revision=revision, cache_dir=Path(cache_dir) if cache_dir is not None else None)
    return load_file(path, entry, device)
