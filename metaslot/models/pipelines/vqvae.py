"""The VQ-VAE pipeline (stage 1 of SLATE and SlotDiffusion): losses recon + align + 0.25·commit (+ LPIPS).

Differences from the reference (§1.6), on purpose: the TAESD layers see pixels in [0, 1] (the range
they were trained on) instead of ImageNet-normalised values shifted by TAESD's ``(x+1)/2``, and the
pretrained TAESD weights may come from a local folder as well as from the hub. ``loss_units`` picks the
units of the pixel losses: the reference's ImageNet-normalised ones (the paper presets) or [−1, 1].
``pixel_space="reference"`` restores the reference's input scaling for weights trained by it.
Its state-dict keys (``encoder.*``, ``codebook.*``, ``decoder.*``) are what
``checkpoint_mapping`` maps into the stage-2 pipelines.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

import attrs
import torch
import torch.nn.functional as functional
from jaxtyping import Float
from torch import Tensor, nn

from metaslot import validators
from metaslot.errors import ConfigError, MissingDependencyError
from metaslot.models.records import PipelineOutput
from metaslot.models.taesd import (
    FROZEN_ENCODER_LAYERS,
    TAESD_REPO,
    imagenet_to_unit,
    load_into,
    load_taesd_state,
    missing_taesd,
    taesd_hub_files,
    unit_to_imagenet,
)
from metaslot.models.vqvae import GridCodebook, GridQuantized, VQDecoder, VQEncoder
from metaslot.runtime.hub import HubFile
from metaslot.validators import non_negative, positive, probability


class LPIPSUnavailableError(MissingDependencyError, RuntimeError):
    """LPIPS was asked for but the ``lpips`` package or its weights are not available."""


LossUnits = Literal["imagenet", "signed"]
"""Units the reconstruction and LPIPS terms compare pixels in: ``imagenet`` = ImageNet-normalised,
(x − mean) / std, as the reference (its decoder outputs normalised images); ``signed`` = [−1, 1]
(the diffusers/LPIPS convention). For the same pixel error the first is mean(1/std²)/4 ≈ 4.9× larger,
so against the commitment term it weighs 4.9× more."""


def in_loss_units(pixels: Float[Tensor, "b 3 h w"], units: LossUnits) -> Float[Tensor, "b 3 h w"]:
    """Pixels in [0, 1] → the units the pixel losses are computed in (see `LossUnits`)."""
    return unit_to_imagenet(pixels) if units == "imagenet" else pixels * 2 - 1


PixelSpace = Literal["unit", "reference"]
"""What the TAESD layers see: ``unit``, pixels in [0, 1] (the range TAESD was trained on; our
default); ``reference``, the ImageNet-normalised image shifted by TAESD's own ``(x+1)/2``, as the
reference's VQ-VAE did (its decoder output ``y`` is read back as the normalised image ``2y−1``).
Weights work only in the space they were trained in: files from the reference need ``reference``."""


def _optional_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@attrs.frozen
class VQVAESpec:
    """TAESD-architecture VQ-VAE with a ``codebook_size``-code quantiser.

    ``code_dim`` 256 is the variant for SLATE (c256), 4 for SlotDiffusion (c4). Images are resized by
    ``input_scale`` (bicubic; 256 → 128 gives 16×16 latents) before the encoder. ``pretrained`` names a
    local diffusers ``AutoencoderTiny`` folder or safetensors file, or a Hugging Face repo id read
    through the hub cache (`TAESD_REPO`, as the reference; needs width 64); None trains from random
    weights. With ``freeze_pretrained`` its encoder layers 0..10 stay fixed as in the reference.
    ``lpips_weight`` > 0 adds LPIPS(alex) and needs the ``lpips`` package with its weights.
    ``loss_units`` are the units of the reconstruction and LPIPS terms (`LossUnits`).
    `reference_vqvae` is the reference's stage-1 recipe.
    """

    code_dim: int = attrs.field(default=256, validator=positive)
    codebook_size: int = attrs.field(default=4096, validator=positive)
    width: int = attrs.field(default=64, validator=positive)
    input_scale: float = attrs.field(default=0.5, validator=probability)
    align_weight: float = attrs.field(default=1.0, validator=non_negative)
    commit_weight: float = attrs.field(default=0.25, validator=non_negative)
    lpips_weight: float = attrs.field(default=0.0, validator=non_negative)
    pretrained: Path | None = attrs.field(default=None, converter=_optional_path)
    freeze_pretrained: bool = True
    loss_units: LossUnits = attrs.field(default="signed", validator=validators.one_of("imagenet", "signed"))
    pixel_space: PixelSpace = attrs.field(default="unit", validator=validators.one_of("unit", "reference"))
    with_decoder: bool = True
    """False: encoder and codebook only, as the reference's SLATE/SlotDiffusion files hold their stage 1;
    such a VQ-VAE tokenises images but renders nothing (that needs the stage-1 file's decoder)."""

    def missing_files(self, flag: str) -> list[str]:
        """The TAESD weights given by path and the lpips package, when they are not there
        (`metaslot.train.requirements`)."""
        missing = [] if self.pretrained is None else missing_taesd(self.pretrained, f"{flag}.pretrained")
        if self.lpips_weight > 0 and importlib.util.find_spec("lpips") is None:
            missing.append(
                "the `lpips` package (lpips_weight > 0): `pip install lpips`, or train without LPIPS with "
                f"{flag}.lpips-weight 0"
            )
        return missing

    def hub_files(self) -> list[HubFile]:
        return [] if self.pretrained is None else taesd_hub_files(self.pretrained)

    def build(self) -> VQVAE:
        return VQVAE(self)


def vqvae_c256(**overrides: object) -> VQVAESpec:
    """The VQ-VAE whose codes and code vectors SLATE decodes (code dim 256)."""
    return attrs.evolve(VQVAESpec(code_dim=256), **overrides)


def vqvae_c4(**overrides: object) -> VQVAESpec:
    """The VQ-VAE whose latents SlotDiffusion denoises (code dim 4).

    The reference adds LPIPS for this variant (`reference_vqvae` does too).
    """
    return attrs.evolve(VQVAESpec(code_dim=4), **overrides)


def reference_vqvae(variant: Literal["c256", "c4"]) -> VQVAESpec:
    """The reference's stage 1 (``vqvae-*-c256.py`` / ``-c4.py``): TAESD weights from the hub with encoder
    layers 0..10 frozen, pixel losses in ImageNet-normalised units, and LPIPS(alex) at weight 1 for c4."""
    recipe = dict(pretrained=TAESD_REPO, freeze_pretrained=True, loss_units="imagenet")
    return vqvae_c4(lpips_weight=1.0, **recipe) if variant == "c4" else vqvae_c256(**recipe)


def latent_grid(image_size: int, vqvae: VQVAESpec) -> int:
    """Side of the VQ-VAE's latent grid for square ``image_size`` inputs (resize, then three stride-2 convs)."""
    resized = image_size * vqvae.input_scale
    if resized != int(resized) or int(resized) % 8:
        raise ConfigError(
            f"image_size ({image_size}) × input_scale ({vqvae.input_scale}) = {resized} must be a whole "
            "multiple of 8 (the TAESD encoder downsamples by 8): change image_size or input_scale"
        )
    return int(resized) // 8


def frozen_vqvae(spec: VQVAESpec) -> VQVAE:
    """The stage-1 VQ-VAE as a fixed tokenizer: no LPIPS, no pretrained reloading, no gradients."""
    module = attrs.evolve(spec, lpips_weight=0.0, pretrained=None).build()
    module.requires_grad_(False)
    return module.eval()


def build_lpips() -> nn.Module:
    """LPIPS(alex) as a frozen module, or a clear error saying what to install."""
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError as error:
        raise LPIPSUnavailableError(
            "lpips_weight > 0 needs the `lpips` package: `pip install lpips` (its AlexNet weights come "
            "from torchvision's hub on first use), or train without LPIPS with --model.lpips-weight 0"
        ) from error
    try:
        module = lpips.LPIPS(net="alex", verbose=False)
    except Exception as error:  # download failures surface as URLError/OSError/RuntimeError
        raise LPIPSUnavailableError(
            f"could not build LPIPS(alex) ({error}): it needs torchvision's AlexNet weights in the torch hub "
            "cache (download them once online), or train without LPIPS with --model.lpips-weight 0"
        ) from error
    module.requires_grad_(False)
    return module.eval()


class VQVAE(nn.Module):
    """Pixels (ImageNet-normalised) → latents → nearest codes → reconstruction, with the stage-1 losses."""

    aggregator = None

    def __init__(self, spec: VQVAESpec) -> None:
        super().__init__()
        self.spec = spec
        frozen = FROZEN_ENCODER_LAYERS if spec.pretrained is not None and spec.freeze_pretrained else 0
        self.encoder = VQEncoder(spec.width, spec.code_dim, frozen_layers=frozen)
        self.codebook = GridCodebook(spec.codebook_size, spec.code_dim)
        self.decoder = VQDecoder(spec.width, spec.code_dim) if spec.with_decoder else None
        if spec.pretrained is not None:
            encoder_state, decoder_state = load_taesd_state(spec.pretrained)
            load_into(self.encoder.layers, encoder_state, "encoder")
            if self.decoder is not None:
                load_into(self.decoder.layers, decoder_state, "decoder")
            self.encoder.layers[:frozen].requires_grad_(False)
        self.perceptual = build_lpips() if spec.lpips_weight > 0 else None

    def _resize(self, image: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b 3 h w"]:
        if self.spec.input_scale == 1.0:
            return image
        return functional.interpolate(
            image, scale_factor=self.spec.input_scale, mode="bicubic", align_corners=False
        )

    def prepare(self, image: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b 3 h w"]:
        """ImageNet-normalised image → the TAESD layers' input (`PixelSpace`) at their resolution."""
        if self.spec.pixel_space == "reference":
            return self._resize(image).add(1).div(2)  # the reference: resize, then TAESD's (x+1)/2
        return self._resize(imagenet_to_unit(image))

    def to_image(self, pixels: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b 3 h w"]:
        """The TAESD layers' output → an ImageNet-normalised image (the inverse of `prepare`'s mapping)."""
        if self.spec.pixel_space == "reference":
            return pixels.mul(2).sub(1)
        return unit_to_imagenet(pixels)

    def _in_loss_units(self, pixels: Float[Tensor, "b 3 h w"]) -> Float[Tensor, "b 3 h w"]:
        if self.spec.pixel_space == "reference":
            pixels = imagenet_to_unit(self.to_image(pixels))
        return in_loss_units(pixels, self.spec.loss_units)

    def _decoder(self) -> VQDecoder:
        if self.decoder is None:
            raise ConfigError(
                "this VQ-VAE has no decoder (a reference SLATE/SlotDiffusion file holds only the stage-1 "
                "encoder and codebook): load the stage-1 VQ-VAE file with it (metaslot.load(..., vqvae=FILE) "
                "or --vqvae FILE) to render images"
            )
        return self.decoder

    def encode(self, image: Float[Tensor, "b 3 H W"]) -> Float[Tensor, "b c h w"]:
        """Pre-quantisation latents of an ImageNet-normalised image."""
        return self.encoder(self.prepare(image))

    def tokenize(self, image: Float[Tensor, "b 3 H W"]) -> GridQuantized:
        """Codes and code vectors of an ImageNet-normalised image (what stage 2 decodes)."""
        return self.codebook(self.encode(image))

    def decode(self, latents: Float[Tensor, "b c h w"]) -> Float[Tensor, "b 3 H W"]:
        """Latents → ImageNet-normalised image at the encoder's input resolution (``input_scale`` × input);
        a ConfigError naming the file to provide when the decoder is absent (``with_decoder=False``)."""
        return self.to_image(self._decoder()(latents))

    def forward(self, image: Float[Tensor, "b 3 H W"]) -> PipelineOutput:
        """Losses on one batch; ``reconstruction`` is ImageNet-normalised at ``input_scale`` × input size."""
        target = self.prepare(image)
        encoding = self.encoder(target)
        quantized = self.codebook(encoding)
        decoded = self._decoder()(quantized.straight_through)
        decoded_units = self._in_loss_units(decoded)
        target_units = self._in_loss_units(target)
        terms: dict[str, Tensor] = {
            "recon": functional.mse_loss(decoded_units, target_units),
            "align": self.spec.align_weight * functional.mse_loss(quantized.quantized, encoding.detach()),
            "commit": self.spec.commit_weight * functional.mse_loss(encoding, quantized.quantized.detach()),
        }
        if self.perceptual is not None:
            terms["lpips"] = self.spec.lpips_weight * self.perceptual(decoded_units, target_units).mean()
        loss = torch.stack(list(terms.values())).sum()
        return PipelineOutput(
            loss=loss,
            terms={name: value.detach() for name, value in terms.items()},
            reconstruction=self.to_image(decoded.detach()),
        )

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        """Nothing to maintain: the codebook learns through the align loss only (no EMA, no dead codes)."""

    def codebook_statistics(self) -> None:
        """None: no slot codebook (the VQ-VAE's own codes are not MetaSlot prototypes)."""
        return None
