"""Every attrs field validator of the specs: one function and one message for each allowed range.

Every spec module used to carry its own ``_positive`` or ``_non_negative``, and the copies drifted
apart ("must be > 0", "must be positive", "must be ≥ 0", "must be non-negative"); one check raised a
plain ``ValueError``, so its flag printed a traceback. Now the same mistake reads the same in every
spec. `positive` (> 0, any number) and `at_least_one` (>= 1, counts) stay separate on purpose: they
differ for a value such as 0.5. Each validator raises `metaslot.errors.ConfigError` (a ``ValueError``)
naming the field and the offending value, so a bad flag is one line on the command line. Checks that
relate two fields take the other field's name (`not_below`, `divides`, `multiples_of`); a spec's
``__attrs_post_init__`` checks only what spans several fields in a way no validator here says.
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
    "at_most",
    "divides",
    "fraction",
    "holds",
    "known",
    "multiples_of",
    "non_negative",
    "not_above",
    "not_below",
    "odd_positive",
    "one_of",
    "or_none",
    "positive",
    "positive_ints",
    "positive_or_none",
    "probability",
    "same_length_as",
    "subset_of",
    "unit_interval",
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


def unit_interval(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """In [0, 1], for rates and decays where both ends mean something (0: never, 1: always)."""
    _require_number(attribute, value, "must be in [0, 1]")
    if not 0 <= value <= 1:
        raise ConfigError(f"{attribute.name} must be in [0, 1], got {value}")


def probability(instance: object, attribute: attrs.Attribute, value: Any) -> None:
    """In (0, 1], for a share or probability that must leave something (a scale, a start probability)."""
    _require_number(attribute, value, "must be in (0, 1]")
    if not 0 < value <= 1:
        raise ConfigError(f"{attribute.name} must be in (0, 1], got {value}")


def one_of(*choices: str) -> Validator:
    """One of the named ``choices`` (a ``Literal`` field: attrs does not check those)."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if value not in choices:
            raise ConfigError(
                f"unknown {attribute.name} {value!r}: choose one of {', '.join(repr(c) for c in choices)}"
            )

    return check


def subset_of(choices: tuple[str, ...]) -> Validator:
    """A non-empty tuple of names from ``choices``."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if not value or any(item not in choices for item in value):
            raise ConfigError(f"{attribute.name} {value} must be a non-empty subset of {choices}")

    return check


def at_most(limit: int, why: str) -> Validator:
    """At most ``limit``; ``why`` says where the limit comes from."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if value > limit:
            raise ConfigError(f"{attribute.name} ({value}) exceeds {limit}, {why}: lower it")

    return check


def not_below(other: str, fix: str) -> Validator:
    """At least the value of the field ``other`` (declared before this one); ``fix`` says what to change."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        bound = getattr(instance, other)
        if value < bound:
            raise ConfigError(f"{attribute.name} ({value}) is below {other} ({bound}): {fix}")

    return check


def divides(other: str) -> Validator:
    """A positive divisor of the field ``other`` (attention heads of a width)."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        whole = getattr(instance, other)
        if value <= 0 or whole % value:
            raise ConfigError(f"{attribute.name} ({value}) must be positive and divide {other} ({whole})")

    return check


def multiples_of(other: str, min_length: int, why: str) -> Validator:
    """A tuple of at least ``min_length`` positive multiples of the field ``other`` (channels of groups)."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if len(value) < min_length:
            raise ConfigError(f"{attribute.name} needs at least {min_length} levels ({why}), got {value}")
        step = getattr(instance, other)
        bad = [item for item in value if item <= 0 or item % step]
        if bad:
            raise ConfigError(
                f"{attribute.name} {value}: {bad} not divisible by {other} ({step}); use multiples of {step}"
            )

    return check


def known(is_known: Callable[[str], bool], what: str, examples: tuple[str, ...]) -> Validator:
    """A name ``is_known`` accepts (a timm model); the message offers ``examples``."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if not is_known(value):
            raise ConfigError(
                f"unknown {what} {value!r}: pass a name such as {', '.join(repr(n) for n in examples)}"
            )

    return check


def same_length_as(other: str, each: str) -> Validator:
    """A tuple with one entry per entry of the tuple field ``other``, each of which is one ``each``."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        others = getattr(instance, other)
        if len(value) != len(others):
            raise ConfigError(
                f"{attribute.name} {value} must have one entry per {each} ({other} {others}): "
                f"pass {len(others)} {attribute.name}"
            )

    return check


def holds(rule: Callable[[Any], None]) -> Validator:
    """Runs ``rule(spec)``, a check across fields that only the spec's own arithmetic can state (the VQ
    token grid of an image size); ``rule`` raises `ConfigError`. A validator, not ``__attrs_post_init__``,
    so the command line can switch it off while it parses the flags and run it once afterwards."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        rule(instance)

    return check


def or_none(check: Validator) -> Validator:
    """``check``, or None where None means "not set" (the protocol's or the data's own value)."""

    def optional(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        if value is not None:
            check(instance, attribute, value)

    return optional


def not_above(other: str, fix: str) -> Validator:
    """At most the value of the field ``other`` (declared before this one); ``fix`` says what it means."""

    def check(instance: object, attribute: attrs.Attribute, value: Any) -> None:
        bound = getattr(instance, other)
        if value > bound:
            raise ConfigError(f"{attribute.name} ({value}) is above {other} ({bound}): {fix}")

    return check
