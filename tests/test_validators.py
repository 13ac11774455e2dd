"""The shared attrs validators: each accepts its boundary values and names the field when it refuses."""

from __future__ import annotations

import ast
import math
from pathlib import Path

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
    (validators.unit_interval, [0, 0.0, 0.5, 1, 1.0], [-0.01, 1.01, math.nan], "must be in [0, 1]"),
    (validators.probability, [1e-9, 0.5, 1, 1.0], [0, 0.0, -0.5, 1.01, math.nan], "must be in (0, 1]"),
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


def two_field_spec(validator: validators.Validator) -> type:
    """A frozen attrs class with ``limit`` and ``width``, whose ``width`` is checked by ``validator``."""

    @attrs.frozen
    class Spec:
        limit: object
        width: object = attrs.field(validator=validator)

    return Spec


@pytest.mark.parametrize(
    ("check", "limit", "good", "bad", "message"),
    [
        (validators.not_below("limit", "raise it"), 3, [3, 4], [2], "width (2) is below limit (3): raise it"),
        (
            validators.divides("limit"),
            12,
            [1, 4, 12],
            [5, 0],
            "width (5) must be positive and divide limit (12)",
        ),
        (
            validators.multiples_of("limit", 2, "two levels"),
            8,
            [(8, 16), (8, 8, 24)],
            [(8, 12), (8,)],
            "width (8, 12): [12] not divisible by limit (8); use multiples of 8",
        ),
        (
            validators.same_length_as("limit", "layer"),
            (1, 2),
            [(5, 6)],
            [(5,)],
            "width (5,) must have one entry per layer (limit (1, 2)): pass 2 width",
        ),
    ],
)
def test_checks_against_another_field(check, limit, good, bad, message) -> None:
    spec = two_field_spec(check)
    for value in good:
        assert spec(limit, value).width == value
    for value in bad:
        with pytest.raises(ConfigError):
            spec(limit, value)
    with pytest.raises(ConfigError) as error:
        spec(limit, bad[0])
    assert str(error.value) == message


def test_choices_names_and_rules_raise_config_errors() -> None:
    choice = one_field_spec(validators.one_of("a", "b"))
    assert choice("b").width == "b"
    with pytest.raises(ConfigError, match=r"^unknown width 'c': choose one of 'a', 'b'$"):
        choice("c")
    subset = one_field_spec(validators.subset_of(("a", "b")))
    assert subset(("b",)).width == ("b",)
    for value in [(), ("a", "z")]:
        with pytest.raises(ConfigError, match="must be a non-empty subset"):
            subset(value)
    with pytest.raises(ConfigError, match=r"^width \(9\) exceeds 8, the colours: lower it$"):
        one_field_spec(validators.at_most(8, "the colours"))(9)
    with pytest.raises(ConfigError, match=r"^unknown model 'x': pass a name such as 'y'$"):
        one_field_spec(validators.known(lambda name: name == "y", "model", ("y",)))("x")

    def rule(spec: object) -> None:
        raise ConfigError("broken")

    with pytest.raises(ConfigError, match="^broken$"):
        one_field_spec(validators.holds(rule))(1)
    with attrs.validators.disabled():  # the command line parses first, then checks: rules too
        assert one_field_spec(validators.holds(rule))(1).width == 1


def test_spec_fields_raise_config_errors_not_plain_value_errors() -> None:
    from metaslot.data.shapes import ShapesSpec
    from metaslot.models.aggregators import SlotAttentionSpec

    with pytest.raises(ConfigError, match=r"^mlp_dropout must be in \[0, 1\), got 1.0$"):
        SlotAttentionSpec(num_slots=2, slot_dim=4, feature_dim=4, mlp_dropout=1.0)
    with pytest.raises(ConfigError, match="unknown background 'grey'"):
        ShapesSpec(background="grey")  # type: ignore[arg-type]


PACKAGE = Path(__file__).resolve().parent.parent / "metaslot"


def test_every_spec_check_is_a_shared_validator() -> None:
    """No spec declares its own ``@field.validator`` method or uses attrs' built-in validators (their
    errors are plain ``ValueError``/``TypeError``s, a traceback on the command line)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                found += [
                    f"{path.name}:{node.lineno} @…validator"
                    for decorator in node.decorator_list
                    if isinstance(decorator, ast.Attribute) and decorator.attr == "validator"
                ]
            is_builtin = (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "validators"
                and node.attr != "disabled"
            )
            if is_builtin:
                found.append(f"{path.name}:{node.lineno} attrs.validators.{node.attr}")
    assert not found, found
