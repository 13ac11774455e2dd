"""Every command calls itself ``python -m cli.<name>`` in ``--help`` and in parser errors.

Left to themselves, tyro and argparse name the program after ``sys.argv[0]``: under ``python -m`` that
is the shim's file path (``/…/cli/convert.py``), which is not a command anyone can type. Known
mistakes inside a command end in one ``<name>: error:`` line (convert had no such guard).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from metaslot.cli import bench as bench_cli
from metaslot.cli import convert as convert_cli
from metaslot.cli import eval as eval_cli
from metaslot.cli import train as train_cli
from metaslot.cli import visualize as visualize_cli

MAINS: dict[str, Callable[[list[str]], None]] = {
    "train": train_cli.main,
    "eval": eval_cli.main,
    "visualize": visualize_cli.main,
    "convert": convert_cli.main,
    "bench": bench_cli.main,
}
SHIM = "/repo/cli/shim.py"


@pytest.fixture(autouse=True)
def _run_as_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.argv[0] as `python -m cli.<command>` leaves it: the shim's file path."""
    monkeypatch.setattr(sys, "argv", [SHIM])


@pytest.mark.parametrize("command", ["train", "convert", "bench"])
def test_help_names_the_command(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        MAINS[command](["--help"])
    assert stopped.value.code == 0
    output = capsys.readouterr().out
    assert f"usage: python -m cli.{command} " in output and "shim.py" not in output


@pytest.mark.parametrize("command", ["eval", "visualize"])
def test_help_without_a_run_names_the_command(command: str, capsys: pytest.CaptureFixture) -> None:
    MAINS[command](["--help"])  # no run to read the options from: a short usage line, no exit
    assert capsys.readouterr().out.startswith(f"usage: python -m cli.{command} RUN_OR_CHECKPOINT")


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("train", ["--model"]),
        ("eval", ["runs/some-run", "--images", "many"]),
        ("visualize", ["runs/some-run", "--images", "many"]),
        ("convert", ["voc"]),
        ("bench", ["--repeats", "many"]),
    ],
)
def test_parser_errors_name_the_command(
    command: str, arguments: list[str], capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stopped:
        MAINS[command](arguments)
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert f"python -m cli.{command}" in text and "Traceback" not in text
    assert "shim.py" not in text


def test_convert_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        convert_cli.main(["voc", "--raw-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convert: error: ") and "VOC2012" in lines[0], lines
