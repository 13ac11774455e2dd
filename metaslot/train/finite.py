"""Are the weights and the optimiser state still finite? One fused reduction, read with the step's loss.

`nonfinite_count` runs one ``torch._foreach_norm(..., inf)`` (the largest magnitude of each tensor:
NaN for a tensor holding a NaN, inf for one holding an inf, never an overflow) per device and dtype,
then counts the tensors whose value is not finite, as a 0-d tensor on the device: no host sync. The
loop stacks it with the step's loss, so both arrive in the one host read each step already had.
`nonfinite_names` (per tensor, with a sync each) is for the error message only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import torch
from torch import Tensor


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    """The optimiser's floating-point state tensors (Adam's moments; not its scalar step counters)."""
    return [
        value
        for state in optimizer.state.values()
        for value in state.values()
        if isinstance(value, Tensor) and value.is_floating_point() and value.dim() > 0
    ]


def training_state(
    parameters: Iterable[Tensor], module: torch.nn.Module, optimizer: torch.optim.Optimizer | None
) -> list[Tensor]:
    """``parameters``, the module's floating-point buffers (a codebook) and the optimiser's state tensors."""
    buffers = (buffer for buffer in module.buffers() if buffer.is_floating_point())
    tensors = [
        tensor.detach() for tensor in itertools.chain(parameters, buffers) if tensor.is_floating_point()
    ]
    return tensors + (optimizer_tensors(optimizer) if optimizer is not None else [])


def nonfinite_count(tensors: list[Tensor], device: torch.device) -> Tensor:
    """How many of ``tensors`` hold a NaN or an infinity, as a float32 0-d tensor on ``device`` (no sync)."""
    groups: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
    for tensor in tensors:
        if tensor.numel():
            groups.setdefault((tensor.device, tensor.dtype), []).append(tensor)
    count = torch.zeros((), dtype=torch.float32, device=device)
    for group in groups.values():
        largest = torch.stack(torch._foreach_norm(group, float("inf")))
        count = count + (~largest.isfinite()).sum().to(device=device, dtype=torch.float32)
    return count


def nonfinite_names(module: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> list[str]:
    """Names of the module's state entries and optimiser state tensors that are not finite (slow: for messages)."""
    names = [
        name
        for name, tensor in module.state_dict().items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if optimizer is not None:
        parameter_names = {id(parameter): name for name, parameter in module.named_parameters()}
        for parameter, state in optimizer.state.items():
            for key, value in state.items():
                if (
                    isinstance(value, Tensor)
                    and value.is_floating_point()
                    and not bool(value.isfinite().all())
                ):
                    names.append(f"optimizer {key} of {parameter_names.get(id(parameter), 'a parameter')}")
    return names


def describe(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
