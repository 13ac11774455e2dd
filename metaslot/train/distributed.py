"""Kept for existing imports: torchrun integration lives in `metaslot.runtime.distributed`."""

from __future__ import annotations

from metaslot.runtime.distributed import (
    DistributedContext,
    all_reduce_sum,
    barrier,
    context_from_environment,
    start,
    stop,
)

__all__ = ["DistributedContext", "all_reduce_sum", "barrier", "context_from_environment", "start", "stop"]
