"""What decoding only the kept slots saves: DINOSAUR and the autoencoder with MetaSlot at forced kept
fractions, beside the same pipeline with Slot Attention, train step and evaluation forward.

The keep mask is forced (`ForcedKeep`: image i keeps ``round(f·k)`` slots starting at slot ``i mod k``)
so that the cost does not depend on what random weights happen to prune. Every variant of one model and
phase is timed interleaved (`time_interleaved`), and its peak memory is measured in one extra untimed
call (`metaslot.bench.memory`), its FLOPs in another (`torch.utils.flop_counter`, independent of the
machine's load). Ratios are against Slot Attention's median and FLOPs.

Run through the CLI: ``python -m cli.bench pipelines --sizes paper --kept-fraction 1.0 0.67 0.5``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import attrs
import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from metaslot.bench.flops import count_flops
from metaslot.bench.memory import peak_new_bytes
from metaslot.bench.pipelines import PipelineCase, Size, cases, training_step
from metaslot.bench.presets import PresetModels
from metaslot.bench.timing import time_interleaved
from metaslot.bench.variants import Variant
from metaslot.errors import ConfigError
from metaslot.models.aggregators import slot_attention_like
from metaslot.models.records import AggregatorOutput

KEPT_MODELS = ("dinosaur", "autoencoder")
"""The pipelines whose decoder decodes every slot on its own (the ones packing pays off for)."""


def kept_count(num_slots: int, fraction: float) -> int:
    """Slots kept per image at ``fraction`` (at least one): 0.67 of 6 is 4, 0.5 of 6 is 3."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"--kept-fraction {fraction} must lie in (0, 1]")
    return max(1, round(fraction * num_slots))


def forced_keep(batch: int, num_slots: int, fraction: float) -> Bool[Tensor, "b k"]:
    """Image i keeps ``kept_count`` consecutive slots from slot ``i mod k`` on (wrapping), so the kept rows
    are spread over the batch as real pruning spreads them."""
    slots = torch.arange(num_slots)[None, :]
    images = torch.arange(batch)[:, None]
    return (slots - images) % num_slots < kept_count(num_slots, fraction)


class ForcedKeep(nn.Module):
    """An aggregator whose keep mask is replaced by a fixed one (benchmark only; codes of newly kept slots
    stay -1, the upkeep reads only slots and keep)."""

    def __init__(self, aggregator: nn.Module, keep: Bool[Tensor, "b k"]) -> None:
        super().__init__()
        self.inner = aggregator
        self.register_buffer("keep", keep, persistent=False)

    def forward(
        self, features: Float[Tensor, "b n c"], generator: torch.Generator | None = None
    ) -> AggregatorOutput:
        output = self.inner(features, generator=generator)
        keep = self.keep[: output.keep.shape[0]]
        codes = torch.where(keep & output.keep, output.codes, torch.full_like(output.codes, -1))
        return dataclasses.replace(output, keep=keep, codes=codes)

    def update_codebook(self, output: AggregatorOutput) -> None:
        self.inner.update_codebook(output)

    def codebook_statistics(self) -> object:
        return self.inner.codebook_statistics()


def _pipelines(
    case: PipelineCase, batch: int, fractions: tuple[float, ...], device: torch.device
) -> dict[str, nn.Module]:
    """Slot Attention's pipeline, then MetaSlot's at each forced fraction (same spec otherwise)."""
    spec = case.spec
    torch.manual_seed(0)
    built = {
        "slot_attention": attrs.evolve(spec, aggregator=slot_attention_like(spec.aggregator)).build()  # type: ignore[misc]
    }
    num_slots = spec.aggregator.num_slots  # type: ignore[attr-defined]
    for fraction in fractions:
        torch.manual_seed(0)
        pipeline = spec.build()  # type: ignore[attr-defined]
        keep = forced_keep(batch, num_slots, fraction)
        pipeline.frontend.aggregator = ForcedKeep(pipeline.frontend.aggregator, keep)
        built[f"metaslot@{fraction:g}"] = pipeline
    return {name: pipeline.to(device) for name, pipeline in built.items()}


