"""What a paper run costs: FLOPs of one training step by part, CPU seconds per image, peak memory, and a
projection of GPU-hours for the preset's whole run.

Each paper preset (DINOSAUR, SLATE, SlotDiffusion, the VQ-VAE c256/c4 of stage 1, at the VOC shape) is
built with random weights (the frozen DINOv2 and VQ-VAE and the TAESD start cost the same untrained;
LPIPS, which needs downloaded AlexNet weights, is left out of the c4 row). One training step at
``batch_size`` (forward and backward) is counted with ``torch.utils.flop_counter.FlopCounterMode``, which
counts matrix products, convolutions and attention (2 FLOPs per multiply-add) and no elementwise work:

- backbone: the encoder of the front end and the frozen VQ-VAE encoder that makes SLATE's and
  SlotDiffusion's targets (for the VQ-VAE itself: its encoder);
- aggregator: MetaSlot; decoder: the pipeline's decoder (SlotDiffusion: its UNet); rest: the total
  minus these (projection MLP, quantiser, loss), see `step_flops`.

The projection: FLOPs per step scale linearly with the batch, so ``flops × preset batch / batch_size ×
preset steps`` at ``utilisation`` of the GPU's dense bf16 peak. It assumes bf16 matrix products at that
utilisation throughout and leaves out evaluation, data loading and checkpoints: a planning figure, not
a measurement.

Run through the CLI: ``python -m cli.bench costs``, which hands in the presets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import attrs
import torch

from metaslot.bench.flops import count_flops
from metaslot.bench.memory import peak_new_bytes
from metaslot.bench.pipelines import _random_encoder, training_step
from metaslot.bench.timing import time_step
from metaslot.bench.variants import Variant

COST_PRESETS = (
    ("dinosaur", "c256"),
    ("slate", "c256"),
    ("slotdiffusion", "c4"),
    ("vqvae", "c256"),
    ("vqvae", "c4"),
)
"""(model, VQ-VAE variant) of each row; the variant matters for the VQ-VAE rows only."""

GPU_NAME = "NVIDIA H100 SXM"
GPU_BF16_PEAK = 989e12
"""Dense bf16 tensor-core FLOP/s of the H100 SXM (NVIDIA's data sheet; 1979e12 is with sparsity)."""
DEFAULT_UTILISATION = 0.35

PresetRun = Callable[[str, str, str], tuple[object, int, int]]
"""``(model, data, vqvae_variant) -> (model spec, steps, batch size)`` of a training preset."""


def _random_weights(spec: object) -> object:
    """The preset's model with nothing to download: random DINOv2, no TAESD start (its layers stay
    frozen as they would be), no LPIPS; a stage-2 pipeline's VQ-VAE likewise."""
    from metaslot.models.pipelines.vqvae import VQVAESpec

    spec = _random_encoder(spec)
    if isinstance(spec, VQVAESpec):
        return attrs.evolve(spec, pretrained=None, lpips_weight=0.0)
    vqvae = getattr(spec, "vqvae", None)
    if isinstance(vqvae, VQVAESpec):
        return attrs.evolve(spec, vqvae=attrs.evolve(vqvae, pretrained=None, lpips_weight=0.0))
    return spec


def _build(spec: object, original: object) -> torch.nn.Module:
    from metaslot.models.pipelines.vqvae import FROZEN_ENCODER_LAYERS, VQVAESpec

    pipeline = spec.build()  # type: ignore[attr-defined]
    if isinstance(original, VQVAESpec) and original.pretrained is not None and original.freeze_pretrained:
        # The TAESD start freezes the first encoder layers: no weight gradients there, as in the real run.
        pipeline.encoder.layers[:FROZEN_ENCODER_LAYERS].requires_grad_(False)
    return pipeline


PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "dinosaur": {
        "backbone": ("frontend.encoder",),
        "aggregator": ("frontend.aggregator",),
        "decoder": ("decoder",),
    },
    "slate": {
        "backbone": ("frontend.encoder", "vqvae.encoder"),
        "aggregator": ("frontend.aggregator",),
        "decoder": ("decoder",),
    },
    "slotdiffusion": {
        "backbone": ("frontend.encoder", "vqvae.encoder"),
        "aggregator": ("frontend.aggregator",),
        "decoder": ("decoder.unet",),
    },
    "vqvae": {"backbone": ("encoder",), "aggregator": (), "decoder": ("decoder",)},
}
"""Which submodules make up each part of a pipeline's step (the rest is everything else)."""


