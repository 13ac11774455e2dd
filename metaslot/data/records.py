"""The typed sample and batch every dataset returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class Sample:
    """One image. ``segment`` is 0 for background and 1..K for objects (compacted, 0 kept as background)."""

    image: Float[Tensor, "3 h w"]
    segment: Int[Tensor, "h w"]
    num_objects: int


@dataclass(frozen=True)
class Batch:
    """A collated batch; ``image`` is normalised float, ``segment`` int64 labels."""

    image: Float[Tensor, "b 3 h w"]
    segment: Int[Tensor, "b h w"]
    num_objects: Int[Tensor, " b"]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            image=self.image.to(device, non_blocking=non_blocking),
            segment=self.segment.to(device, non_blocking=non_blocking),
            num_objects=self.num_objects.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> Batch:
        return Batch(self.image.pin_memory(), self.segment.pin_memory(), self.num_objects.pin_memory())


def collate(samples: list[Sample]) -> Batch:
    """Stack samples into a Batch (DataLoader ``collate_fn``)."""
    return Batch(
        image=torch.stack([s.image for s in samples]),
        segment=torch.stack([s.segment.long() for s in samples]),
        num_objects=torch.tensor([s.num_objects for s in samples], dtype=torch.long),
    )
