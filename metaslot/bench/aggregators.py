"""MetaSlot versus plain Slot Attention: train step (forward + backward + Adam + upkeep) and eval step.

The aggregator specs are the presets' (paper configs, ``dinosaur_<data>``): b=32, n=256 tokens of width
256, slot width 256, codebook 512, T=3, ring buffer 4·b·k, with k=6 (VOC), 7 (COCO) and 11 (ClevrTex).
Targets on CPU: MetaSlot train ≤ 2.5× and eval ≤ 1.4× Slot Attention (the reference measures 3.3× in
training). On CUDA, :func:`check_sync_free` runs MetaSlot's training forward and upkeep with
``torch.cuda.set_sync_debug_mode("error")``.

Run through the CLI: ``python -m cli.bench aggregators --quick``, which hands in the presets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import attrs
import torch
from jaxtyping import Float
from torch import Tensor

from metaslot.bench.presets import PresetModels
from metaslot.bench.timing import Timing, time_interleaved
from metaslot.bench.variants import Variant
from metaslot.models.aggregators import MetaSlotSpec, SlotAttentionSpec, slot_attention_like
from metaslot.models.aggregators.specs import AttentionPath

BATCH_SIZE = 32
TOKENS = 256
DATASETS = ("voc", "coco", "clevrtex")
Scale = Literal["smoke", "quick", "full"]
SETTLE_LIMIT = 64
"""At most this many upkeep calls to get past the one-off k-means initialisation."""


@attrs.frozen
class Case:
    """One shape to time: both aggregators' specs and the features they get."""

    dataset: str
    metaslot: MetaSlotSpec
    slot_attention: SlotAttentionSpec
    batch_size: int = BATCH_SIZE
    tokens: int = TOKENS

    @property
    def num_slots(self) -> int:
        return self.metaslot.num_slots


def preset_case(dataset: str, presets: PresetModels) -> Case:
    """The paper shape of ``dataset``: the aggregator of the ``dinosaur_<dataset>`` preset, both kinds."""
    metaslot = presets("dinosaur", dataset).aggregator  # type: ignore[attr-defined]
    return Case(dataset=dataset, metaslot=metaslot, slot_attention=slot_attention_like(metaslot))


def smoke_case() -> Case:
    """A minute shape that only checks the benchmark runs (its numbers mean nothing)."""
    metaslot = MetaSlotSpec(
        num_slots=3, slot_dim=8, feature_dim=8, num_iterations=2, codebook_size=8, buffer_capacity=12
    )
    return Case("smoke", metaslot, slot_attention_like(metaslot), batch_size=2, tokens=6)


def cases(scale: Scale, presets: PresetModels) -> list[Case]:
    """VOC only for ``quick``, the three paper shapes for ``full``."""
    if scale == "smoke":
        return [smoke_case()]
    return [preset_case(dataset, presets) for dataset in (DATASETS[:1] if scale == "quick" else DATASETS)]


def with_attention_path(case: Case, path: AttentionPath) -> Case:
    """The same shape with both aggregators reading the features along ``path``."""
    return attrs.evolve(
        case,
        metaslot=attrs.evolve(case.metaslot, attention_path=path),
        slot_attention=attrs.evolve(case.slot_attention, attention_path=path),
    )


def build_modules(case: Case, device: torch.device) -> dict[str, torch.nn.Module]:
    return {
        "slot_attention": case.slot_attention.build().to(device),
        "metaslot": case.metaslot.build().to(device),
    }


def _train_step(
    module: torch.nn.Module, features: Float[Tensor, "b n c"], variant: Variant
) -> Callable[[], None]:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    forward = variant.prepare(module)

    def step() -> None:
        module.train()
        with variant.autocast(features.device):
            output = forward(features)
            loss = output.slots.float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        module.update_codebook(output)

    return step


def _eval_step(
    module: torch.nn.Module, features: Float[Tensor, "b n c"], variant: Variant
) -> Callable[[], None]:
    forward = variant.prepare(module)

    def step() -> None:
        module.eval()
        with torch.no_grad(), variant.autocast(features.device):
            forward(features)

    return step


def _settle_codebook(module: torch.nn.Module, features: Float[Tensor, "b n c"]) -> None:
    """Run MetaSlot's upkeep until its one-off k-means initialisation is done, so timings are the steady
    state (the k-means waits for ``min(codebook, buffer)`` images; re-using one batch's slots is enough)."""
    if not isinstance(module.spec, MetaSlotSpec) or not module.spec.kmeans_init:
        return
    module.train()
    with torch.no_grad():
        output = module(features)
    for _ in range(SETTLE_LIMIT):
        if bool(module.codebook_state.kmeans_done):
            return
        module.update_codebook(output)


