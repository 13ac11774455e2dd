"""The two collectives the codebook upkeep needs; both are no-ops without ``torch.distributed``.

Work with gloo (CPU tensors) and nccl (CUDA tensors): the tensors are used where they live.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as distributed
from torch import Tensor


def is_distributed() -> bool:
    """True when a process group is initialised and has more than one rank."""
    return distributed.is_available() and distributed.is_initialized() and distributed.get_world_size() > 1


def world_size() -> int:
    return distributed.get_world_size() if is_distributed() else 1


def all_gather_tensor(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 (rank order); returns it unchanged when alone.

    Every rank must pass the same shape and dtype (equal per-rank batch sizes, as a DistributedSampler
    with ``drop_last=True`` gives). Bool tensors are gathered as uint8 (gloo has no bool).
    """
    if not is_distributed():
        return tensor
    sent = tensor.to(torch.uint8) if tensor.dtype == torch.bool else tensor
    sent = sent.contiguous()
    parts = [torch.empty_like(sent) for _ in range(distributed.get_world_size())]
    distributed.all_gather(parts, sent)
    gathered = torch.cat(parts, dim=0)
    return gathered.to(torch.bool) if tensor.dtype == torch.bool else gathered


def broadcast_state(tensors: Iterable[Tensor], source: int = 0) -> None:
    """Overwrite ``tensors`` in place with rank ``source``'s values so all ranks are bit-identical."""
    if not is_distributed():
        return
    for tensor in tensors:
        if tensor.dtype == torch.bool:
            staged = tensor.to(torch.uint8)
            distributed.broadcast(staged, src=source)
            tensor.copy_(staged.to(torch.bool))
        else:
            distributed.broadcast(tensor.data, src=source)
