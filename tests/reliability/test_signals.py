"""Every signal that ends a job leaves a line and a checkpoint (issue 28, item 4).

SIGHUP, SIGUSR1 (SLURM's warning before the time limit) and SIGUSR2 ended training with no output and
lost the steps since the last checkpoint; SIGTERM during the end-of-run evaluation, `cli.eval`'s
picture writing or a download exited without a word; Ctrl-C during imports or a download printed a
traceback. Each now ends in one line (exit 128 + the signal), training with a checkpoint of its step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from metaslot.train.checkpoint import latest_checkpoint
from tests.support.helpers import tiny_config, train

ROOT = Path(__file__).resolve().parents[2]

# Trains a tiny run and sends itself ``signal`` after step 2, or when the final evaluation starts.
_SIGNALLED_RUN = """
import os, signal, sys
from pathlib import Path
from tests.support.helpers import tiny_config, train
from metaslot.cli._errors import user_errors
from metaslot.eval.session import SplitEvaluation
from metaslot.train import loop

number = signal.Signals[{signal_name!r}]
if {phase!r} == "step":
    record_step = loop.record_step
    def signalled_step(session, run, result):
        run = record_step(session, run, result)
        if run.step == 2:
            os.kill(os.getpid(), number)
        return run
    loop.record_step = signalled_step
else:
    report = SplitEvaluation.report
    def signalled_report(self, *arguments, **options):
        os.kill(os.getpid(), number)
        return report(self, *arguments, **options)
    SplitEvaluation.report = signalled_report
with user_errors("train"):
    train(tiny_config(Path({runs!r}), steps=4, val_every=100, checkpoint_every=100))
"""


def run_python(script: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "METASLOT_TYPECHECK": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300
    )


def one_line(completed: subprocess.CompletedProcess, number: int) -> str:
    assert completed.returncode == 128 + number, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert "Traceback" not in completed.stderr and len(lines) == 1, completed.stderr
    return lines[0]


def saved_step(runs: Path) -> int:
    latest = latest_checkpoint(runs / "run" / "checkpoints")
    assert latest is not None
    return json.loads(latest.read_text())["state"]["step"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGHUP", "SIGUSR1", "SIGUSR2"])
def test_hangup_and_the_user_signals_checkpoint_the_step_and_say_so(tmp_path: Path, name: str) -> None:
    script = _SIGNALLED_RUN.format(signal_name=name, phase="step", runs=str(tmp_path))
    line = one_line(run_python(script), signal.Signals[name])
    assert name in line and "--resume" in line
    assert saved_step(tmp_path) == 2  # checkpoint_every 100: saved because of the signal


@pytest.mark.slow
def test_sigterm_during_the_final_evaluation_says_how_to_finish_it(tmp_path: Path, capsys) -> None:
    script = _SIGNALLED_RUN.format(signal_name="SIGTERM", phase="final", runs=str(tmp_path))
    line = one_line(run_python(script), signal.SIGTERM)
    assert "final evaluation" in line and "--resume" in line
    assert saved_step(tmp_path) == 4
    config = tiny_config(tmp_path, steps=4, val_every=100, checkpoint_every=100)
    import attrs

    result = train(attrs.evolve(config, resume=True))  # runs the final evaluation only
    assert result.step == 4 and result.last_validation is not None
    assert (tmp_path / "run" / "eval" / "evaluation.json").is_file()


_USER_ERRORS = """
import os, signal, time
from metaslot.cli._errors import user_errors
signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal (a test runner may ignore it)
with user_errors({program!r}):
    os.kill(os.getpid(), signal.Signals[{signal_name!r}])
    {then}
"""


@pytest.mark.parametrize(
    ("program", "name", "then"),
    [
        ("eval", "SIGTERM", "time.sleep(30)"),  # e.g. while it writes pictures
        ("download", "SIGTERM", "time.sleep(30)"),
        ("download", "SIGINT", "time.sleep(30)"),  # Ctrl-C during a download
        ("train", "SIGINT", "import torch"),  # Ctrl-C during the imports
        ("visualize", "SIGHUP", "time.sleep(30)"),
    ],
)
def test_every_program_ends_on_a_signal_with_one_line(program: str, name: str, then: str) -> None:
    script = _USER_ERRORS.format(program=program, signal_name=name, then=then)
    line = one_line(run_python(script), signal.Signals[name])
    assert line.startswith(f"{program}: ")
