"""The shared attrs validators: each accepts its boundary values and names the field when it refuses."""

from __future__ import annotations

import math

import attrs
import pytest

from metaslot import validators
from metaslot.errors import ConfigError
from metaslot.eval_settings import EvalSpec
from metaslot.train.config import LoopSpec, OptimSpec, ScheduleSpec


def one_field_spec(validator: validators.Validator) -> type:
    """A frozen attrs class whose only field, ``width``, is checked by ``validator``."""

    @attrs.frozen
    class Spec:
        width: object = attrs.field(validator=validator)

    return Spec


# (validator, values it accepts, values it refuses, what the message says is expected)
CASES = [
    (validators.positive, [1e-8, 0.5, 1, 7], [0, 0.0, -1e-8, -3], "must be positive"),
    (validators.positive_or_none, [None, 1e-8, 1, 7], [0, 0.0, -1], "must be positive"),
    (validators.at_least_one, [1, 2, 64], [0, -1], "must be at least 1"),
    (validators.non_negative, [0, 0.0, 1e-8, 5], [-1, -1e-8], "must be >= 0"),
    (validators.fraction, [0, 0.0, 0.5, 0.999], [1, 1.0, -0.01, 1.5, math.nan], "must be in [0, 1)"),
    (
        validators.positive_ints,
        [(1,), (1, 2, 64)],
        [(), (0,), (3, 0, 3), (-1,)],
        "must be a non-empty tuple of positive integers",
    ),
    (
        validators.odd_positive,
        [1, 3, 5],
        [0, 2, 4, -1],
        "must be a positive odd integer (keeps 'same' padding)",
    ),
]
ACCEPTED = [(check, value) for check, good, _, _ in CASES for value in good]
REFUSED = [(check, value, expected) for check, _, bad, expected in CASES for value in bad]


def _name(value: object) -> str:
    return getattr(value, "__name__", repr(value))


@pytest.mark.parametrize(("check", "value"), ACCEPTED, ids=[f"{_name(c)}-{v!r}" for c, v in ACCEPTED])
def test_accepts_values_in_range(check: validators.Validator, value: object) -> None:
    assert one_field_spec(check)(value).width == value


@pytest.mark.parametrize(
    ("check", "value", "expected"), REFUSED, ids=[f"{_name(c)}-{v!r}" for c, v, _ in REFUSED]
)
def test_refuses_values_out_of_range_naming_field_and_value(
    check: validators.Validator, value: object, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        one_field_spec(check)(value)
    assert str(error.value) == f"width {expected}, got {value}"


@pytest.mark.parametrize(
    "check", [validators.positive, validators.at_least_one, validators.non_negative, validators.fraction]
)
@pytest.mark.parametrize("value", [None, "3"])
def test_refuses_what_is_not_a_number(check: validators.Validator, value: object) -> None:
    """A null or a string in a config file is named at once, not left to fail as a TypeError later."""
    with pytest.raises(ConfigError, match=rf"^width must be a number, got {value!r}$"):
        one_field_spec(check)(value)


def test_training_options_keep_raising_config_error() -> None:
    """A bad training option is a ConfigError (a ValueError too), like every spec's."""
    with pytest.raises(ConfigError, match=r"^steps must be positive, got 0$"):
        LoopSpec(steps=0)
    with pytest.raises(ConfigError, match=r"^weight_decay must be >= 0, got -1"):
        OptimSpec(weight_decay=-1.0)
    with pytest.raises(ConfigError, match=r"^warmup_fraction must be in \[0, 1\), got 1.0$"):
        ScheduleSpec(warmup_fraction=1.0)
    with pytest.raises(ConfigError, match=r"^steps must be a number, got None$"):
        LoopSpec(steps=None)  # type: ignore[arg-type]
    assert OptimSpec(clip_norm=None).clip_norm is None
    assert EvalSpec(max_batches=None, pictures=0).pictures == 0
