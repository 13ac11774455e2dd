"""Plug MetaSlot into someone else's object-centric model in place of its Slot Attention.

The model below is written the way a third-party codebase might be: its own convolutional encoder, its
own Slot Attention and a spatial-broadcast decoder. Swapping the grouping module for
``metaslot.MetaSlot`` needs three things: build it from its spec (``MetaSlotSpec(...).build()``),
read ``.slots`` (and ``.keep``, to ignore pruned slots) from its output record, and call
``update_codebook(output)`` after each optimiser step. Trains a few steps on random images and prints how many slots each image keeps.

    python examples/plug_in.py --steps 20
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from metaslot import AggregatorOutput, MetaSlotSpec


class ConvEncoder(nn.Module):
    """Two 5×5 convolutions and a learned position embedding → tokens (b, h·w, width)."""

    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.convolutions = nn.Sequential(
            nn.Conv2d(3, width, 5, padding=2), nn.ReLU(), nn.Conv2d(width, width, 5, padding=2), nn.ReLU()
        )
        self.position = nn.Parameter(torch.zeros(1, size * size, width))
        self.project = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.convolutions(images).flatten(2).transpose(1, 2)
        return self.project(tokens + self.position)


class TheirSlotAttention(nn.Module):
    """The model's original grouping module: a compact Slot Attention returning a slot tensor."""

    def __init__(self, num_slots: int, width: int, iterations: int = 3) -> None:
        super().__init__()
        self.num_slots, self.iterations, self.scale = num_slots, iterations, width**-0.5
        self.mean = nn.Parameter(torch.randn(1, 1, width) * width**-0.5)
        self.norm_inputs, self.norm_slots = nn.LayerNorm(width), nn.LayerNorm(width)
        self.to_query = nn.Linear(width, width, bias=False)
        self.to_key = nn.Linear(width, width, bias=False)
        self.to_value = nn.Linear(width, width, bias=False)
        self.gru = nn.GRUCell(width, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, _, width = features.shape
        features = self.norm_inputs(features)
        keys, values = self.to_key(features), self.to_value(features)
        slots = self.mean.expand(batch, self.num_slots, -1) + 0.1 * torch.randn(batch, self.num_slots, width)
        for _ in range(self.iterations):
            queries = self.to_query(self.norm_slots(slots))
            attention = torch.softmax(torch.einsum("bkd,bnd->bkn", queries, keys) * self.scale, dim=1)
            weights = attention / (attention.sum(dim=-1, keepdim=True) + 1e-8)
            updates = torch.einsum("bkn,bnd->bkd", weights, values)
            slots = self.gru(updates.reshape(-1, width), slots.reshape(-1, width)).reshape(batch, -1, width)
        return slots


class BroadcastDecoder(nn.Module):
    """Decode each slot to an RGB image and an alpha logit; alphas compete across (kept) slots."""

    def __init__(self, width: int, size: int) -> None:
        super().__init__()
        self.size = size
        self.position = nn.Parameter(torch.randn(1, 1, size * size, width) * 0.02)
        self.mlp = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, slots: torch.Tensor, keep: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        batch, num_slots, _ = slots.shape
        decoded = self.mlp(slots[:, :, None, :] + self.position)  # b k (h·w) 4
        colours, logits = decoded[..., :3], decoded[..., 3]
        if keep is not None:  # pruned slots take no pixels
            logits = logits.masked_fill(~keep[:, :, None], torch.finfo(logits.dtype).min)
        masks = torch.softmax(logits, dim=1)
        image = (masks[..., None] * colours).sum(dim=1)
        return image.transpose(1, 2).reshape(batch, 3, self.size, self.size), masks


class ObjectModel(nn.Module):
    def __init__(self, grouping: nn.Module, width: int = 32, size: int = 16) -> None:
        super().__init__()
        self.encoder = ConvEncoder(width, size)
        self.grouping = grouping
        self.decoder = BroadcastDecoder(width, size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | AggregatorOutput]:
        grouped = self.grouping(self.encoder(images))
        # The one line that changes for MetaSlot: it returns a record with the slots and their keep mask.
        slots, keep = (
            (grouped.slots, grouped.keep) if isinstance(grouped, AggregatorOutput) else (grouped, None)
        )
        reconstruction, _ = self.decoder(slots, keep)
        return nn.functional.mse_loss(reconstruction, images), grouped


def train(model: ObjectModel, images: torch.Tensor, steps: int) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=4e-4)
    losses = []
    for _ in range(steps):
        loss, grouped = model(images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if isinstance(grouped, AggregatorOutput):
            model.grouping.update_codebook(grouped)  # codebook upkeep after the optimiser step
        losses.append(float(loss.detach()))
    return losses


def main(argv: list[str] | None = None) -> list[int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--slots", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    torch.manual_seed(arguments.seed)
    images = torch.rand(8, 3, 16, 16)

    original = ObjectModel(TheirSlotAttention(arguments.slots, 32))
    losses = train(original, images, arguments.steps)
    print(f"their Slot Attention: loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    # The swap: same encoder/decoder, MetaSlot as the grouping module, built from its spec.
    metaslot = MetaSlotSpec(
        num_slots=arguments.slots, slot_dim=32, feature_dim=32, codebook_size=64, buffer_capacity=64
    ).build()
    swapped = ObjectModel(metaslot)
    swapped.encoder.load_state_dict(original.encoder.state_dict())
    losses = train(swapped, images, arguments.steps)
    print(f"MetaSlot:             loss {losses[0]:.4f} -> {losses[-1]:.4f}")

    swapped.eval()
    with torch.no_grad():
        _, grouped = swapped(images)
    kept = grouped.keep.sum(dim=1).tolist()
    print("kept slots per image:", kept)
    return kept


if __name__ == "__main__":
    main()
