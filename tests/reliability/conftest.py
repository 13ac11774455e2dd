"""The run-folder fault tests reuse tests/train's tiny fake runs (``helpers.py``, ``train_fakes.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

TRAIN_TESTS = Path(__file__).resolve().parents[1] / "train"
if str(TRAIN_TESTS) not in sys.path:
    sys.path.insert(0, str(TRAIN_TESTS))
