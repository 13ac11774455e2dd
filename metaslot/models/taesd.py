"""TAESD-architecture convolution stacks (the tiny autoencoder of Stable Diffusion), written out.

The layer indices follow diffusers' ``AutoencoderTiny`` so pretrained weights map by name:
our encoder is its ``encoder.layers[0:14]`` (the final conv to 4 channels is dropped) and our
decoder is its ``decoder.layers[2:19]`` (the input conv + ReLU and the tanh clamp are dropped),
as the reference's VQ-VAE does (reference §1.6). Both stacks work on pixels in [0, 1], the range
TAESD was trained on. The weights come from a local folder or file, or from the Hugging Face hub's
cache (``madebyollin/taesd``, what the reference downloads at construction time).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

from metaslot.errors import WeightsError
from metaslot.ops.imagenet import IMAGENET_MEAN, IMAGENET_STD
from metaslot.runtime.hub import HubFile

# ImageNet statistics: pipeline inputs arrive normalised with them.

ENCODER_LAYERS = 14  # diffusers encoder.layers[0:14]
DECODER_FIRST_LAYER = 2  # diffusers decoder.layers[2:19]
DECODER_LAYERS = 17
FROZEN_ENCODER_LAYERS = 11  # the reference freezes encoder layers 0..10 (up to the third stride-2 conv)
TAESD_REPO = "madebyollin/taesd"  # the Hugging Face repo the reference's VQ-VAE loads
TAESD_FILE = "diffusion_pytorch_model.safetensors"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class TinyBlock(nn.Module):
    """conv–ReLU–conv–ReLU–conv plus an identity skip, then ReLU (TAESD's residual block)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
        )
        self.fuse = nn.ReLU()

    def forward(self, x: Float[Tensor, "b c h w"]) -> Float[Tensor, "b c h w"]:
        return self.fuse(self.conv(x) + x)


def encoder_layers(width: int) -> nn.Sequential:
    """conv3×3(3→w); block; [stride-2 conv (no bias), 3 blocks] ×3: pixels → (w, h/8, w/8)."""
    layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), TinyBlock(width)]
    for _ in range(3):
        layers.append(nn.Conv2d(width, width, 3, stride=2, padding=1, bias=False))
        layers.extend(TinyBlock(width) for _ in range(3))
    return nn.Sequential(*layers)


def decoder_layers(width: int) -> nn.Sequential:
    """3 blocks; [upsample ×2, conv (no bias), 3 blocks] ×2; upsample, conv, block, conv(w→3)."""
    layers: list[nn.Module] = [TinyBlock(width) for _ in range(3)]
    for num_blocks in (3, 3, 1):
        layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        layers.append(nn.Conv2d(width, width, 3, padding=1, bias=False))
        layers.extend(TinyBlock(width) for _ in range(num_blocks))
    layers.append(nn.Conv2d(width, 3, 3, padding=1))
    return nn.Sequential(*layers)


def imagenet_to_unit(image: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b 3 h w"]:
    """Undo ImageNet normalisation: pixels in [0, 1] (TAESD's input range)."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return image * std + mean


def unit_to_imagenet(pixels: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b 3 h w"]:
    """Pixels in [0, 1] → ImageNet-normalised, the space pipeline inputs live in."""
    mean = pixels.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = pixels.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


class TAESDWeightsError(WeightsError):
    """A TAESD weight file is missing, unreadable or does not fit the layers."""


def _resolve_weight_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
            if (path / name).is_file():
                return path / name
    raise TAESDWeightsError(
        f"no TAESD weights at {str(path)!r}: pass a diffusers AutoencoderTiny folder (with "
        "diffusion_pytorch_model.safetensors) or that file itself; download it once with "
        "`huggingface-cli download madebyollin/taesd --local-dir <folder>`, or train the VQ-VAE from "
        "random weights with --model.pretrained None"
    )


def _from_hub(repo_id: str) -> Path:
    """``repo_id``'s weight file from the hub cache (downloaded unless HF_HUB_OFFLINE=1), or one clear line."""
    import huggingface_hub

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, TAESD_FILE))
    except Exception as error:  # offline, no network, unknown repo, cache errors: one message for all
        first_line = (str(error).splitlines() or [type(error).__name__])[0]
        raise TAESDWeightsError(
            f"TAESD weights: {repo_id!r} is no local folder, and {TAESD_FILE} of the Hugging Face repo "
            f"{repo_id} is not in the local cache and could not be downloaded ({type(error).__name__}: "
            f"{first_line}). Fetch it once with `huggingface-cli download {repo_id} --local-dir "
            "weights/taesd` and pass --model.pretrained weights/taesd, or train the VQ-VAE from random "
            "weights with --model.pretrained None"
        ) from error


