"""Peak memory of one call: CUDA's allocator statistics on a GPU, a tensor-storage tracker on the CPU.

The CPU has no allocator statistics, so `peak_new_bytes` runs the call once under a dispatch mode that
counts the bytes of every storage an operator creates while it is alive (freed storages are subtracted
through a weak reference). It counts tensors made during the call (activations, gradients, temporaries,
optimiser state made on first use), not those alive before it (parameters, inputs); the call runs slower
under the mode, so it is measured outside the timed repeats.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _StorageTracker(TorchDispatchMode):
    """Live and peak bytes of the storages created under the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        output = func(*args, **(kwargs or {}))
        inputs = {
            leaf.untyped_storage().data_ptr()
            for leaf in tree_leaves((args, kwargs))
            if isinstance(leaf, torch.Tensor)
        }
        for leaf in tree_leaves(output):
            if isinstance(leaf, torch.Tensor):
                self._track(leaf, inputs)
        return output

    def _track(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        # Views and in-place results share an input's storage; an empty storage holds nothing.
        if pointer in inputs or pointer in self.live or storage.nbytes() == 0:
            return
        self.live[pointer] = storage.nbytes()
        self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, pointer)

    def _free(self, pointer: int) -> None:
        self.current -= self.live.pop(pointer, 0)


def peak_new_bytes(call: Callable[[], object], device: torch.device) -> int:
    """Most bytes held at once by tensors made during one ``call`` (on CUDA: allocator peak above the start)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        call()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    tracker = _StorageTracker()
    with tracker:
        call()
    return tracker.peak
