"""Under DDP every rank ends each upkeep with bit-identical codebook state and takes the same prune path at
every step, though ranks see different data and draw from different random streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed as distributed
import torch.multiprocessing as multiprocessing
from safetensors.torch import load_file, save_file

from metaslot.models.aggregators import MetaSlot, MetaSlotSpec
from metaslot.runtime.distributed import all_gather_tensor, broadcast_state

WORLD_SIZE = 2
STEPS = 8
SPEC = MetaSlotSpec(
    num_slots=3,
    slot_dim=8,
    feature_dim=5,
    num_iterations=2,
    codebook_size=16,
    buffer_capacity=16,
    dead_code_timeout=2,  # ceil(2·16/16) = 2 steps: dead codes are replaced (with per-rank noise draws)
    prune_start=0.5,
)


def _worker(rank: int, folder: str) -> None:
    torch.set_num_threads(1)
    distributed.init_process_group(
        "gloo", init_method=f"file://{folder}/init", rank=rank, world_size=WORLD_SIZE
    )
    try:
        torch.manual_seed(0)  # same initial weights on every rank (DDP also broadcasts them)
        module = MetaSlot(SPEC)
        model = torch.nn.parallel.DistributedDataParallel(module)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        # Different data, different random draws and different global RNG states on each rank.
        data = torch.Generator().manual_seed(100 + rank)
        generator = torch.Generator().manual_seed(rank)
        torch.manual_seed(1000 + rank)
        kept_per_step, paths = [], []
        for _ in range(STEPS):
            paths.append(bool(module.prune_path()))
            output = model(torch.randn(2, 6, 5, generator=data), generator=generator)
            loss = output.slots.square().mean() + output.attention.square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            module.update_codebook(output, generator=generator)
            kept_per_step.append(int(output.keep.sum()))

        # The helpers themselves: gather concatenates in rank order, broadcast copies rank 0.
        gathered = all_gather_tensor(torch.full((2, 3), float(rank)))
        mask = all_gather_tensor(torch.tensor([rank == 0, rank == 1]))
        value = torch.tensor([float(rank)])
        broadcast_state([value])
        checks = {
            "gather": gathered[:, 0].tolist(),
            "mask": mask.tolist(),
            "broadcast": value.item(),
            "kept": kept_per_step,
            "paths": paths,
        }
        save_file(
            {name: tensor.contiguous() for name, tensor in module.state_dict().items()},
            f"{folder}/rank{rank}.safetensors",
        )
        Path(f"{folder}/rank{rank}.json").write_text(json.dumps(checks))
    finally:
        distributed.destroy_process_group()


@pytest.mark.distributed
def test_two_gloo_ranks_end_with_identical_codebook_state(tmp_path: Path) -> None:
    multiprocessing.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD_SIZE, join=True)
    states = [load_file(str(tmp_path / f"rank{rank}.safetensors")) for rank in range(WORLD_SIZE)]
    checks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]

    for name in states[0]:
        assert torch.equal(states[0][name], states[1][name]), name
    state = states[0]
    assert int(state["codebook_state.step_counter"]) == STEPS
    assert int(state["codebook_state.images_seen"]) == STEPS * 2 * WORLD_SIZE
    # The buffer holds the kept slots of both ranks (capacity 16 caps the count).
    total_kept = sum(sum(check["kept"]) for check in checks)
    assert int(state["codebook_state.buffer_fill"]) == min(16, total_kept)
    assert bool(state["codebook_state.kmeans_done"])

    # One prune-path decision per step for all ranks (p is about 0.5 here, so both paths occur).
    assert checks[0]["paths"] == checks[1]["paths"]
    assert len(set(checks[0]["paths"])) == 2

    for check in checks:
        assert check["gather"] == [0.0, 0.0, 1.0, 1.0]
        assert check["mask"] == [True, False, False, True]
        assert check["broadcast"] == 0.0


def test_helpers_are_no_ops_without_a_process_group() -> None:
    tensor = torch.randn(3, 2)
    assert all_gather_tensor(tensor) is tensor
    before = tensor.clone()
    broadcast_state([tensor])
    assert torch.equal(tensor, before)
