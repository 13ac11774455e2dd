"""What a benchmark ran on: CPU, cores, load, library versions, device, date and git commit."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow), else the CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def git_commit(directory: Path | None = None) -> str | None:
    """The checked-out commit (with ``+dirty`` when files differ from it), or None outside a git checkout."""
    where = directory or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if status else "")


def describe(device: torch.device) -> dict[str, object]:
    """The machine description stored with every benchmark result."""
    description: dict[str, object] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "git_commit": git_commit(),
    }
    return description


def format_description(description: dict[str, object]) -> str:
    load = description["load_average_1m"]
    load_text = f", load {load:.2f}" if isinstance(load, float) else ""
    return (
        f"{description['date']}  {description['device_name']} ({description['device']}), "
        f"{description['cores']} cores{load_text}, torch {description['torch']}, python {description['python']}, "
        f"commit {description['git_commit'] or 'unknown'}"
    )
