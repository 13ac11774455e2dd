"""Learning-rate schedule as a pure function of the optimiser step (reference `CbLinearCosine`)."""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, *, peak: float, total_steps: int, warmup_steps: int, final: float = 0.0
) -> float:
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine down to ``final`` at ``total_steps``.

    ``step`` counts optimiser steps already taken, so the first update uses ``warmup_cosine(0, ...)``.
    The reference starts its warm-up at 0 as well (its first step has learning rate 0); we use
    ``(step + 1) / warmup_steps`` so that no step is wasted.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * progress))