def benchmark_case(case: Case, device: torch.device, variant: Variant, repeats: int, warmup: int) -> dict:
    """Each step's min/median/max milliseconds for both aggregators, and MetaSlot's ratios of the medians."""
    torch.manual_seed(0)
    features = torch.randn(case.batch_size, case.tokens, case.metaslot.feature_dim, device=device)
    modules = build_modules(case, device)
    row: dict = {
        "dataset": case.dataset,
        "k": case.num_slots,
        "batch_size": case.batch_size,
        "tokens": case.tokens,
        "width": case.metaslot.slot_dim,
        "codebook_size": case.metaslot.codebook_size,
        "attention_path": case.metaslot.attention_path,
        "variant": variant.name,
    }
    timings: dict[str, Timing] = {}
    for phase, make_step in (("train", _train_step), ("eval", _eval_step)):
        steps = {name: make_step(module, features, variant) for name, module in modules.items()}
        if phase == "train":
            _settle_codebook(modules["metaslot"], features)
        for name, timing in time_interleaved(steps, device=device, repeats=repeats, warmup=warmup).items():
            timings[f"{name}_{phase}"] = timing
            row[f"{name}_{phase}"] = timing.milliseconds()
    for phase in ("train", "eval"):
        row[f"ratio_{phase}"] = (
            timings[f"metaslot_{phase}"].median / timings[f"slot_attention_{phase}"].median
        )
    return row


def benchmark_aggregators(
    scale: Scale,
    device: torch.device,
    variants: list[Variant],
    repeats: int,
    warmup: int,
    presets: PresetModels,
    attention_paths: tuple[AttentionPath, ...] = ("auto", "projected"),
) -> list[dict]:
    """One row per shape, attention path and variant ('projected' is the reference's formulation)."""
    return [
        benchmark_case(with_attention_path(case, path), device, variant, repeats, warmup)
        for case in cases(scale, presets)
        for path in attention_paths
        for variant in variants
    ]


def check_sync_free(device: torch.device, scale: Scale, presets: PresetModels) -> dict:
    """MetaSlot train forward + upkeep under ``set_sync_debug_mode("error")``: any host sync fails it.

    Runs enough steps to fill the ring buffer and pass the one-off k-means (the costliest upkeep branch).
    """
    if device.type != "cuda":
        return {"status": "skipped", "reason": f"needs a CUDA device, ran on {device.type}"}
    case = cases(scale, presets)[0]
    torch.manual_seed(0)
    module = case.metaslot.build().to(device).train()
    features = torch.randn(case.batch_size, case.tokens, case.metaslot.feature_dim, device=device)
    vectors_per_step = case.batch_size * case.num_slots
    steps = 3 * math.ceil(case.metaslot.buffer_capacity / vectors_per_step) + 2
    output = module(features)  # first call: lazy CUDA/cuBLAS initialisation is not the code under test
    module.update_codebook(output)
    torch.cuda.synchronize(device)
    previous = torch.cuda.get_sync_debug_mode()
    try:
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(steps):
            output = module(features)
            module.update_codebook(output)
    except RuntimeError as error:
        return {"status": "fail", "steps": steps, "error": " ".join(str(error).split())[:300]}
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize(device)
    return {
        "status": "pass",
        "steps": steps,
        "kmeans_covered": bool(module.codebook_state.kmeans_done),
        "shape": case.dataset,
    }


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'shape':<9} {'k':>3} {'path':<13} {'variant':<13} {'SA train':>22} {'MS train':>22} {'ratio':>6}  "
        f"{'SA eval':>22} {'MS eval':>22} {'ratio':>6}"
    )
    lines = [
        "aggregators: ms per step, median [min–max]; ratio = MetaSlot/Slot Attention medians "
        "(targets on CPU: train ≤ 2.5×, eval ≤ 1.4×)",
        header,
    ]
    for row in rows:
        lines.append(
            f"{row['dataset']:<9} {row['k']:>3} {row['attention_path']:<13} {row['variant']:<13} "
            f"{_spread(row['slot_attention_train']):>22} {_spread(row['metaslot_train']):>22} "
            f"{row['ratio_train']:>5.2f}×  "
            f"{_spread(row['slot_attention_eval']):>22} {_spread(row['metaslot_eval']):>22} "
            f"{row['ratio_eval']:>5.2f}×"
        )
    return "\n".join(lines)


def _spread(milliseconds: dict[str, float]) -> str:
    return f"{milliseconds['median_ms']:.1f} [{milliseconds['min_ms']:.1f}–{milliseconds['max_ms']:.1f}]"
