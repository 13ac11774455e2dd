"""FLOPs of one call with ``torch.utils.flop_counter`` (matrix products, convolutions, attention; 2 per
multiply-add; no elementwise work), counting the total only.

``FlopCounterMode`` also tracks modules, registering a gradient hook on every module output that asks
for a gradient; a module that returns a parameter as it is (a leaf without a gradient function, as an
initialiser's mean at evaluation) makes that fail. The totals need no module tracking, so it is
replaced by one that reports every count under "Global".
"""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.flop_counter import FlopCounterMode


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker: no hooks, every count goes to the total."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exception: object) -> None:
        return None


def count_flops(call: Callable[[], object]) -> float:
    """Total FLOPs of the operators ``call`` runs (forward, and backward if it runs one)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()  # type: ignore[assignment]
    with counter:
        call()
    return float(counter.get_total_flops())
