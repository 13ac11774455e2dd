"""torchrun integration: read RANK/WORLD_SIZE/LOCAL_RANK, start the process group, reduce metrics."""

from __future__ import annotations

import os

import attrs
import torch
import torch.distributed

from metaslot.train.errors import ConfigError


@attrs.frozen
class DistributedContext:
    """This process's place in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context_from_environment() -> DistributedContext:
    """The context torchrun describes through its environment variables (single process without them)."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as error:
        raise ConfigError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({error}); launch with torchrun"
        ) from error
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def start(context: DistributedContext, device: torch.device) -> None:
    """Join the process group (gloo on CPU, nccl on GPU) when torchrun started several processes."""
    if context.enabled and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(
            backend=backend, rank=context.rank, world_size=context.world_size
        )


def stop(context: DistributedContext) -> None:
    if context.enabled and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over processes (identity for a single process); returns the reduced tensor."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
