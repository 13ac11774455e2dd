"""Wall-clock timing shared by every benchmark group: warm-up, repeats, CUDA synchronisation, min/median/max.

Steps that are compared with each other (MetaSlot against Slot Attention) are timed interleaved, one
call of each per round, so a background job slowing the machine hits all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from metaslot.errors import ConfigError


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call (warm-up excluded), in the order they ran."""

    seconds: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.seconds:
            raise ValueError("a Timing needs at least one measured call; raise repeats to 1 or more")

    @property
    def minimum(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def maximum(self) -> float:
        return max(self.seconds)

    def milliseconds(self) -> dict[str, float]:
        """``{min_ms, median_ms, max_ms, repeats}`` for tables and JSON."""
        return {
            "min_ms": 1e3 * self.minimum,
            "median_ms": 1e3 * self.median,
            "max_ms": 1e3 * self.maximum,
            "repeats": len(self.seconds),
        }

    def throughput(self, items: int) -> dict[str, float]:
        """``items`` per second: the slowest call gives the minimum rate, the fastest the maximum."""
        return {
            "min_per_s": items / max(self.maximum, 1e-12),
            "median_per_s": items / max(self.median, 1e-12),
            "max_per_s": items / max(self.minimum, 1e-12),
            "repeats": len(self.seconds),
        }


def synchronise(device: torch.device) -> None:
    """Wait for queued kernels, so a timer stopped after this measures the work and not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_counts(repeats: int, warmup: int) -> None:
    if repeats < 1:
        raise ConfigError(f"repeats ({repeats}) must be at least 1: pass --repeats 1 or more")
    if warmup < 0:
        raise ConfigError(f"warm-up calls ({warmup}) cannot be negative: pass 0 or more")


def time_interleaved(
    steps: Mapping[str, Callable[[], object]],
    *,
    device: torch.device,
    repeats: int,
    warmup: int,
) -> dict[str, Timing]:
    """Time each step ``repeats`` times after ``warmup`` untimed calls, alternating between the steps."""
    check_counts(repeats, warmup)
    for _ in range(warmup):
        for step in steps.values():
            step()
    synchronise(device)
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            synchronise(device)
            seconds[name].append(time.perf_counter() - start)
    return {name: Timing(tuple(values)) for name, values in seconds.items()}


def time_step(step: Callable[[], object], *, device: torch.device, repeats: int, warmup: int) -> Timing:
    """Time one step (see :func:`time_interleaved`)."""
    return time_interleaved({"step": step}, device=device, repeats=repeats, warmup=warmup)["step"]