def _tensors(value: object) -> list[torch.Tensor]:
    """The tensors in a module's output (a tensor, a tuple of them or a dataclass record)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [tensor for item in value for tensor in _tensors(item)]
    if dataclasses.is_dataclass(value):
        return [
            tensor for field in dataclasses.fields(value) for tensor in _tensors(getattr(value, field.name))
        ]
    return []


def _detached(value: object) -> object:
    """Arguments as a fresh leaf that asks for a gradient where the original carried one."""
    if isinstance(value, torch.Tensor):
        return value.detach().requires_grad_(value.requires_grad)
    if isinstance(value, tuple | list):
        return type(value)(_detached(item) for item in value)
    if isinstance(value, dict):
        return {key: _detached(item) for key, item in value.items()}
    return value


def _rerun(module: torch.nn.Module, args: object, kwargs: object, grad_enabled: bool) -> Callable[[], None]:
    """One call of ``module`` as in the step, back-propagating every output that carries a gradient."""

    def call() -> None:
        with torch.set_grad_enabled(grad_enabled):
            output = module(*args, **kwargs)  # type: ignore[misc]
        carried = [tensor for tensor in _tensors(output) if tensor.requires_grad]
        if carried:
            torch.autograd.backward(carried, [torch.ones_like(tensor) for tensor in carried])

    return call


def step_flops(
    pipeline: torch.nn.Module, images: torch.Tensor, parts: dict[str, tuple[str, ...]]
) -> dict[str, float]:
    """FLOPs of one forward + backward, and of each part.

    The total is counted over the step. A part is counted by calling its modules again on the inputs
    they got in the step (captured by a hook), in the step's grad mode, and back-propagating every output
    that carries a gradient; ``rest`` is the total minus the parts. (FlopCounterMode's own per-module
    counts leave most of the backward out of the parent modules, so they are not used.)
    """
    captured: dict[str, tuple[object, object, bool]] = {}
    handles = []
    for paths in parts.values():
        for path in paths:

            def hook(module, args, kwargs, output, path=path):  # noqa: ANN001, ANN202
                captured.setdefault(path, (_detached(args), _detached(kwargs), torch.is_grad_enabled()))

            handles.append(pipeline.get_submodule(path).register_forward_hook(hook, with_kwargs=True))
    pipeline.train()
    try:
        flops = {"total": count_flops(lambda: pipeline(images).loss.float().backward())}
    finally:
        for handle in handles:
            handle.remove()
    for part, paths in parts.items():
        flops[part] = 0.0
        for path in paths:
            args, kwargs, grad_enabled = captured[path]
            flops[part] += count_flops(_rerun(pipeline.get_submodule(path), args, kwargs, grad_enabled))
    pipeline.zero_grad(set_to_none=True)
    flops["rest"] = flops["total"] - sum(flops[part] for part in parts)
    return flops


def cost_row(
    model: str,
    variant: str,
    presets: PresetRun,
    device: torch.device,
    batch_size: int,
    repeats: int,
    warmup: int,
    utilisation: float,
) -> dict:
    original, steps, preset_batch = presets(model, "voc", variant)
    spec = _random_weights(original)
    torch.manual_seed(0)
    pipeline = _build(spec, original).to(device)
    image_size = getattr(spec, "image_size", 256)
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    flops = step_flops(pipeline, images, PARTS[model])
    pipeline.zero_grad(set_to_none=True)
    step = training_step(pipeline, images, Variant())
    timing = time_step(step, device=device, repeats=repeats, warmup=warmup)
    peak = peak_new_bytes(step, device)
    state = sum(tensor.numel() * tensor.element_size() for tensor in pipeline.state_dict().values())
    run_flops = flops["total"] * preset_batch / batch_size * steps
    return {
        "preset": f"{model}_voc" + (f" {variant}" if model == "vqvae" else ""),
        "batch_size": batch_size,
        "image_size": image_size,
        "flops": flops,
        "seconds_per_image": timing.median / batch_size,
        "step": timing.milliseconds(),
        "peak_step_memory_mib": peak / 2**20,
        "model_state_mib": state / 2**20,
        "preset_steps": steps,
        "preset_batch_size": preset_batch,
        "gpu": GPU_NAME,
        "gpu_bf16_peak_flops": GPU_BF16_PEAK,
        "utilisation": utilisation,
        "projected_gpu_hours": run_flops / (utilisation * GPU_BF16_PEAK) / 3600,
    }


def benchmark_costs(
    presets: PresetRun,
    device: torch.device,
    batch_size: int = 2,
    repeats: int = 2,
    warmup: int = 1,
    utilisation: float = DEFAULT_UTILISATION,
    chosen: tuple[tuple[str, str], ...] = COST_PRESETS,
) -> list[dict]:
    """One row per preset of ``chosen``."""
    return [
        cost_row(model, variant, presets, device, batch_size, repeats, warmup, utilisation)
        for model, variant in chosen
    ]


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "costs: no rows"
    first = rows[0]
    lines = [
        f"costs: GFLOPs of one training step at batch {first['batch_size']} (forward + backward, "
        "torch.utils.flop_counter), measured s/image, peak memory of one step; PROJECTION of GPU-hours "
        f"for the preset's run at {first['utilisation']:.0%} of an {first['gpu']}'s dense bf16 peak "
        f"({first['gpu_bf16_peak_flops'] / 1e12:.0f} TFLOP/s)",
        f"{'preset':<20} {'total':>8} {'backbone':>9} {'aggreg.':>8} {'decoder':>8} {'rest':>7} "
        f"{'s/image':>8} {'peak MiB':>9} {'state MiB':>9} {'steps×batch':>12} {'GPU-h':>7}",
    ]
    for row in rows:
        flops = {name: value / 1e9 for name, value in row["flops"].items()}
        lines.append(
            f"{row['preset']:<20} {flops['total']:>8.1f} {flops['backbone']:>9.1f} {flops['aggregator']:>8.2f} "
            f"{flops['decoder']:>8.1f} {flops['rest']:>7.2f} {row['seconds_per_image']:>8.2f} "
            f"{row['peak_step_memory_mib']:>9.0f} {row['model_state_mib']:>9.0f} "
            f"{row['preset_steps']:>6}×{row['preset_batch_size']:<5} {row['projected_gpu_hours']:>7.1f}"
        )
    return "\n".join(lines)
