"""attrs field validators shared by the specs: one function and one message for each allowed range.

Every spec module used to carry its own ``_positive`` or ``_non_negative``, and the copies drifted
apart ("must be > 0", "must be positive", "must be ≥ 0", "must be non-negative"). Now the same
mistake reads the same in every spec. `positive` (> 0, any number) and `at_least_one` (>= 1, counts)
stay separate on purpose: they differ for a value such as 0.5. Each validator raises
`metaslot.errors.ConfigError` (a ``ValueError``) naming the field and the offending value, so a bad
flag is one line on the command line. A check that belongs to one field stays next to that field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from metaslot.errors import ConfigError

__all__ = [
    "Validator",
    "at_least_one",
    "fraction",
    "non_negative",
    "odd_positive",
    "positive",
    "positive_ints",
    "positive_or_none",
]

Validator = Callable[[object, attrs.Attribute, Any], None]
"""What attrs calls with ``(instance, attribute, value)``; raises when ``value`` is out of range."""


def _require_number(attribute: attrs.Attribute, value: object, expected: str) -> None:
    # attrs does not check types: a null in a config file would otherwise surface as a TypeError later.
    if not isinstance(value, (int, float)):
        raise ConfigError(f"{attribute.name} must be a number, got {value!r}")
    # NaN passes every comparison test below (nan <= 0 is False), and no field means anything by inf.
    if isinstance(value, float) and math.isnan(value):
        raise ConfigError(f"{attribute.name} {expected}, got {value}")
    if isinstance(value, float) and math.isinf(value):
        raise ConfigError(f"{attribute.name} {expected} and finite, got {value}")


def positive(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """Greater than 0, for counts and real-valued rates alike (a learning rate of 1e-4 passes)."""
    _require_number(attribute, value, "must be positive")
    if value <= 0:
        raise ConfigError(f"{attribute.name} must be positive, got {value}")


def positive_or_none(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """`positive`, or None where None means "no limit" (a batch cap, clipping off)."""
    if value is not None:
        positive(instance, attribute, value)


def at_least_one(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """1 or more, for integer counts and sizes (image side, number of layers)."""
    _require_number(attribute, value, "must be at least 1")
    if value < 1:
        raise ConfigError(f"{attribute.name} must be at least 1, got {value}")


def non_negative(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """0 or more, for loss weights, worker counts and seeds where 0 means "off" or "none"."""
    _require_number(attribute, value, "must be >= 0")
    if value < 0:
        raise ConfigError(f"{attribute.name} must be >= 0, got {value}")


def fraction(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """In [0, 1), for dropout and warm-up shares: 1 would drop everything or never leave warm-up."""
    _require_number(attribute, value, "must be in [0, 1)")
    if not 0 <= value < 1:
        raise ConfigError(f"{attribute.name} must be in [0, 1), got {value}")


def positive_ints(instance: object, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    """A non-empty tuple of counts of at least 1 (channels per layer, strides)."""
    if len(value) == 0 or any(item < 1 for item in value):
        raise ConfigError(f"{attribute.name} must be a non-empty tuple of positive integers, got {value}")


def odd_positive(instance: object, attribute: attrs.Attribute, value: int) -> None:
    """An odd kernel size of at least 1, so ``padding=kernel_size // 2`` keeps the spatial size."""
    if value < 1 or value % 2 == 0:
        raise ConfigError(
            f"{attribute.name} must be a positive odd integer (keeps 'same' padding), got {value}"
        )
