"""MetaSlot's codebook and everything its upkeep changes, as a parameter and registered buffers.

Deviations from the reference (``spec/paper.md`` §2.10, §5): the ring buffer starts empty with a fill
count (never random filler), so the codes unused by the first batch, dead at once as in the reference
(its counters start at 1), are replaced by real slots rather than noise; the one-off k-means waits until
the buffer holds enough real slots and starts from random distinct buffer rows (the reference started
from its near-zero codebook, leaving most codes in empty clusters), and afterwards the codes whose
cluster stayed empty are dead at once instead of idling for a whole timeout; counters, flags and the
step are buffers, so a resume continues exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from metaslot.models.aggregators.specs import MetaSlotSpec
from metaslot.models.records import CodebookStatistics
from metaslot.ops.codebook import (
    RingBuffer,
    buffer_code_usage,
    cluster_means,
    dead_code_timeout_steps,
    filled_rows,
    kmeans,
    kmeans_ema_step,
    replace_dead_codes,
    sample_filled_rows,
    update_usage_counters,
    write_ring_buffer,
)
from metaslot.ops.metrics import usage_perplexity
from metaslot.ops.quantize import quantize
from metaslot.runtime.distributed import broadcast_state


class CodebookState(nn.Module):
    """Codebook ``(m, d)`` parameter plus counters, ring buffer, step counter and k-means flag buffers."""

    def __init__(self, spec: MetaSlotSpec) -> None:
        super().__init__()
        self.spec = spec
        size, width, capacity = spec.codebook_size, spec.slot_dim, spec.buffer_capacity
        self.timeout_steps = dead_code_timeout_steps(spec.dead_code_timeout, size, capacity)
        # The one-off k-means needs as many real slots as codes, or a full buffer when it is smaller.
        self.kmeans_init_threshold = min(size, capacity)
        self.codebook = nn.Parameter(torch.empty(size, width).uniform_(-1.0 / size, 1.0 / size))
        # 0 = dead: a code no slot has chosen yet is replaced as soon as the buffer holds real slots.
        self.register_buffer("usage_counters", torch.zeros(size, dtype=torch.long))
        self.register_buffer("buffer_vectors", torch.zeros(capacity, width))
        self.register_buffer("buffer_pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("buffer_fill", torch.zeros((), dtype=torch.long))
        self.register_buffer("step_counter", torch.zeros((), dtype=torch.long))
        self.register_buffer("kmeans_done", torch.zeros((), dtype=torch.bool))
        # Images whose slots went through the upkeep: every image keeps at least one slot, so
        # min(images_seen, capacity) is a lower bound on buffer_fill that the host can know without
        # reading the device (unless all of an image's slots were non-finite and left out: the one-off
        # k-means then reads fewer real slots, still only filled rows). Persisted (so a resume decides
        # the one-off k-means exactly as an uninterrupted run) and mirrored on the host; the mirrors are
        # re-derived on every load.
        self.register_buffer("images_seen", torch.zeros((), dtype=torch.long))
        self._images_seen_host = 0
        self._kmeans_done_host = False
        # Seeds the counter-based prune-path draw (`counter_uniform(path_seed, step_counter)`): one
        # decision per step, the same on every rank. Drawn from the global RNG at construction, so it
        # follows the run's seed (all ranks build the model from the same seed); never changes after.
        self.register_buffer("path_seed", torch.randint(0, 2**31 - 1, (), dtype=torch.long))

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Tensor],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if prefix + "path_seed" not in state_dict and prefix + "path_seed" in missing_keys:
            # Checkpoints from before the counter-based path draw: keep the seed drawn at construction.
            missing_keys.remove(prefix + "path_seed")
        # Loading is not a hot path: one read of two scalars re-derives the host-side mirrors.
        self._images_seen_host = int(self.images_seen)
        self._kmeans_done_host = bool(self.kmeans_done)

    def ring_buffer(self) -> RingBuffer:
        return RingBuffer(vectors=self.buffer_vectors, pointer=self.buffer_pointer, fill=self.buffer_fill)

    def _synchronised(self) -> list[Tensor]:
        return [
            self.codebook.data,
            self.usage_counters,
            self.buffer_vectors,
            self.buffer_pointer,
            self.buffer_fill,
            self.step_counter,
            self.kmeans_done,
            self.images_seen,
        ]

    @torch.no_grad()
    def upkeep(
        self,
        slots: Float[Tensor, "v d"],
        valid: Bool[Tensor, " v"],
        *,
        num_images: int,
        generator: torch.Generator | None = None,
    ) -> None:
        """One upkeep step on final slots (already gathered from all ranks); updates state in place.

        Slots holding NaN or ±inf are treated as invalid (and zeroed, since a masked NaN still poisons
        sums): they never reach the ring buffer, the usage counters, the k-means steps or the codebook.
        A masked write, so no host sync.
        """
        spec = self.spec
        slots = slots.to(self.buffer_vectors.dtype)
        finite = torch.isfinite(slots).all(dim=-1)
        valid = valid & finite
        slots = torch.where(finite[:, None], slots, torch.zeros_like(slots))

        buffer = write_ring_buffer(self.ring_buffer(), slots, valid)
        self.buffer_vectors.copy_(buffer.vectors)
        self.buffer_pointer.copy_(buffer.pointer)
        self.buffer_fill.copy_(buffer.fill)
        self.images_seen.add_(num_images)
        self._images_seen_host += num_images

        if (
            spec.kmeans_init
            and not self._kmeans_done_host
            and self._images_seen_host >= self.kmeans_init_threshold
        ):
            # One-off: decided from host-side ints only; the lower bound guarantees enough real slots.
            filled = filled_rows(self.ring_buffer())
            seeds = sample_filled_rows(self.ring_buffer(), spec.codebook_size, generator)
            centres = kmeans(self.buffer_vectors, filled, seeds, spec.kmeans_init_iterations)
            self.codebook.data.copy_(centres)
            # A new codebook: codes that own buffered slots start a fresh timeout, the others are dead
            # now (replaced below) instead of idling for a timeout they inherited from the old codes.
            _, owns_slots = cluster_means(centres, self.buffer_vectors, filled)
            self.usage_counters.copy_(torch.where(owns_slots, self.timeout_steps, 0))
            self.kmeans_done.fill_(True)
            self._kmeans_done_host = True

        # Quantised after the one-off k-means, so the usage refers to the codes as they now are.
        codes = quantize(slots[None], self.codebook).codes[0]
        counters = update_usage_counters(self.usage_counters, codes, valid, self.timeout_steps)
        if spec.codebook_update in ("kmeans", "both"):
            self.codebook.data.copy_(kmeans_ema_step(self.codebook.data, slots, valid, spec.kmeans_decay))
        codebook, counters = replace_dead_codes(
            self.codebook.data,
            counters,
            self.ring_buffer(),
            timeout_steps=self.timeout_steps,
            rate=spec.replacement_rate,
            relative_noise=spec.replacement_noise,
            generator=generator,
        )
        self.codebook.data.copy_(codebook)
        self.usage_counters.copy_(counters)
        self.step_counter.add_(1)
        # Every rank did the same work on the same gathered slots; rank 0's random draws win.
        broadcast_state(self._synchronised())

    @torch.no_grad()
    def statistics(self) -> CodebookStatistics:
        """Codes in use and perplexity among the ring buffer's slots (the last ``buffer_capacity`` kept
        slots) under the current codebook; no host sync."""
        usage = buffer_code_usage(self.ring_buffer(), self.codebook)
        return CodebookStatistics(codes_in_use=(usage > 0).sum(), perplexity=usage_perplexity(usage))
