"""The run-folder fault tests reuse tests/train's tiny fake runs (``helpers.py``, ``train_fakes.py``) and tests/pretrained's tiny trained runs."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "train", TESTS / "pretrained"):  # pretrained: tiny_runs.train_tiny
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
