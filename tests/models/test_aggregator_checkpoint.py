"""safetensors round trip of the full aggregator state, and exact continuation after a resume."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from metaslot.models.aggregators import MetaSlot, MetaSlotSpec, SlotAttention, SlotAttentionSpec

SPEC = MetaSlotSpec(
    num_slots=4,
    slot_dim=8,
    feature_dim=6,
    num_iterations=2,
    codebook_size=16,
    buffer_capacity=10,
    dead_code_timeout=2,  # ceil(2·16/10) = 4 steps: codes die and are replaced within the run
    prune_start=0.3,
    prune_growth=1.5,
)
STEPS = 8  # 2 images per step: the one-off k-means runs at step 5, in the second half


class TinyModel(nn.Module):
    """A linear "encoder", the aggregator, and an attention-weighted linear decoder of the inputs."""

    def __init__(self, spec: MetaSlotSpec, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = nn.Linear(3, 6)
        self.aggregator = MetaSlot(spec)
        self.decoder = nn.Linear(8, 3)

    def loss(self, inputs: torch.Tensor, generator: torch.Generator):
        output = self.aggregator(self.encoder(inputs), generator=generator)
        reconstruction = torch.einsum("bkn,bkc->bnc", output.attention, self.decoder(output.slots))
        return nn.functional.mse_loss(reconstruction, inputs), output


def batches() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(123)
    return [torch.randn(2, 5, 3, generator=generator) for _ in range(STEPS)]


def train(model: TinyModel, optimizer: torch.optim.Optimizer, generator: torch.Generator, data: list) -> list:
    outputs = []
    for inputs in data:
        loss, output = model.loss(inputs, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.aggregator.update_codebook(output, generator=generator)
        outputs.append(output)
    return outputs


def test_round_trip_restores_every_tensor(tmp_path: Path) -> None:
    module = MetaSlot(SPEC)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        module.update_codebook(module(torch.randn(2, 5, 6), generator=generator), generator=generator)
    path = tmp_path / "aggregator.safetensors"
    save_file(module.state_dict(), str(path))
    restored = MetaSlot(SPEC)
    restored.load_state_dict(load_file(str(path)))
    assert module.state_dict().keys() == restored.state_dict().keys()
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name
    assert restored.codebook_state._images_seen_host == 10 == int(restored.codebook_state.images_seen)
    assert restored.codebook_state._kmeans_done_host == bool(module.codebook_state.kmeans_done) is True
    module.eval()
    restored.eval()
    features = torch.randn(3, 5, 6)
    assert torch.equal(module(features).slots, restored(features).slots)


def test_slot_attention_round_trip(tmp_path: Path) -> None:
    spec = SlotAttentionSpec(num_slots=3, slot_dim=8, feature_dim=6)
    module = SlotAttention(spec)
    path = tmp_path / "slot_attention.safetensors"
    save_file(module.state_dict(), str(path))
    restored = SlotAttention(spec)
    restored.load_state_dict(load_file(str(path)))
    features = torch.randn(2, 5, 6)
    assert torch.equal(module.eval()(features).slots, restored.eval()(features).slots)


@pytest.mark.parametrize("codebook_update", ["gradient", "both"])
def test_exact_continuation(tmp_path: Path, codebook_update: str) -> None:
    spec = attrs.evolve(SPEC, codebook_update=codebook_update)
    data = batches()
    straight = TinyModel(spec, seed=0)
    straight_optimizer = torch.optim.Adam(straight.parameters(), lr=1e-2)
    straight_outputs = train(straight, straight_optimizer, torch.Generator().manual_seed(0), data)

    first = TinyModel(spec, seed=0)
    first_optimizer = torch.optim.Adam(first.parameters(), lr=1e-2)
    first_generator = torch.Generator().manual_seed(0)
    train(first, first_optimizer, first_generator, data[: STEPS // 2])
    assert not bool(first.aggregator.codebook_state.kmeans_done)
    path = tmp_path / "model.safetensors"
    save_file(first.state_dict(), str(path))
    optimizer_state = first_optimizer.state_dict()
    generator_state = first_generator.get_state()

    resumed = TinyModel(spec, seed=1)  # different weights and state until the load
    resumed.load_state_dict(load_file(str(path)))
    resumed_optimizer = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    resumed_optimizer.load_state_dict(optimizer_state)
    resumed_generator = torch.Generator()
    resumed_generator.set_state(generator_state)
    resumed_outputs = train(resumed, resumed_optimizer, resumed_generator, data[STEPS // 2 :])

    assert bool(resumed.aggregator.codebook_state.kmeans_done)
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    for expected, actual in zip(straight_outputs[STEPS // 2 :], resumed_outputs, strict=True):
        assert torch.equal(expected.slots, actual.slots)
        assert torch.equal(expected.keep, actual.keep) and torch.equal(expected.codes, actual.codes)
