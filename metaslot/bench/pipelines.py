"""Training-step throughput (images/s) of each pipeline: forward + backward + Adam + codebook upkeep.

Two sizes, both built from the training presets (handed in as `PresetModels`) with random weights
(timing needs no pretrained backbone, so nothing is downloaded):

- ``tiny``: the ``<model>_shapes`` preset shrunk to a few milliseconds per step (64×64 images, batch 8,
  a ViT-S/14 at 56×56 for the DINO-based ones), for a quick check of the whole step;
- ``paper``: the ``<model>_voc`` preset as published (256×256, batch 32; the autoencoder's preset is
  128×128), with the DINOv2 ViT-S/14 randomly initialised.

The VQ-VAE of SLATE/SlotDiffusion is random too (stage 1 untrained): its codes only feed the decoder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs
import torch
from jaxtyping import Float
from torch import Tensor

from metaslot.bench.presets import PresetModels
from metaslot.bench.timing import time_step
from metaslot.bench.variants import Variant

MODELS = ("autoencoder", "dinosaur", "vqvae", "slate", "slotdiffusion")
Size = Literal["smoke", "tiny", "paper"]
TINY_BATCH = 8
PAPER_BATCH = 32


@attrs.frozen
class PipelineCase:
    """One pipeline at one size: its spec, the batch and the (square) image side it is fed."""

    model: str
    size: str
    spec: object
    batch_size: int
    image_size: int


def _random_encoder(spec: object, **changes: object) -> object:
    """The spec with its DINO backbone built from random weights (a CNN encoder is left as is); a VQ-VAE
    with random TAESD layers and no LPIPS (nothing to download; the paper preset starts from TAESD)."""
    from metaslot.models.encoders import DinoViTSpec
    from metaslot.models.pipelines.vqvae import VQVAESpec

    if isinstance(spec, VQVAESpec):
        return attrs.evolve(spec, pretrained=None, lpips_weight=0.0)
    encoder = getattr(spec, "encoder", None)
    if not isinstance(encoder, DinoViTSpec):
        return spec
    return attrs.evolve(spec, encoder=attrs.evolve(encoder, pretrained=False, weights=None, **changes))


def _small_metaslot(batch_size: int, width: int = 64, num_slots: int = 4):
    from metaslot.models.aggregators import MetaSlotSpec

    return MetaSlotSpec(
        num_slots=num_slots,
        slot_dim=width,
        feature_dim=width,
        codebook_size=64,
        buffer_capacity=4 * batch_size * num_slots,
    )


def tiny_spec(model: str, presets: PresetModels, batch_size: int = TINY_BATCH) -> object:
    """``<model>_shapes`` shrunk: 64×64 images, 4 slots of width 64, small decoders (the autoencoder is
    the CPU main job as it is: 32×32, 5 slots of width 32)."""
    from metaslot.models.decoders import MLPDecoderSpec
    from metaslot.models.decoders.diffusion import DiffusionDecoderSpec

    spec = presets(model, "shapes")
    if model == "autoencoder":
        return spec  # already the CPU main job's size
    if model == "vqvae":
        return attrs.evolve(spec, codebook_size=64, width=32)
    spec = _random_encoder(spec, image_size=56)
    aggregator = _small_metaslot(batch_size)
    if model == "dinosaur":
        return attrs.evolve(
            spec, aggregator=aggregator, decoder=MLPDecoderSpec(hidden_channels=(256, 256)), image_size=64
        )
    small_vqvae = attrs.evolve(spec.vqvae, codebook_size=64, width=32)
    if model == "slate":
        decoder = attrs.evolve(spec.decoder, width=64, num_layers=2, feedforward=128)
        return attrs.evolve(spec, aggregator=aggregator, vqvae=small_vqvae, decoder=decoder, image_size=64)
    decoder = DiffusionDecoderSpec(block_channels=(64, 64), layers_per_block=1, norm_groups=32)
    return attrs.evolve(spec, aggregator=aggregator, vqvae=small_vqvae, decoder=decoder, image_size=64)


def paper_spec(model: str, presets: PresetModels) -> object:
    """The ``<model>_voc`` preset's model with a random backbone."""
    return _random_encoder(presets(model, "voc"))


