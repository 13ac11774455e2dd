"""Device and precision choice: `auto` picks CUDA when present, bf16 autocast on GPU, fp32 on CPU."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from metaslot.errors import DeviceError

DeviceChoice = Literal["auto", "cpu", "cuda"]
PrecisionChoice = Literal["auto", "auto-fp16", "bf16", "fp16", "fp32"]


def resolve_device(choice: DeviceChoice, local_rank: int = 0) -> torch.device:
    """The device this process trains on; CUDA requested without a GPU is an error, not a silent fallback."""
    if choice == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if choice == "cuda" and not available:
        raise DeviceError(
            "--device cuda was requested but no CUDA GPU is visible; use --device cpu (or auto)"
        )
    if available:
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DeviceError(
                f"LOCAL_RANK {local_rank} has no GPU (only {count} visible); start torchrun with --nproc-per-node {count}"
            )
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_precision(choice: PrecisionChoice, device: torch.device) -> torch.dtype:
    """Autocast dtype: bf16 on GPU by default, fp32 on CPU (CPU autocast is slower than fp32 for these models);
    ``auto-fp16``: fp16 (with the loop's gradient scaler) on GPU, fp32 on CPU (the SPOT presets)."""
    if choice in ("auto", "auto-fp16"):
        half = torch.bfloat16 if choice == "auto" else torch.float16
        return half if device.type == "cuda" else torch.float32
    if choice in ("bf16", "fp16") and device.type != "cuda":
        raise DeviceError(f"--precision {choice} needs a CUDA device; use --precision fp32 (or auto) on CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[choice]


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast for reduced precision, a no-op context for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
