"""Requeue on a cluster (issue 28, item 3).

After ``kill -9`` of a run with loader workers, the orphaned workers kept the run lock, so an
immediate ``--resume`` (a SLURM requeue) was refused, blaming a dead PID. Forked children no longer
hold the lock; a lock whose holder is dead on this host is taken over even while something else keeps
the file locked; ``--resume auto`` resumes a run that exists and starts it otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from metaslot.cli import train as train_cli
from metaslot.cli.train import parse_train_arguments
from metaslot.train import run_lock
from metaslot.train.logging import read_metrics
from tests.support.cli_args import loop_args, model_args

ROOT = Path(__file__).resolve().parents[2]

# A trainer that takes the lock, forks a loader-like worker that outlives it, and waits to be killed.
_TRAINER_WITH_WORKER = """
import multiprocessing, sys, time
from pathlib import Path
from metaslot.train.run_lock import acquire

def worker():
    time.sleep(60)

lock = acquire(Path(sys.argv[1]))
child = multiprocessing.get_context("fork").Process(target=worker, daemon=False)
child.start()
print(child.pid, flush=True)
time.sleep(120)
"""

# Holds the kernel lock on a lock file whose JSON names another (dead) process.
_REMNANT = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("locked", flush=True)
time.sleep(120)
"""


def python(script: str, *arguments: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "METASLOT_TYPECHECK": "0"}
    return subprocess.Popen(
        [sys.executable, "-c", script, *arguments], env=environment, stdout=subprocess.PIPE, text=True
    )


def test_a_forked_worker_does_not_keep_the_lock_after_its_trainer_is_killed(tmp_path: Path) -> None:
    trainer = python(_TRAINER_WITH_WORKER, str(tmp_path))
    assert trainer.stdout is not None
    worker = int(trainer.stdout.readline())
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()
    try:
        assert run_lock.process_alive(worker)  # the orphan is still there, as after kill -9 of a run
        lock = run_lock.acquire(tmp_path)  # the requeued job, at once
        assert lock.previous is not None and lock.previous.pid == trainer.pid
        lock.release()
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_dead_holder_on_this_host_is_taken_over_although_its_file_stays_locked(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    document = {"pid": dead_pid, "host": socket.gethostname(), "started": "2026-01-01 00:00:00"}
    (tmp_path / run_lock.LOCK_FILE).write_text(json.dumps(document))
    remnant = python(_REMNANT, str(tmp_path / run_lock.LOCK_FILE))
    assert remnant.stdout is not None and remnant.stdout.readline().strip() == "locked"
    try:
        lock = run_lock.acquire(tmp_path)
        assert lock.previous is not None and lock.previous.pid == dead_pid
        with pytest.raises(Exception, match="in use"):
            run_lock.acquire(tmp_path)  # and the new lock is a real one
        lock.release()
    finally:
        remnant.send_signal(signal.SIGKILL)
        remnant.wait()


def test_resume_auto_starts_a_run_that_is_not_there_and_resumes_one_that_is(tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    job = [*model_args("autoencoder"), *loop_args(runs), "--name", "job", "--resume", "auto"]
    fresh, _ = parse_train_arguments(job)
    assert not fresh.resume and fresh.run_dir == runs / "job"
    train_cli.main([*job, "--loop.stop-at", "2"])  # the job's first slot ends early
    again, _ = parse_train_arguments(job)
    assert again.resume and again.run_dir == runs / "job"
    train_cli.main(job)  # the requeued job: the very same command
    rows = read_metrics(runs / "job")
    assert [row["step"] for row in rows if row["split"] == "train"] == [1, 2, 3]
