"""Schedules that are functions of a counter: key/value noise per iteration, pruning-path probability,
and the counter-based uniform draw that decides the path.

Paper §2.7 (progressive noise) and §2.8 (``clust_prob``). Modules call these with the current iteration or
optimiser step instead of keeping mutable schedule state.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

__all__ = ["counter_uniform", "noise_scale", "prune_probability"]

_LOW_32_BITS = 0xFFFFFFFF


def noise_scale(iteration: int, num_iterations: int, weight: float = 0.5) -> float:
    """Standard deviation of the noise added to the normed features at ``iteration`` (0-based).

    ``σ_t = weight·(1 − t/max(T−1, 1e-8))``: linear decay to zero at the last iteration, so T=3 gives
    0.5, 0.25, 0.0 for the default weight; with T=1 the only iteration gets ``weight``.
    """
    if num_iterations < 1:
        raise ValueError(f"num_iterations ({num_iterations}) must be at least 1")
    if not 0 <= iteration < num_iterations:
        raise ValueError(f"iteration ({iteration}) must lie in [0, num_iterations={num_iterations})")
    if not 0 <= weight < math.inf:  # also refuses NaN
        raise ValueError(f"noise weight ({weight}) must be non-negative and finite; use 0 to disable noise")
    return weight * (1.0 - iteration / max(num_iterations - 1, 1e-8))


def prune_probability(
    step: Int[Tensor, ""] | int, start: float = 0.02, growth: float = 1.001
) -> Float[Tensor, ""] | float:
    """Probability of taking the prune-and-mask path at optimiser ``step``: ``min(1, start·growth**step)``.

    A tensor step gives a float32 tensor on the same device (no host sync, usable under torch.compile);
    an int step gives a Python float. Computed in log space so huge steps saturate at 1 without overflow.
    """
    if not 0 < start <= 1:
        raise ValueError(f"start probability ({start}) must lie in (0, 1]")
    if not 0 < growth < math.inf:  # also refuses NaN
        raise ValueError(f"growth ({growth}) must be positive and finite (1.001 in the reference)")
    log_start, log_growth = math.log(start), math.log(growth)
    if isinstance(step, Tensor):
        exponent = step.to(torch.float32) * log_growth + log_start
        return torch.exp(exponent.clamp(max=0.0))
    exponent = step * log_growth + log_start
    return 1.0 if exponent >= 0 else math.exp(exponent)


def _mix32(value: Int[Tensor, "*shape"]) -> Int[Tensor, "*shape"]:
    """A 32-bit integer hash (two multiply-xorshift rounds, constants from Wellons' hash prospector).

    Values are held in int64 and both multipliers are below 2³¹, so no product overflows 63 bits.
    """
    value = value & _LOW_32_BITS
    value = value ^ (value >> 16)
    value = (value * 0x21F0AAAD) & _LOW_32_BITS
    value = value ^ (value >> 15)
    value = (value * 0x735A2D97) & _LOW_32_BITS
    return value ^ (value >> 15)


def counter_uniform(seed: Int[Tensor, ""], counter: Int[Tensor, ""]) -> Float[Tensor, ""]:
    """A uniform number in [0, 1) that depends only on ``(seed, counter)``: a counter-based draw.

    No generator state is read or advanced, so every process (and device) that holds the same seed and
    counter gets the same number, on the tensors' device without a host sync. Different counters give
    (for practical purposes) independent draws; 24 bits of resolution.
    """
    mixed = _mix32(_mix32(seed.long()) ^ _mix32(counter.long() + 0x9E3779B9))
    return (mixed >> 8).to(torch.float32) / float(1 << 24)
