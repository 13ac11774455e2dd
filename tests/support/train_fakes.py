"""Tiny stand-ins for a pipeline and a dataset, written against the public contracts only.

They exercise everything the loop relies on: a PipelineOutput with masks/keep/codes, an aggregator
with a codebook that ``update_codebook`` changes using the global RNG (so RNG restore matters), noise
in training, and a dataset whose samples are a pure function of the index.
"""

from __future__ import annotations

import time

import attrs
import torch
import torch.distributed
from torch import nn

from metaslot.data.records import Sample
from metaslot.data.sampling import ItemKey, item_index
from metaslot.models.records import AggregatorOutput, PipelineOutput
from metaslot.train.config import allow_in_config


class FakeAggregator(nn.Module):
    def __init__(self, num_slots: int, width: int, codebook_size: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_slots, width) * 0.5)
        self.register_buffer("codebook", torch.randn(codebook_size, width))
        self.register_buffer("usage", torch.zeros(codebook_size))

    @property
    def codebook_size(self) -> int:
        return self.codebook.shape[0]

    def forward(self, features: torch.Tensor) -> AggregatorOutput:
        logits = torch.einsum("kd,bnd->bkn", self.queries, features) / features.shape[-1] ** 0.5
        attention = logits.softmax(dim=1)
        weights = attention / attention.sum(dim=2, keepdim=True).clamp(min=1e-6)
        slots = torch.einsum("bkn,bnd->bkd", weights, features)
        codes = torch.cdist(slots.detach(), self.codebook[None].expand(slots.shape[0], -1, -1)).argmin(dim=2)
        # keep the first slot of each code
        same = codes[:, :, None] == codes[:, None, :]
        earlier = torch.ones(codes.shape[1], codes.shape[1], dtype=torch.bool).tril(-1)
        keep = ~(same & earlier).any(dim=2)
        return AggregatorOutput(
            slots=slots, attention=attention, keep=keep, codes=torch.where(keep, codes, -1)
        )

    @torch.no_grad()
    def update_codebook(self, output: AggregatorOutput) -> None:
        valid = output.codes[output.codes >= 0]
        self.usage += torch.bincount(valid, minlength=self.usage.shape[0]).float()
        self.codebook.add_(torch.randn_like(self.codebook) * 0.01)
        # Like MetaSlot's upkeep: every rank ends the step with the same codebook.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.codebook)
            self.codebook /= torch.distributed.get_world_size()
            torch.distributed.all_reduce(self.usage)


class FakePipeline(nn.Module):
    def __init__(self, spec: FakePipelineSpec) -> None:
        super().__init__()
        self.spec = spec
        self.encoder = nn.Conv2d(3, spec.width, 3, padding=1)
        self.aggregator = FakeAggregator(spec.num_slots, spec.width, spec.codebook_size)
        self.colour = nn.Linear(spec.width, 3)
        self.register_buffer("forward_count", torch.zeros((), dtype=torch.long))

    @property
    def aggregator(self) -> FakeAggregator:
        """On the class, so that Python 3.12's static protocol check finds it (metaslot.models.interfaces)."""
        return self._modules["aggregator"]  # type: ignore[return-value]

    def forward(self, image: torch.Tensor) -> PipelineOutput:
        batch, _, height, width = image.shape
        features = self.encoder(image).flatten(2).transpose(1, 2)
        if self.training:
            features = features + 0.01 * torch.randn_like(features)
        aggregated = self.aggregator(features)
        masks = aggregated.attention.reshape(batch, -1, height, width)
        masks = masks * aggregated.keep[:, :, None, None]
        reconstruction = torch.einsum("bkhw,bkc->bchw", masks, self.colour(aggregated.slots))
        loss = ((reconstruction - image) ** 2).mean()
        if self.training:
            self.forward_count += 1
            if self.spec.nan_after is not None and int(self.forward_count) > self.spec.nan_after:
                loss = loss * float("nan")
        return PipelineOutput(
            loss=loss,
            terms={"mse": loss.detach()},
            slots=aggregated.slots,
            keep=aggregated.keep,
            masks=masks,
            reconstruction=reconstruction,
            aggregator=aggregated,
        )

    def after_optimizer_step(self, output: PipelineOutput) -> None:
        self.aggregator.update_codebook(output.aggregator)
        if self.spec.poison_after is not None and int(self.forward_count) > self.spec.poison_after:
            with torch.no_grad():  # as an update that overflowed would leave it
                self.colour.weight[0, 0] = float("nan")

    def codebook_statistics(self) -> None:
        return None


@attrs.frozen
class FakePipelineSpec:
    num_slots: int = 4
    width: int = 8
    codebook_size: int = 6
    nan_after: int | None = None
    """Forward passes after which the loss becomes NaN (non-finite handling)."""
    poison_after: int | None = None
    """Forward passes after which the update leaves a NaN weight while the loss stays finite."""

    def build(self) -> FakePipeline:
        return FakePipeline(self)


READS: list[tuple[str, bool, int, int]] = []
"""(split, train, index, epoch) of every sample read from a `FakeDataSpec(record=True)` dataset."""


class FakeDataset(torch.utils.data.Dataset):
    def __init__(
        self, size: int, resolution: int, offset: int, delay: float, record: tuple[str, bool] | None = None
    ) -> None:
        self.size, self.resolution, self.offset, self.delay = size, resolution, offset, delay
        self.record = record

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: int | ItemKey) -> Sample:
        index = item_index(key)
        if self.record is not None:
            READS.append((*self.record, index, key.epoch if isinstance(key, ItemKey) else -1))
        if self.delay:
            time.sleep(self.delay)
        generator = torch.Generator().manual_seed(self.offset + index)
        r = self.resolution
        image = torch.full((3, r, r), 0.1)
        segment = torch.zeros(r, r, dtype=torch.long)
        count = int(torch.randint(1, 3, (1,), generator=generator))
        for label in range(1, count + 1):
            top, left = torch.randint(0, r // 2, (2,), generator=generator).tolist()
            size = r // 3
            segment[top : top + size, left : left + size] = label
            image[:, top : top + size, left : left + size] = torch.rand(3, 1, 1, generator=generator)
        # Augmentation drawn from the global RNG, as real transforms do.
        image = image + 0.01 * torch.randn(image.shape)
        return Sample(image=image, segment=segment, num_objects=count)


@attrs.frozen
class FakeDataSpec:
    train_size: int = 16
    val_size: int = 8
    resolution: int = 16
    delay: float = 0.0
    """Seconds per sample (slows the SIGTERM test's run down)."""
    record: bool = False
    """Append every sample read to `READS` (single-process runs with --loop.num-workers 0)."""

    def build(self, split: str, train: bool) -> FakeDataset:
        if split == "missing":
            raise FileNotFoundError("fake split 'missing' has no files")
        size = self.train_size if split == "train" else self.val_size
        offset = 0 if split == "train" else 10_000
        record = (split, train) if self.record else None
        return FakeDataset(size, self.resolution, offset=offset, delay=self.delay, record=record)


# Runs trained with these specs are evaluated from their config.json, which loads only metaslot's own
# classes unless others are allowed explicitly.
allow_in_config(FakePipelineSpec, FakeDataSpec)
