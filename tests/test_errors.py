"""User errors are types: every layer raises a `MetaslotError`; the CLI prints those, and only those, in one line."""

from __future__ import annotations

import pickle

import pytest

from metaslot import errors
from metaslot.cli._errors import user_errors


def _exit_and_stderr(error: BaseException, capsys: pytest.CaptureFixture) -> tuple[object, str]:
    with pytest.raises(SystemExit) as stopped, user_errors("demo"):
        raise error
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [
        errors.ConfigError("batch_size must be positive, got 0"),
        errors.MissingFileError("no such folder: runs/x"),
        errors.CorruptDataError("record 3 is damaged"),
        errors.CheckpointMismatchError("the checkpoint is from another model"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_user_error_is_one_line_and_exit_code_one(error: Exception, capsys) -> None:
    code, stderr = _exit_and_stderr(error, capsys)
    assert code == 1
    assert stderr.splitlines() == [f"demo: error: {error}"]


@pytest.mark.parametrize(
    "error",
    [ValueError("a bug"), KeyError("missing"), FileNotFoundError("not ours"), RuntimeError("also a bug")],
    ids=lambda error: type(error).__name__,
)
def test_any_other_exception_keeps_its_traceback(error: Exception) -> None:
    """A plain ValueError or KeyError is a bug, not a user mistake: it is re-raised untouched."""
    with pytest.raises(type(error)) as raised, user_errors("demo"):
        raise error
    assert raised.value is error


def test_traceback_on_request(monkeypatch) -> None:
    monkeypatch.setenv("METASLOT_TRACEBACK", "1")
    with pytest.raises(errors.ConfigError), user_errors("demo"):
        raise errors.ConfigError("shown with its traceback")


def test_interrupt_exits_with_128_plus_the_signal(capsys) -> None:
    code, stderr = _exit_and_stderr(errors.TrainingInterrupted("stopped at step 3", signal_number=15), capsys)
    assert code == 128 + 15 and stderr.strip() == "demo: stopped at step 3"


def test_the_domain_errors_are_user_errors_and_keep_their_builtin_bases() -> None:
    """Callers that caught the built-in type before still do; the CLI recognises them by type."""
    from metaslot.data.lmdb_io import MissingDatasetError, UnsafeRecordError
    from metaslot.models.encoders.vit import WeightsNotFoundError
    from metaslot.models.pipelines import CheckpointMismatchError
    from metaslot.models.pipelines.vqvae import LPIPSUnavailableError
    from metaslot.models.taesd import TAESDWeightsError

    expected_bases = {
        errors.ConfigError: ValueError,
        errors.DataError: ValueError,
        errors.MissingFileError: FileNotFoundError,
        MissingDatasetError: FileNotFoundError,
        UnsafeRecordError: pickle.UnpicklingError,
        WeightsNotFoundError: RuntimeError,
        TAESDWeightsError: RuntimeError,
        LPIPSUnavailableError: RuntimeError,
        CheckpointMismatchError: RuntimeError,
    }
    for error_type, builtin in expected_bases.items():
        assert issubclass(error_type, errors.MetaslotError), error_type
        assert issubclass(error_type, builtin), error_type
    assert CheckpointMismatchError is errors.CheckpointMismatchError


def test_spec_validators_raise_config_errors() -> None:
    from metaslot.data.shapes import ShapesSpec
    from metaslot.models.aggregators import MetaSlotSpec

    with pytest.raises(errors.ConfigError, match="prune_start"):
        MetaSlotSpec(num_slots=3, slot_dim=8, feature_dim=8, prune_start=2.0)
    with pytest.raises(errors.ConfigError, match="max_objects"):
        ShapesSpec(max_objects=99)
