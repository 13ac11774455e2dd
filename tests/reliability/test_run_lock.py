"""One training per run folder (issue 14, item 2): two trainings writing one folder both "succeeded"
with interleaved logs and mixed checkpoints. The second is now refused in one line naming the first;
a lock left by a trainer that died (kill -9) is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from metaslot.cli._errors import user_errors
from metaslot.errors import RunInUseError
from metaslot.train import run_lock
from metaslot.train.logging import read_metrics
from tests.support.helpers import evolve_loop, tiny_config, train

ROOT = Path(__file__).resolve().parents[2]

# A second process that takes the run folder's lock the way a trainer does, then waits.
_HOLDER = """
import sys, time
from pathlib import Path
from metaslot.train.run_lock import acquire
lock = acquire(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(120)
"""


def holding_process(run_dir: Path) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "METASLOT_TYPECHECK": "0"}
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir)], env=environment, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "locked"
    return process


def test_a_second_training_is_refused_until_the_first_is_gone(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path, checkpoint_every=2)
    train(evolve_loop(config, stop_at=2))
    rows = read_metrics(config.run_dir)
    other = holding_process(config.run_dir)
    try:
        with pytest.raises(SystemExit), user_errors("train"):
            train(attrs.evolve(config, resume=True))
        error = capsys.readouterr().err
        assert f"is in use by another training (pid {other.pid} on host {socket.gethostname()}" in error
        assert len(error.strip().splitlines()) == 1
        assert read_metrics(config.run_dir) == rows  # the refused one wrote nothing
    finally:
        other.send_signal(signal.SIGKILL)  # dies holding the lock, as after kill -9
        other.wait()
    capsys.readouterr()
    assert train(attrs.evolve(config, resume=True)).step == 6
    assert f"took over the lock left by a training that is gone (pid {other.pid}" in capsys.readouterr().err
    assert not (config.run_dir / run_lock.LOCK_FILE).exists()  # released at the end


def test_the_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    with run_lock.hold(tmp_path):
        with pytest.raises(RunInUseError, match=f"pid {os.getpid()}"):
            run_lock.acquire(tmp_path)
    run_lock.acquire(tmp_path).release()  # free again once released


def write_lock_file(run_dir: Path, pid: int, host: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    document = {"pid": pid, "host": host, "started": "2025-01-01 00:00:00"}
    (run_dir / run_lock.LOCK_FILE).write_text(json.dumps(document))


def test_a_lock_file_of_a_dead_process_on_this_host_is_stale(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock_file(tmp_path, dead.pid, socket.gethostname())
    lock = run_lock.acquire(tmp_path)
    assert lock.previous is not None and lock.previous.pid == dead.pid
    assert json.loads((tmp_path / run_lock.LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()


def test_without_flock_a_live_pid_on_this_host_still_holds_the_lock(tmp_path: Path, monkeypatch) -> None:
    """File systems without ``flock`` (some network mounts): the PID decides."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock_file(tmp_path, sleeper.pid, socket.gethostname())
        monkeypatch.setattr(run_lock, "_lock", lambda descriptor, path: False)
        with pytest.raises(RunInUseError, match=f"pid {sleeper.pid}"):
            run_lock.acquire(tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    run_lock.acquire(tmp_path).release()  # its PID is gone now


def test_a_lock_file_from_another_host_is_refused_with_the_file_to_delete(tmp_path: Path) -> None:
    write_lock_file(tmp_path, 4242, "some-other-node")
    with pytest.raises(RunInUseError, match=r"pid 4242 on host some-other-node.*delete .*train\.lock"):
        run_lock.acquire(tmp_path)
