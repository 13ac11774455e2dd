"""Frozen DINO / DINOv2 vision transformer from timm, returning patch tokens without prefix tokens.

The reference builds the timm model with ``pretrained=True`` at construction time and has no offline
path (``spec/reference.md`` §0.5, §1.2). Here the weights come from the hub, from a local file
(through timm's public ``pretrained_cfg_overlay=dict(file=...)``), or are random (tests, benchmarks);
every way that can fail for lack of weights raises one ``WeightsNotFoundError`` that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import timm
import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn import functional

from metaslot.errors import ConfigError, WeightsError
from metaslot.runtime.hub import HubFile
from metaslot.validators import at_least_one, holds, known, or_none

DEFAULT_VIT = "vit_small_patch14_dinov2.lvd142m"
KNOWN_VITS = (
    "vit_small_patch14_dinov2.lvd142m",
    "vit_small_patch14_reg4_dinov2.lvd142m",
    "vit_base_patch16_224.dino",
)
"""The backbones the reference configs use; any other timm ViT name works too (e.g. tiny ones for tests)."""

WEIGHT_FILE_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pth")
"""Names looked up inside a weights folder, in this order (the first is what the HF hub repos hold)."""


class WeightsNotFoundError(WeightsError):
    """Pretrained weights could not be found or read; the message names the file and the option to pass."""


def hub_repository(model_name: str) -> str:
    """The Hugging Face repo timm downloads ``model_name``'s weights from (``timm/<name>`` when unknown)."""
    config = timm.models.get_pretrained_cfg(model_name)
    return (config.hf_hub_id if config is not None and config.hf_hub_id else None) or f"timm/{model_name}"


def _how_to_get(model_name: str) -> str:
    repo = hub_repository(model_name)
    return (
        f"download 'model.safetensors' from the Hugging Face repo '{repo}' "
        f"(https://huggingface.co/{repo}/resolve/main/model.safetensors) and pass its path with "
        f"--model.encoder.weights PATH (or set weights=Path(...) in DinoViTSpec)"
    )


def resolve_weights_file(model_name: str, weights: Path) -> Path:
    """The readable weight file that ``weights`` (a file, or a folder holding one) names, or a clear error."""
    path = Path(weights).expanduser()
    if path.is_dir():
        for name in WEIGHT_FILE_NAMES:
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise WeightsNotFoundError(
                f"no weight file ({', '.join(WEIGHT_FILE_NAMES)}) in folder {str(path)!r} for {model_name!r}: "
                + _how_to_get(model_name)
            )
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weight file {str(path)!r} for {model_name!r} does not exist: " + _how_to_get(model_name)
        )
    if not os.access(path, os.R_OK):
        raise WeightsNotFoundError(
            f"weight file {str(path)!r} for {model_name!r} is not readable (check its permissions), or "
            + _how_to_get(model_name)
        )
    return path


def _weights_need_pretrained(spec: DinoViTSpec) -> None:
    if spec.weights is not None and not spec.pretrained:
        raise ConfigError(
            f"weights={str(spec.weights)!r} was given with pretrained=False: drop the weights for a random "
            f"backbone, or keep pretrained=True to load them"
        )


@attrs.frozen(kw_only=True)
class DinoViTSpec:
    """A (by default frozen) timm ViT; the image is bicubic-resized to ``image_size`` before the patches.

    ``weights`` (a file or folder) wins over the hub; ``pretrained=False`` gives random weights and
    needs no file. Patch size and width are read from the timm model, so 256×256 input → 224 →
    16×16 tokens for patch 14 and 14×14 for patch 16.
    """

    model_name: str = attrs.field(
        default=DEFAULT_VIT, validator=known(timm.is_model, "timm model", KNOWN_VITS)
    )
    pretrained: bool = True
    weights: Path | None = attrs.field(
        default=None, converter=attrs.converters.optional(Path), validator=holds(_weights_need_pretrained)
    )
    image_size: int = attrs.field(default=224, validator=at_least_one)
    """Side of the square the image is resized to (reference: 256 × 0.875 = 224)."""
    position_size: int | None = attrs.field(default=None, validator=or_none(at_least_one))
    """Image side the position embedding is stored for; None: ``image_size``. When given, the
    embedding keeps that size and is resampled (bicubic, antialiased) to the token grid at every forward,
    timm's ``dynamic_img_size``: FT-DINOSAUR stores DINOv2's 518×518 (37×37) embedding and runs at 224."""
    final_norm: bool = True
    """Apply the ViT's final LayerNorm (reference: True except SPOT, which uses the last block's output)."""
    frozen: bool = True
    """requires_grad False, evaluation mode and ``no_grad`` (the reference freezes the backbone by regex)."""

    def missing_files(self, flag: str) -> list[str]:
        """The weight file given by path, when it is not there (`metaslot.train.requirements`)."""
        if not self.pretrained or self.weights is None:
            return []
        try:
            resolve_weights_file(self.model_name, self.weights)
        except WeightsNotFoundError as error:
            return [str(error).replace("--model.encoder.weights", f"{flag}.weights")]
        return []

    def hub_files(self) -> list[HubFile]:
        """The hub file timm downloads when no weight file is given."""
        if not self.pretrained or self.weights is not None:
            return []
        return [
            HubFile(
                f"{self.model_name} weights",
                hub_repository(self.model_name),
                "model.safetensors",
                _how_to_get(self.model_name),
            )
        ]

    def build(self) -> DinoViT:
        return DinoViT(self)


