"""torchrun integration and the collectives, with one answer to "are we distributed?".

`context_from_environment` reads what torchrun says this process is (RANK, WORLD_SIZE, LOCAL_RANK);
`start` joins the process group when that names several processes. From then on `is_distributed()`, a
process group with more than one rank, is the one test the collectives, the training loop and the
codebook upkeep use; every collective is the identity for a single process. The context gives rank and
world size before the group exists (device choice, data sharding).

The collectives work with gloo (CPU tensors) and nccl (CUDA tensors): tensors are used where they live.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import attrs
import torch
import torch.distributed
from torch import Tensor

from metaslot.errors import ConfigError


@attrs.frozen
class DistributedContext:
    """This process's place in the job as torchrun describes it; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """torchrun started several processes (`start` joins them; `is_distributed` is then True)."""
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


def is_distributed() -> bool:
    """True when a process group is initialised and has more than one rank."""
    return (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    )


def has_process_group() -> bool:
    """True when a process group is initialised (of any size, one rank included)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def world_size() -> int:
    """Processes in the group (1 without one)."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def process_rank() -> int:
    """This process's rank in the group (0 without one)."""
    return torch.distributed.get_rank() if is_distributed() else 0


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum over processes, in place (identity for a single process); returns the reduced tensor."""
    if is_distributed():
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
    return tensor


def all_gather_tensor(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 (rank order); returns it unchanged when alone.

    Every rank must pass the same shape and dtype (equal per-rank batch sizes, as a DistributedSampler
    with ``drop_last=True`` gives). Bool tensors are gathered as uint8 (gloo has no bool).
    """
    if not is_distributed():
        return tensor
    sent = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor
    sent = sent.contiguous()
    parts = [torch.empty_like(sent) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, sent)
    gathered = torch.cat(parts, dim=0)
    return gathered.to(torch.bool) if tensor.dtype == torch.bool else gathered


def broadcast_state(tensors: Iterable[Tensor], source: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``source``'s values so all ranks are bit-identical."""
    if not is_distributed():
        return
    for tensor in tensors:
        if tensor.dtype == torch.bool:
            staged = tensor.to(torch.uint8)
            torch.distributed.broadcast(staged, src=source)
            tensor.copy_(staged.to(torch.bool))
        else:
            torch.distributed.broadcast(tensor.data, src=source)


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()
