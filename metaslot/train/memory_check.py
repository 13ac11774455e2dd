"""Sizes that can only run out of memory, refused before the run folder is made.

``--data.resolution 4096``, ``--loop.batch-size 100000`` or 1e5 slots once built the model, made the
run folder and died in the allocator 10–42 s later. `too_large` adds up a *lower bound* on a few
tensors every slot pipeline holds at once in one training forward, counted from the specs alone:

- the input images, b × 3 × H × W (float32);
- the slot masks at image size, b × K × H × W;
- the decoder's per-slot alpha (or cross-attention) and the slot attention's logits and softmax,
  three tensors of b × K × N, with N tokens at least (side / 16)² (a CNN encoder: side / its strides);
- the aggregator's input features, b × N × feature_dim, and each CNN encoder layer's output.

b is the images of one process's micro-batch: its samples, times the frames of a video clip (a data spec
that is `ImagesPerSample`). Weights, gradients, optimiser state, every other activation and the
allocator's slack come on top, so a run whose bound exceeds the memory (the GPU's total on CUDA, the
machine's RAM otherwise) cannot run; nothing else is refused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs
import torch

from metaslot.train.config import TrainConfig

GIB = 1024**3


@runtime_checkable
class ImagesPerSample(Protocol):
    """A dataset spec whose training sample is several images (a video clip's frames)."""

    def images_per_training_sample(self) -> int: ...


def _specs(spec: object) -> Iterator[object]:
    yield spec
    if attrs.has(type(spec)):
        for field in attrs.fields(type(spec)):
            value = getattr(spec, field.name)
            if attrs.has(type(value)):
                yield from _specs(value)


def _field(spec: object, name: str) -> object:
    return getattr(spec, name, None) if attrs.has(type(spec)) else None


def _ints(value: object) -> tuple[int, ...] | None:
    if isinstance(value, tuple) and value and all(isinstance(item, int) for item in value):
        return value
    return None


def lower_bound(config: TrainConfig, bytes_per_value: int) -> list[tuple[str, int]]:
    """(what, bytes) of the tensors the module docstring lists; empty when the specs give no image size."""
    side = _field(config.data, "resolution") or _field(config.model, "image_size")
    if not isinstance(side, int):
        return []
    specs = list(_specs(config.model))
    batch = micro_batch(config)
    slots = max((s for s in (_field(spec, "num_slots") for spec in specs) if isinstance(s, int)), default=0)
    features = max(
        (f for f in (_field(spec, "feature_dim") for spec in specs) if isinstance(f, int)), default=0
    )
    cnn = next(
        (spec for spec in specs if _ints(_field(spec, "strides")) and _ints(_field(spec, "channels"))), None
    )
    parts = [("input images", batch * 3 * side * side * 4)]
    if cnn is not None:
        strides, channels = _ints(_field(cnn, "strides")), _ints(_field(cnn, "channels"))
        grid, layers = side, 0
        for stride, width in zip(strides or (), channels or (), strict=False):
            grid = max(1, grid // stride)
            layers += batch * width * grid * grid
        parts.append(("CNN encoder outputs", layers * bytes_per_value))
        tokens = grid * grid
    else:
        encoder_side = next(
            (s for s in (_field(spec, "image_size") for spec in specs[1:]) if isinstance(s, int)), side
        )
        tokens = max(1, encoder_side // 16) ** 2
    if slots:
        parts.append(("slot masks", batch * slots * side * side * bytes_per_value))
        parts.append(("slot attention and alpha", 3 * batch * slots * tokens * bytes_per_value))
    if features:
        parts.append(("aggregator input", batch * tokens * features * bytes_per_value))
    return sorted(parts, key=lambda part: -part[1])


def micro_batch(config: TrainConfig) -> int:
    """Images one process puts through one forward: the global batch over accumulation and processes,
    times the images of one sample (a clip's frames)."""
    world = max(1, int(os.environ.get("WORLD_SIZE", "1") or 1))
    samples = math.ceil(config.loop.batch_size / (config.loop.accumulate * world))
    if isinstance(config.data, ImagesPerSample):
        return samples * config.data.images_per_training_sample()
    return samples


def _on_cuda(config: TrainConfig) -> bool:
    return config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())


def device_memory(config: TrainConfig) -> tuple[int, str] | None:
    """(bytes, what they are) of the memory the run's tensors live in; None when it cannot be told."""
    if _on_cuda(config):
        if not torch.cuda.is_available():
            return None
        index = int(os.environ.get("LOCAL_RANK", "0") or 0)
        properties = torch.cuda.get_device_properties(index)
        return properties.total_memory, f"the {properties.name}'s"
    try:
        import psutil  # type: ignore[import-not-found]

        return int(psutil.virtual_memory().total), "this machine's"
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024, "this machine's"
    except (OSError, ValueError, IndexError):
        return None
    return None


def too_large(config: TrainConfig, memory: tuple[int, str] | None = None) -> str | None:
    """One sentence when the lower bound of the run's memory exceeds ``memory`` (default: `device_memory`)."""
    memory = memory if memory is not None else device_memory(config)
    if memory is None:
        return None
    half = _on_cuda(config) and config.precision != "fp32"
    parts = lower_bound(config, 2 if half else 4)
    needed = sum(size for _, size in parts)
    available, what = memory
    if needed <= available:
        return None
    biggest = ", ".join(f"{name} {size / GIB:.1f} GiB" for name, size in parts[:3])
    return (
        f"this run needs at least {needed / GIB:.1f} GiB for activations alone ({biggest}; micro-batch of "
        f"{micro_batch(config)} images), more than {what} "
        f"{available / GIB:.1f} GiB: lower --loop.batch-size (or raise --loop.accumulate), "
        "--data.resolution or the number of slots"
    )
