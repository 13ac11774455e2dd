"""Test-wide settings: shape checking on, hub offline, small thread counts, hypothesis profile."""

from __future__ import annotations

import os

# Must happen before the first `import metaslot` so the jaxtyping import hook instruments everything.
os.environ.setdefault("METASLOT_TYPECHECK", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

torch.set_num_threads(1)

settings.register_profile(
    "metaslot",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "metaslot"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        # The marker, not the keyword: keywords also hold folder names, and a checkout named "gpu" would
        # otherwise skip every test.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
