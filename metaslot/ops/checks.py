"""Entry checks of the public ops: the argument's name, its shape and the shape it should have.

`check_shapes` runs on every call, with shape checking on or off: it reads only ranks, sizes and
dtypes (Python ints the tensor already carries), so it costs microseconds, never synchronises with the
device and traces under ``torch.compile(fullgraph=True)``. Without it a tensor of the wrong rank failed
deep inside the op ("not enough values to unpack", "batch1 must be a 3D tensor"). With
``METASLOT_TYPECHECK=1`` jaxtyping and beartype check the annotations first; this check then agrees with
them and adds nothing.

`check_finite` reads values, so it runs only with shape checking on (a debugging mode): it raises
`NonFiniteError` on the CPU, and on an accelerator it is a device-side assertion
(``torch._assert_async``), which fails the process at the next synchronisation without stalling the
device in between.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from metaslot.errors import DataError
from metaslot.typechecking import typechecking_enabled

__all__ = ["NonFiniteError", "ShapeError", "check_finite", "check_shapes"]

DtypeKind = Literal["float", "integer", "bool"] | None
"""What a tensor must hold: floating point, integers (not bool), bool, or anything (None)."""

# Read once, like the import hook itself (installed when `metaslot` is first imported).
_VALUE_CHECKS = typechecking_enabled()

_DTYPE_WORDS = {"float": "floating-point", "integer": "integer", "bool": "bool"}


class ShapeError(DataError):
    """An op got a tensor of the wrong rank, size or dtype; the message names the argument and both shapes."""


class NonFiniteError(DataError):
    """An op got NaN or infinite values where its result would be meaningless (checked with shape checking on)."""


def _dtype_matches(dtype: torch.dtype, kind: DtypeKind) -> bool:
    if kind == "float":
        return dtype.is_floating_point
    if kind == "bool":
        return dtype == torch.bool
    if kind == "integer":
        return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
    return True


def check_shapes(op: str, **arguments: tuple[Tensor | None, str, DtypeKind]) -> None:
    """Check each ``name=(tensor, "b k d", kind)``; an axis name means the same size in every argument.

    ``None`` tensors (optional arguments) are skipped. Raises `ShapeError` naming the op, the argument,
    its shape or dtype, and what was expected (with the sizes already fixed by earlier arguments).
    About a microsecond per argument: it runs on every call of every public op.
    """
    sizes: dict[str, int] = {}
    sources: dict[str, str] = {}
    for name, (tensor, axes, kind) in arguments.items():
        if tensor is None:
            continue
        if not isinstance(tensor, Tensor):
            raise ShapeError(
                f"{op}: {name} must be a torch.Tensor of shape ({axes}), got {type(tensor).__name__}"
            )
        names = axes.split()
        shape = tensor.shape
        if len(shape) != len(names):
            raise ShapeError(
                f"{op}: {name} has shape {tuple(shape)} but must have {len(names)} axes "
                f"({_expected(names, sizes)}); add or remove the missing batch/slot axis"
            )
        if kind is not None and not _dtype_matches(tensor.dtype, kind):
            raise ShapeError(
                f"{op}: {name} has dtype {tensor.dtype} but must hold {_DTYPE_WORDS[kind]} values "
                f"(shape ({axes})); convert it, e.g. .float(), .long() or .bool()"
            )
        for axis, size in zip(names, shape):  # noqa: B905 - ranks checked above
            bound = sizes.setdefault(axis, size)
            if bound != size:
                raise ShapeError(
                    f"{op}: {name} has shape {tuple(shape)} ({axes}) but {axis}={bound} from "
                    f"{sources[axis]}; expected ({_expected(names, sizes)})"
                )
            sources.setdefault(axis, name)


def _expected(names: list[str], sizes: dict[str, int]) -> str:
    return ", ".join(f"{axis}={sizes[axis]}" if axis in sizes else axis for axis in names)


def check_finite(op: str, advice: str, **tensors: Tensor) -> None:
    """With shape checking on: raise `NonFiniteError` when a tensor holds NaN or ±inf (no host sync).

    ``advice`` says what to do about it. A no-op with shape checking off and under ``torch.compile``.
    """
    if not _VALUE_CHECKS or torch.compiler.is_compiling():
        return
    for name, tensor in tensors.items():
        message = f"{op}: {name} (shape {tuple(tensor.shape)}) holds NaN or infinite values; {advice}"
        try:
            torch._assert_async(torch.isfinite(tensor).all(), message)
        except RuntimeError as error:  # raised at once on the CPU; asynchronous on accelerators
            raise NonFiniteError(message) from error