def create_backbone(spec: DinoViTSpec) -> nn.Module:
    """The timm model of ``spec`` with its weights loaded (from file, hub, or none)."""
    options: dict[str, object] = dict(img_size=spec.image_size, num_classes=0)
    if spec.position_size is not None:
        options.update(img_size=spec.position_size, dynamic_img_size=True)
    if not spec.pretrained:
        return timm.create_model(spec.model_name, pretrained=False, **options)
    if spec.weights is not None:
        weight_file = resolve_weights_file(spec.model_name, spec.weights)
        # custom_load=False: our files are state dicts, never the .npz some ViT registry entries point
        # at; timm up to 1.0.28 (tested: 1.0.9, 1.0.28) kept that npz loader for a file given so.
        options["pretrained_cfg_overlay"] = dict(file=str(weight_file), custom_load=False)
        source = f"weight file {str(weight_file)!r}"
    else:
        source = f"the Hugging Face hub (repo {hub_repository(spec.model_name)!r})"
    try:
        return timm.create_model(spec.model_name, pretrained=True, **options)
    except Exception as error:  # timm raises bare FileNotFoundError / hub errors / load errors: wrap them all
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False")
        hint = (
            " (HF_HUB_OFFLINE is set, so the hub is not contacted)"
            if offline and spec.weights is None
            else ""
        )
        raise WeightsNotFoundError(
            f"could not load pretrained weights for {spec.model_name!r} from {source}{hint}: "
            f"{type(error).__name__}: {str(error).rstrip('.') or 'no details'}. To fix: "
            + _how_to_get(spec.model_name)
        ) from error


class DinoViT(nn.Module):
    """``forward(image b 3 h w) -> tokens b n c``; n = (image_size / patch)², prefix tokens dropped."""

    def __init__(self, spec: DinoViTSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = create_backbone(spec)
        patch_height, patch_width = self.backbone.patch_embed.patch_size
        self.patch_size = (patch_height, patch_width)
        self.grid = (spec.image_size // patch_height, spec.image_size // patch_width)
        self.out_channels = int(self.backbone.embed_dim)
        self.num_prefix_tokens = int(self.backbone.num_prefix_tokens)
        if spec.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    @property
    def frozen(self) -> bool:
        return self.spec.frozen

    def train(self, mode: bool = True) -> DinoViT:
        """Keeps a frozen backbone in evaluation mode whatever the surrounding pipeline does."""
        super().train(mode)
        if self.spec.frozen:
            self.backbone.eval()
        return self

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (h', w'); fixed by ``image_size`` since every input is resized to it."""
        return self.grid

    def _tokens(self, image: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b n c"]:
        size = self.spec.image_size
        if image.shape[-2:] != (size, size):
            image = functional.interpolate(image, size=(size, size), mode="bicubic", align_corners=False)
        if self.spec.final_norm:
            tokens = self.backbone.forward_features(image)
            return tokens[:, self.num_prefix_tokens :]
        # The last block's output without the final norm; timm strips the prefix tokens itself here.
        (tokens,) = self.backbone.forward_intermediates(
            image, indices=1, norm=False, output_fmt="NLC", intermediates_only=True
        )
        return tokens

    def forward(self, image: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b n c"]:
        if self.spec.frozen:
            with torch.no_grad():
                return self._tokens(image).detach()
        return self._tokens(image)
