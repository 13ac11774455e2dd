"""How a benchmarked module runs: precision (fp32, or bf16 autocast) and eager or ``torch.compile``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class Variant:
    precision: Precision = "fp32"
    compiled: bool = False

    @property
    def name(self) -> str:
        return self.precision + ("+compile" if self.compiled else "")

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast (the GPU training default), or nothing for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def prepare(self, module: torch.nn.Module) -> torch.nn.Module:
        """The callable to time: the module itself, or its compiled wrapper (which shares its parameters)."""
        return torch.compile(module) if self.compiled else module


def variants(autocast: Precision | None, compiled: bool) -> list[Variant]:
    """fp32 eager always; ``autocast="bf16"`` adds bf16 rows; ``compiled`` adds a compiled row per precision."""
    precisions: list[Precision] = ["fp32"] + (["bf16"] if autocast == "bf16" else [])
    chosen = [Variant(precision) for precision in precisions]
    if compiled:
        chosen += [Variant(precision, compiled=True) for precision in precisions]
    return chosen