def is_hub_source(source: str | Path) -> bool:
    """Whether `resolve_taesd` reads ``source`` from the hub (a repo id that is no local path)."""
    path = Path(source).expanduser()
    return not (path.exists() or path.is_absolute() or not _REPO_ID.match(str(source)))


def missing_taesd(source: str | Path, flag: str) -> list[str]:
    """The local TAESD weights ``source`` names, when they are not there (`metaslot.train.requirements`)."""
    if is_hub_source(source):
        return []
    try:
        _resolve_weight_file(Path(source).expanduser())
    except TAESDWeightsError as error:
        return [f"{flag} {source}: {error}"]
    return []


def taesd_hub_files(source: str | Path) -> list[HubFile]:
    if not is_hub_source(source):
        return []
    fix = (
        f"fetch it once with `huggingface-cli download {source} --local-dir weights/taesd` and pass "
        "--model.pretrained weights/taesd, or train the VQ-VAE from random weights with --model.pretrained None"
    )
    return [HubFile("TAESD weights", str(source), TAESD_FILE, fix)]


def resolve_taesd(source: str | Path) -> Path:
    """The TAESD weight file ``source`` names: a local folder or file, else a hub repo id such as
    ``madebyollin/taesd`` (read from the local cache; downloaded when the hub is reachable)."""
    if not is_hub_source(source):
        return _resolve_weight_file(Path(source).expanduser())
    return _from_hub(str(source))


def load_taesd_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Read a diffusers ``AutoencoderTiny`` safetensors file and rename its keys to our layers.

    ``path`` is what :func:`resolve_taesd` takes (a local folder or file, or a hub repo id).
    Returns (encoder state for :func:`encoder_layers`, decoder state for :func:`decoder_layers`),
    in float32 (the published file is fp16).
    """
    from safetensors.torch import load_file

    file = resolve_taesd(path)
    try:
        state = load_file(str(file))
    except Exception as error:  # safetensors raises several types for a corrupt file
        raise TAESDWeightsError(f"cannot read TAESD weights {str(file)!r}: {error}") from error
    encoder: dict[str, Tensor] = {}
    decoder: dict[str, Tensor] = {}
    for key, value in state.items():
        part, _, rest = key.partition(".layers.")
        if not rest:
            continue
        index_text, _, name = rest.partition(".")
        index = int(index_text)
        if part == "encoder" and index < ENCODER_LAYERS:
            encoder[f"{index}.{name}"] = value.float()
        elif part == "decoder" and DECODER_FIRST_LAYER <= index < DECODER_FIRST_LAYER + DECODER_LAYERS:
            decoder[f"{index - DECODER_FIRST_LAYER}.{name}"] = value.float()
    if not encoder or not decoder:
        raise TAESDWeightsError(
            f"{str(file)!r} holds no 'encoder.layers.*'/'decoder.layers.*' keys: it is not a diffusers "
            "AutoencoderTiny checkpoint (expected madebyollin/taesd)"
        )
    return encoder, decoder


def load_into(layers: nn.Sequential, state: dict[str, Tensor], what: str) -> None:
    """Strictly load renamed TAESD weights, turning size mismatches into a message with the fix."""
    expected = layers.state_dict()
    wrong = [
        f"{key}: file {tuple(value.shape)} vs layers {tuple(expected[key].shape)}"
        for key, value in state.items()
        if key in expected and expected[key].shape != value.shape
    ]
    missing = sorted(set(expected) - set(state))
    if wrong or missing:
        raise TAESDWeightsError(
            f"TAESD {what} weights do not fit: wrong shapes {wrong[:3]}, missing {missing[:3]}; "
            "pretrained TAESD needs width=64"
        )
    with torch.no_grad():
        layers.load_state_dict(state, strict=True)
