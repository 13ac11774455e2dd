"""Where the benchmarks get the shapes they time: the training presets, handed in by the caller.

The benchmarks sit beside `metaslot.train` and import nothing from it; ``python -m cli.bench`` passes
``metaslot.cli.bench.preset_model`` (the preset's model spec), tests may pass any function.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class PresetModels(Protocol):
    def __call__(self, model: str, data: str) -> object:
        """The model spec of the training preset ``model`` × ``data`` (``dinosaur`` × ``voc``, ...)."""
        ...