def smoke_spec(model: str, presets: PresetModels) -> object:
    """The tiny spec with minute widths, only to check the benchmark runs (numbers mean nothing)."""
    from metaslot.models.encoders import CNNEncoderSpec

    spec = tiny_spec(model, presets, batch_size=2)
    if model == "vqvae":
        return attrs.evolve(spec, code_dim=8, codebook_size=8, width=8)
    if model == "autoencoder":
        return attrs.evolve(spec, aggregator=_small_metaslot(2, width=spec.aggregator.slot_dim, num_slots=2))
    # A two-layer CNN stands in for the ViT: the smoke run tests the step, not the backbone.
    spec = attrs.evolve(
        spec,
        encoder=CNNEncoderSpec(channels=(8, 8), kernel_size=3, strides=(4, 4)),
        aggregator=_small_metaslot(2, width=8, num_slots=2),
    )
    if model == "slotdiffusion":
        spec = attrs.evolve(
            spec,
            decoder=attrs.evolve(spec.decoder, block_channels=(8, 8), norm_groups=4, attention_head_dim=2),
        )
    return spec


VQVAE_IMAGE_SIZES = {"smoke": 32, "tiny": 64, "paper": 256}
"""The VQ-VAE spec has no image size (it is fully convolutional): it is fed these."""


def _image_size(spec: object, size: Size) -> int:
    return getattr(spec, "image_size", VQVAE_IMAGE_SIZES[size])


def cases(
    sizes: tuple[Size, ...], presets: PresetModels, models: tuple[str, ...] = MODELS
) -> list[PipelineCase]:
    """Every model at every size in ``sizes``."""
    chosen: list[PipelineCase] = []
    for size in sizes:
        for model in models:
            if size == "paper":
                spec, batch_size = paper_spec(model, presets), PAPER_BATCH
            elif size == "tiny":
                spec, batch_size = tiny_spec(model, presets), TINY_BATCH
            else:
                spec, batch_size = smoke_spec(model, presets), 2
            chosen.append(PipelineCase(model, size, spec, batch_size, _image_size(spec, size)))
    return chosen


def training_step(
    pipeline: torch.nn.Module, images: Float[Tensor, "b 3 h w"], variant: Variant
) -> Callable[[], None]:
    """One Adam step of ``pipeline`` on ``images`` (upkeep included), as a closure the timers call."""
    parameters = [parameter for parameter in pipeline.parameters() if parameter.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=1e-4)

    def step() -> None:
        pipeline.train()
        with variant.autocast(images.device):
            output = pipeline(images)
        optimizer.zero_grad(set_to_none=True)
        output.loss.float().backward()
        optimizer.step()
        pipeline.after_optimizer_step(output)

    return step


def benchmark_case(
    case: PipelineCase, device: torch.device, variant: Variant, repeats: int, warmup: int
) -> dict:
    """Images/s (min/median/max over repeats) and milliseconds per training step of one pipeline."""
    torch.manual_seed(0)
    pipeline = case.spec.build().to(device)  # type: ignore[attr-defined]
    images = torch.randn(case.batch_size, 3, case.image_size, case.image_size, device=device)
    timing = time_step(
        training_step(pipeline, images, variant), device=device, repeats=repeats, warmup=warmup
    )
    trainable = sum(parameter.numel() for parameter in pipeline.parameters() if parameter.requires_grad)
    return {
        "model": case.model,
        "size": case.size,
        "batch_size": case.batch_size,
        "image_size": case.image_size,
        "variant": variant.name,
        "trainable_parameters": trainable,
        "step": timing.milliseconds(),
        "images": timing.throughput(case.batch_size),
    }


def benchmark_pipelines(
    sizes: tuple[Size, ...],
    device: torch.device,
    precisions: list[Variant],
    repeats: int,
    warmup: int,
    presets: PresetModels,
    batch_size: int | None = None,
) -> list[dict]:
    """One row per pipeline, size and precision (pipelines run eager; compile variants are the aggregators');
    ``batch_size`` replaces each size's default batch."""
    chosen = cases(sizes, presets)
    if batch_size is not None:
        chosen = [attrs.evolve(case, batch_size=batch_size) for case in chosen]
    return [
        benchmark_case(case, device, variant, repeats, warmup) for case in chosen for variant in precisions
    ]


def format_table(rows: list[dict]) -> str:
    lines = [
        "pipelines: training step (forward + backward + Adam + upkeep), images/s median [min–max]",
        f"{'model':<14} {'size':<6} {'batch':>5} {'image':>6} {'variant':<8} {'images/s':>24} {'ms/step':>10} {'trainable':>11}",
    ]
    for row in rows:
        images = row["images"]
        spread = f"{images['median_per_s']:.1f} [{images['min_per_s']:.1f}–{images['max_per_s']:.1f}]"
        lines.append(
            f"{row['model']:<14} {row['size']:<6} {row['batch_size']:>5} {row['image_size']:>6} "
            f"{row['variant']:<8} {spread:>24} {row['step']['median_ms']:>10.1f} "
            f"{row['trainable_parameters'] / 1e6:>10.2f}M"
        )
    return "\n".join(lines)
