"""The example scripts are not a package: tests load each one as a module from its file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str) -> ModuleType:
    """Import ``examples/{name}.py`` under ``name`` (registered, so its dataclasses and pickles resolve)."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def study_module() -> ModuleType:
    return load_example("shapes_study")


@pytest.fixture(scope="module")
def reference_fullsize() -> ModuleType:
    return load_example("reference_fullsize")
