"""What the smaller noise draws of MetaSlot's stage 1 save: one interleaved run of three training steps
at the VOC aggregator shape (b32 k6 n256 d256, codebook 512): Slot Attention, MetaSlot as it is (stage 1
draws b·n·k + b·k·c normals per noisy read-out, `noisy_feature_space_slot_attention`), and MetaSlot with
stage 1 drawing the full b·n·c unit noise as before (the same step with that one function swapped for
the full draw, so nothing else differs).

``python -m metaslot.bench.noise_draws [--repeats 10] [--threads 1]``; prints medians and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator

import torch

from metaslot.bench.aggregators import Case, _settle_codebook, _train_step
from metaslot.bench.timing import time_interleaved
from metaslot.bench.variants import Variant
from metaslot.models.aggregators import MetaSlotSpec, slot_attention_like
from metaslot.ops import attention, slot_attention

VOC = MetaSlotSpec(num_slots=6, slot_dim=256, feature_dim=256, codebook_size=512, buffer_capacity=4 * 32 * 6)
"""The aggregator of the dinosaur_voc preset (the aggregators group's VOC row)."""


def _full_draw(queries, features, key_weight, value_weight, sigma, keep=None, epsilon=1e-5, generator=None):  # noqa: ANN001, ANN202
    """The read-out as it was: b·n·c unit normals added to the features."""
    noise = torch.randn(features.shape, generator=generator, device=features.device, dtype=features.dtype)
    noisy = torch.add(features, noise, alpha=sigma)
    return attention.feature_space_slot_attention(queries, noisy, key_weight, value_weight, keep, epsilon)


@contextlib.contextmanager
def full_stage_one_draws() -> Iterator[None]:
    """Within the block, stage 1 draws the full b·n·c noise (the values MetaSlot drew before)."""
    reduced = slot_attention.noisy_feature_space_slot_attention
    slot_attention.noisy_feature_space_slot_attention = _full_draw  # type: ignore[assignment]
    try:
        yield
    finally:
        slot_attention.noisy_feature_space_slot_attention = reduced


def _with_full_draws(step: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        with full_stage_one_draws():
            step()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metaslot.bench.noise_draws")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    arguments = parser.parse_args(argv)
    torch.set_num_threads(arguments.threads)
    case = Case("voc", VOC, slot_attention_like(VOC))
    device = torch.device("cpu")
    torch.manual_seed(0)
    features = torch.randn(case.batch_size, case.tokens, case.metaslot.feature_dim)
    slot_attention_module = case.slot_attention.build()
    reduced_module = case.metaslot.build()
    full_module = case.metaslot.build()
    for module in (reduced_module, full_module):
        _settle_codebook(module, features)
    fp32 = Variant()
    steps = {
        "slot_attention": _train_step(slot_attention_module, features, fp32),
        "metaslot": _train_step(reduced_module, features, fp32),
        "metaslot_full_draws": _with_full_draws(_train_step(full_module, features, fp32)),
    }
    timings = time_interleaved(steps, device=device, repeats=arguments.repeats, warmup=arguments.warmup)
    baseline = timings["slot_attention"].median
    for name, timing in timings.items():
        spread = timing.milliseconds()
        print(
            f"{name:<22} train step {spread['median_ms']:8.1f} ms [{spread['min_ms']:.1f}–{spread['max_ms']:.1f}]"
            f"  ratio to Slot Attention {timing.median / baseline:.2f}×"
        )
    print(
        f"full draws / reduced draws: {timings['metaslot_full_draws'].median / timings['metaslot'].median:.2f}×"
    )


if __name__ == "__main__":
    main()
