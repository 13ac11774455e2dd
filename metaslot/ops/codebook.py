"""Codebook upkeep as pure state transitions: ring buffer, usage counters, dead-code replacement, k-means.

Paper §2.10 and reference §1.4.3, with the reference's bugs fixed (DESIGN.md "MetaSlot semantics" item 7):
the buffer starts empty and tracks how many rows are real (no random filler), writes never collide, and
every function returns new tensors instead of mutating its inputs. No host sync anywhere (no ``.item()``,
``nonzero``, ``unique`` or Python loops over codes or vectors), so the upkeep can run under torch.compile
and inside a training step without stalling the device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from metaslot.ops.checks import check_shapes
from metaslot.ops.quantize import quantize, squared_distances

__all__ = [
    "RingBuffer",
    "buffer_code_usage",
    "cluster_means",
    "dead_code_timeout_steps",
    "empty_ring_buffer",
    "filled_rows",
    "kmeans",
    "kmeans_ema_step",
    "replace_dead_codes",
    "sample_filled_rows",
    "update_usage_counters",
    "write_ring_buffer",
]


@dataclass(frozen=True)
class RingBuffer:
    """First-in first-out store of recent slot vectors.

    ``pointer`` is the next row to write; ``fill`` how many rows hold real vectors (at most the capacity).
    The real rows are the ``fill`` rows just before ``pointer`` (cyclically); the others must never be used.
    """

    vectors: Float[Tensor, "c d"]
    pointer: Int[Tensor, ""]
    fill: Int[Tensor, ""]


def empty_ring_buffer(
    capacity: int, width: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> RingBuffer:
    """A buffer of ``capacity`` zero rows, nothing filled yet."""
    if capacity < 1 or width < 1:
        raise ValueError(f"ring buffer capacity ({capacity}) and width ({width}) must be at least 1")
    return RingBuffer(
        vectors=torch.zeros(capacity, width, device=device, dtype=dtype),
        pointer=torch.zeros((), dtype=torch.long, device=device),
        fill=torch.zeros((), dtype=torch.long, device=device),
    )


def write_ring_buffer(
    buffer: RingBuffer, vectors: Float[Tensor, "v d"], valid: Bool[Tensor, " v"]
) -> RingBuffer:
    """Append the ``valid`` rows of ``vectors`` in order, overwriting the oldest rows when full.

    Valid row number r (counting valid rows only) goes to ``(pointer + r) % capacity``. When more rows are
    valid than the buffer holds, only the last ``capacity`` are written, so no two writes hit the same row
    (the reference's colliding scatter was nondeterministic).
    """
    check_shapes(
        "write_ring_buffer",
        buffer_vectors=(buffer.vectors, "c d", "float"),
        vectors=(vectors, "v d", "float"),
        valid=(valid, "v", "bool"),
    )
    capacity = buffer.vectors.shape[0]
    valid_count = valid.long()
    num_valid = valid_count.sum()
    rank = valid_count.cumsum(dim=0) - 1
    written = valid & (rank >= num_valid - capacity)
    # Rows that are not written go to a scratch row past the end, dropped afterwards: static shapes.
    positions = torch.where(written, (buffer.pointer + rank) % capacity, capacity)
    scratch = buffer.vectors.new_zeros(1, buffer.vectors.shape[1])
    extended = torch.cat([buffer.vectors, scratch], dim=0)
    extended = extended.index_copy(0, positions, vectors.to(buffer.vectors.dtype).detach())
    return RingBuffer(
        vectors=extended[:capacity],
        pointer=(buffer.pointer + num_valid) % capacity,
        fill=torch.clamp(buffer.fill + num_valid, max=capacity),
    )


def filled_rows(buffer: RingBuffer) -> Bool[Tensor, " c"]:
    """Which rows hold real vectors: the ``fill`` rows written most recently before ``pointer``."""
    capacity = buffer.vectors.shape[0]
    rows = torch.arange(capacity, device=buffer.vectors.device)
    age = (buffer.pointer - 1 - rows) % capacity  # 0 for the newest row
    return age < buffer.fill


def sample_filled_rows(
    buffer: RingBuffer, count: int, generator: torch.Generator | None = None
) -> Float[Tensor, "m d"]:
    """``count`` filled rows in random order: distinct while the buffer holds at least ``count`` rows,
    repeated cyclically when it holds fewer. Seeds the one-off k-means with real slots (Forgy), where
    the reference started from its near-zero codebook and left most codes in empty clusters.

    ``generator`` (on the buffer's device) draws the order; nothing is read on the host. An empty buffer
    gives its (zero) first rows.
    """
    if count < 1:
        raise ValueError(f"count ({count}) must be at least 1")
    capacity = buffer.vectors.shape[0]
    keys = torch.rand(capacity, generator=generator, device=buffer.vectors.device)
    # Unfilled rows sort after every filled one (keys of filled rows lie in [0, 1)).
    keys = torch.where(filled_rows(buffer), keys, -1.0)
    order = torch.argsort(keys, descending=True)
    picks = torch.arange(count, device=buffer.vectors.device) % buffer.fill.clamp_min(1)
    return buffer.vectors[order[picks]]


def buffer_code_usage(buffer: RingBuffer, codebook: Float[Tensor, "m d"]) -> Float[Tensor, " m"]:
    """How many filled rows of the buffer (the most recent kept slots) each code is nearest to; no host sync."""
    codes = quantize(buffer.vectors[None], codebook.detach()).codes[0]
    filled = filled_rows(buffer).to(torch.float32)
    return torch.zeros(codebook.shape[0], device=codebook.device).scatter_add(0, codes, filled)


def dead_code_timeout_steps(timeout_vectors: int, codebook_size: int, buffer_capacity: int) -> int:
    """Steps a code may go unused before it is dead: the reference's ``ceil(timeout·K / capacity)``.

    The timeout is given in vectors; with ``capacity`` vectors seen per step on average over ``K`` codes,
    this converts it to optimiser steps (e.g. 4096 vectors, K=512, capacity 896 → 2341 steps).
    """
    for name, value in (
        ("timeout_vectors", timeout_vectors),
        ("codebook_size", codebook_size),
        ("buffer_capacity", buffer_capacity),
    ):
        if value < 1:
            raise ValueError(f"{name} ({value}) must be at least 1")
    return math.ceil(timeout_vectors * codebook_size / buffer_capacity)


def update_usage_counters(
    counters: Int[Tensor, " m"], codes: Int[Tensor, " v"], valid: Bool[Tensor, " v"], timeout_steps: int
) -> Int[Tensor, " m"]:
    """Count every code down by one (floored at 0); codes used by a valid vector restart at ``timeout_steps``.

    Codes of invalid vectors are ignored (they may be -1); codes of valid vectors must lie in ``[0, m)``.
    """
    check_shapes(
        "update_usage_counters",
        counters=(counters, "m", "integer"),
        codes=(codes, "v", "integer"),
        valid=(valid, "v", "bool"),
    )
    if timeout_steps < 1:
        raise ValueError(f"timeout_steps ({timeout_steps}) must be at least 1")
    uses = torch.zeros_like(counters).scatter_add(0, torch.where(valid, codes, 0), valid.to(counters.dtype))
    return torch.where(uses > 0, timeout_steps, (counters - 1).clamp_min(0))


def replace_dead_codes(
    codebook: Float[Tensor, "m d"],
    counters: Int[Tensor, " m"],
    buffer: RingBuffer,
    *,
    timeout_steps: int,
    rate: float = 0.8,
    relative_noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> tuple[Float[Tensor, "m d"], Int[Tensor, " m"]]:
    """Move dead codes (counter 0) onto buffered vectors far from the live codes; returns (codebook, counters).

    Candidates are the filled buffer rows ranked by mean Euclidean distance to the active codes, largest
    first (the reference's "least similar" policy; the whole codebook when no code is active). The j-th dead
    code in index order takes candidate ``j mod fill``, perturbed by ``relative_noise·‖x‖·ε``, and becomes
    ``(1−rate)·e + rate·x̃``; its counter gains ``timeout_steps``. Nothing changes when the buffer is empty
    or no code is dead. ``generator`` (on the codebook's device) draws ε.
    """
    check_shapes(
        "replace_dead_codes",
        codebook=(codebook, "m d", "float"),
        counters=(counters, "m", "integer"),
        buffer_vectors=(buffer.vectors, "c d", "float"),
    )
    if not 0 <= rate <= 1:
        raise ValueError(f"replacement rate ({rate}) must lie in [0, 1]")
    if not 0 <= relative_noise < math.inf:  # also refuses NaN
        raise ValueError(f"relative_noise ({relative_noise}) must be non-negative and finite")
    if timeout_steps < 1:
        raise ValueError(f"timeout_steps ({timeout_steps}) must be at least 1")
    codebook32 = codebook.detach().float()
    buffered = buffer.vectors.detach().float()
    dead = counters == 0
    active = ~dead
    reference_codes = torch.where(active.any(), active, torch.ones_like(active)).float()
    distances = squared_distances(buffered, codebook32).sqrt()  # c m
    mean_distance = (distances @ reference_codes) / reference_codes.sum()
    mean_distance = torch.where(filled_rows(buffer), mean_distance, -torch.inf)
    # Filled rows come first (unfilled ones sit at -inf), farthest first; stable so ties keep row order.
    candidate_order = torch.sort(mean_distance, descending=True, stable=True).indices
    dead_rank = dead.long().cumsum(dim=0) - 1
    candidate_rows = candidate_order[dead_rank.clamp_min(0) % buffer.fill.clamp_min(1)]
    candidates = buffered[candidate_rows]  # m d: one candidate per code, used only where dead
    unit_noise = torch.randn(
        codebook32.shape, generator=generator, device=codebook32.device, dtype=torch.float32
    )
    perturbed = candidates + relative_noise * candidates.norm(dim=-1, keepdim=True) * unit_noise
    replaced = (1.0 - rate) * codebook32 + rate * perturbed
    replace = dead & (buffer.fill > 0)
    new_codebook = torch.where(replace[:, None], replaced, codebook32).to(codebook.dtype)
    new_counters = torch.where(replace, counters + timeout_steps, counters)
    return new_codebook, new_counters


def cluster_means(
    centres: Float[Tensor, "m d"], vectors: Float[Tensor, "v d"], valid: Bool[Tensor, " v"]
) -> tuple[Float[Tensor, "m d"], Bool[Tensor, " m"]]:
    """Mean of the valid vectors nearest to each centre (float32), and which centres got any vector."""
    vectors32 = vectors.detach().float()
    assignment = squared_distances(vectors32, centres.detach()).argmin(dim=-1)
    weights = valid.float()
    sums = torch.zeros(centres.shape, dtype=torch.float32, device=centres.device).index_add(
        0, assignment, vectors32 * weights[:, None]
    )
    counts = torch.zeros(centres.shape[0], dtype=torch.float32, device=centres.device).index_add(
        0, assignment, weights
    )
    return sums / counts.clamp_min(1.0)[:, None], counts > 0


def kmeans_ema_step(
    codebook: Float[Tensor, "m d"], vectors: Float[Tensor, "v d"], valid: Bool[Tensor, " v"], decay: float
) -> Float[Tensor, "m d"]:
    """One mini-batch k-means step: each used code moves to ``decay·e + (1−decay)·mean(assigned vectors)``.

    Codes no valid vector is nearest to stay where they are.
    """
    check_shapes(
        "kmeans_ema_step",
        codebook=(codebook, "m d", "float"),
        vectors=(vectors, "v d", "float"),
        valid=(valid, "v", "bool"),
    )
    if not 0 <= decay <= 1:
        raise ValueError(f"decay ({decay}) must lie in [0, 1]")
    means, used = cluster_means(codebook, vectors, valid)
    codebook32 = codebook.detach().float()
    moved = decay * codebook32 + (1.0 - decay) * means
    return torch.where(used[:, None], moved, codebook32).to(codebook.dtype)


def kmeans(
    vectors: Float[Tensor, "v d"],
    valid: Bool[Tensor, " v"],
    initial: Float[Tensor, "m d"],
    iterations: int = 20,
) -> Float[Tensor, "m d"]:
    """Lloyd's k-means over the valid vectors from ``initial`` centres, for a fixed number of iterations.

    Empty clusters keep their centre. No convergence test: a data-dependent stop would need a host sync.
    """
    check_shapes(
        "kmeans",
        vectors=(vectors, "v d", "float"),
        valid=(valid, "v", "bool"),
        initial=(initial, "m d", "float"),
    )
    if iterations < 0:
        raise ValueError(f"iterations ({iterations}) must be non-negative")
    centres = initial.detach().float()
    for _ in range(iterations):
        means, used = cluster_means(centres, vectors, valid)
        centres = torch.where(used[:, None], means, centres)
    return centres.to(initial.dtype)