def _eval_step(pipeline: nn.Module, images: Tensor, variant: Variant) -> Callable[[], None]:
    def step() -> None:
        pipeline.eval()
        with torch.no_grad(), variant.autocast(images.device):
            pipeline(images)

    return step


def benchmark_kept_fractions(
    sizes: tuple[Size, ...],
    device: torch.device,
    variant: Variant,
    fractions: tuple[float, ...],
    repeats: int,
    warmup: int,
    presets: PresetModels,
    batch_size: int | None = None,
) -> list[dict]:
    """One row per model, size, phase and aggregator (Slot Attention, MetaSlot at each fraction)."""
    for fraction in fractions:
        kept_count(1, fraction)  # refuses fractions outside (0, 1] before anything is built
    rows: list[dict] = []
    for case in cases(sizes, presets, models=KEPT_MODELS):
        batch = batch_size or case.batch_size
        modules = _pipelines(case, batch, fractions, device)
        images = torch.randn(batch, 3, case.image_size, case.image_size, device=device)
        num_slots = case.spec.aggregator.num_slots  # type: ignore[attr-defined]
        for phase, make_step in (("train", training_step), ("eval", _eval_step)):
            steps = {name: make_step(module, images, variant) for name, module in modules.items()}
            timings = time_interleaved(steps, device=device, repeats=repeats, warmup=warmup)
            baseline = timings["slot_attention"].median
            flops = {name: count_flops(step) for name, step in steps.items()}
            for name, step in steps.items():
                fraction = None if name == "slot_attention" else float(name.split("@")[1])
                rows.append(
                    {
                        "model": case.model,
                        "size": case.size,
                        "batch_size": batch,
                        "image_size": case.image_size,
                        "phase": phase,
                        "variant": variant.name,
                        "aggregator": name.split("@")[0],
                        "kept_fraction": fraction,
                        "kept_slots": num_slots if fraction is None else kept_count(num_slots, fraction),
                        "num_slots": num_slots,
                        "step": timings[name].milliseconds(),
                        "images": timings[name].throughput(batch),
                        "ratio_to_slot_attention": timings[name].median / baseline,
                        "gflops": flops[name] / 1e9,
                        "flop_ratio_to_slot_attention": flops[name] / flops["slot_attention"],
                        "peak_memory_mib": peak_new_bytes(step, device) / 2**20,
                    }
                )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "kept fractions: MetaSlot with a forced keep mask beside Slot Attention (interleaved); "
        "images/s median [min–max], ratio = ms/step over Slot Attention's; peak = tensors made in one step",
        f"{'model':<12} {'size':<6} {'batch':>5} {'phase':<6} {'aggregator':<15} {'kept':>5} "
        f"{'images/s':>24} {'ms/step':>10} {'ratio':>6} {'peak MiB':>9} {'GFLOPs':>8} {'FLOP ratio':>10}",
    ]
    for row in rows:
        images = row["images"]
        spread = f"{images['median_per_s']:.2f} [{images['min_per_s']:.2f}–{images['max_per_s']:.2f}]"
        kept = f"{row['kept_slots']}/{row['num_slots']}"
        name = row["aggregator"]
        if row["kept_fraction"] is not None:
            name += f"@{row['kept_fraction']:g}"
        lines.append(
            f"{row['model']:<12} {row['size']:<6} {row['batch_size']:>5} {row['phase']:<6} {name:<15} "
            f"{kept:>5} {spread:>24} {row['step']['median_ms']:>10.1f} "
            f"{row['ratio_to_slot_attention']:>5.2f}× {row['peak_memory_mib']:>9.1f} {row['gflops']:>8.1f} "
            f"{row['flop_ratio_to_slot_attention']:>9.2f}×"
        )
    return "\n".join(lines)
