"""Lazy public names for package ``__init__`` modules (PEP 562).

A listed name is imported from its defining module on first access, so importing a package stays
light: no torch for ``import metaslot``, no diffusers unless SlotDiffusion is used, no lmdb/OpenCV/PyAV
until a dataset is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: Mapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``(__getattr__, __dir__)`` pair for ``package``: ``names`` maps a public name to the module
    that defines it; ``namespace`` is the package's ``globals()`` (its eager names, listed by ``dir``)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
