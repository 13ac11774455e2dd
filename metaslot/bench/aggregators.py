"""MetaSlot versus plain Slot Attention: train step (forward + backward + Adam + upkeep) and eval step.

Shapes are the presets' (paper configs): b=32, n=256 tokens, d=256, features 256, codebook 512, T=3, with
k=6 (VOC), 7 (COCO), 11 (ClevrTex) and buffer capacity 4·b·k. Targets on CPU: MetaSlot train ≤ 2.5× and
eval ≤ 1.4× Slot Attention (the reference measures 3.3× in training).

    python -m metaslot.bench.aggregators --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import attrs
import torch

from metaslot.models.aggregators import MetaSlot, MetaSlotSpec, SlotAttention, SlotAttentionSpec

BATCH_SIZE = 32
TOKENS = 256
WIDTH = 256
SHAPES = {"voc": 6, "coco": 7, "clevrtex": 11}


@attrs.frozen
class Case:
    dataset: str
    num_slots: int
    batch_size: int = BATCH_SIZE
    tokens: int = TOKENS
    width: int = WIDTH
    codebook_size: int = 512


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _interleaved_timings(
    steps: dict[str, Callable[[], None]], device: torch.device, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per call of each step, alternating between them so background load hits both alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    _synchronise(device)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            _synchronise(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def build_modules(case: Case, device: torch.device) -> dict[str, torch.nn.Module]:
    common = dict(num_slots=case.num_slots, slot_dim=case.width, feature_dim=case.width, num_iterations=3)
    return {
        "slot_attention": SlotAttention(SlotAttentionSpec(**common)).to(device),
        "metaslot": MetaSlot(
            MetaSlotSpec(
                **common,
                codebook_size=case.codebook_size,
                buffer_capacity=4 * case.batch_size * case.num_slots,
            )
        ).to(device),
    }


def _train_step(module: torch.nn.Module, features: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)

    def step() -> None:
        module.train()
        output = module(features)
        loss = output.slots.square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        module.update_codebook(output)

    return step


def _eval_step(module: torch.nn.Module, features: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.eval()
        with torch.no_grad():
            module(features)

    return step


def _summary(seconds: list[float]) -> dict[str, float]:
    return {
        "median_ms": 1e3 * statistics.median(seconds),
        "min_ms": 1e3 * min(seconds),
        "max_ms": 1e3 * max(seconds),
    }


def benchmark_case(case: Case, device: torch.device, repeats: int, warmup: int) -> dict:
    """Median/min/max milliseconds of each step for both aggregators, and MetaSlot's ratios."""
    torch.manual_seed(0)
    features = torch.randn(case.batch_size, case.tokens, case.width, device=device)
    row: dict = {"dataset": case.dataset, "k": case.num_slots, "device": str(device)}
    modules = build_modules(case, device)
    for phase, make_step in (("train", _train_step), ("eval", _eval_step)):
        steps = {name: make_step(module, features) for name, module in modules.items()}
        for name, seconds in _interleaved_timings(steps, device, repeats, warmup).items():
            row[f"{name}_{phase}"] = _summary(seconds)
    for phase in ("train", "eval"):
        row[f"ratio_{phase}"] = (
            row[f"metaslot_{phase}"]["median_ms"] / row[f"slot_attention_{phase}"]["median_ms"]
        )
    return row


def benchmark_aggregators(
    device: str = "cpu", quick: bool = False, repeats: int | None = None, warmup: int = 2
) -> list[dict]:
    """One row per preset shape (only VOC when ``quick``) with step timings and MetaSlot/Slot Attention ratios."""
    repeats = repeats if repeats is not None else (3 if quick else 10)
    if repeats < 1:
        raise ValueError(f"repeats ({repeats}) must be at least 1")
    datasets = ["voc"] if quick else list(SHAPES)
    cases = [Case(dataset, SHAPES[dataset]) for dataset in datasets]
    return [benchmark_case(case, torch.device(device), repeats, warmup) for case in cases]


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'shape':<9} {'k':>3} {'SA train':>10} {'MS train':>10} {'ratio':>6} "
        f"{'SA eval':>10} {'MS eval':>10} {'ratio':>6}   (median ms; targets: train ≤ 2.5×, eval ≤ 1.4×)"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"{row['dataset']:<9} {row['k']:>3} "
            f"{row['slot_attention_train']['median_ms']:>10.1f} {row['metaslot_train']['median_ms']:>10.1f} "
            f"{row['ratio_train']:>5.2f}× "
            f"{row['slot_attention_eval']['median_ms']:>10.1f} {row['metaslot_eval']['median_ms']:>10.1f} "
            f"{row['ratio_eval']:>5.2f}×"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="MetaSlot vs Slot Attention step times")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="VOC shape only, fewer repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    arguments = parser.parse_args(argv)
    rows = benchmark_aggregators(arguments.device, arguments.quick, arguments.repeats)
    print(format_table(rows))
    if arguments.json:
        with open(arguments.json, "w") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
