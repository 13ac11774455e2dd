"""MetaSlot: Slot Attention that finds duplicate slots through a global codebook and prunes them.

Forward (paper §2, DESIGN.md "MetaSlot semantics we implement"):
stage 1 runs T iterations from the detached initial slots without autograd; each slot is quantised to
its nearest prototype; per image the first slot of each code survives; stage 2 runs T masked iterations
from the prototypes (pruned rows zeroed), with a straight-through term to the initial slots before its
last iteration. In training the prune path is taken with probability p(step) (one counter-based draw per
optimiser step on the device, the same on every rank), otherwise stage 2 starts from all prototypes
unmasked; evaluation always prunes.
The codebook upkeep is a separate method the training loop calls after the optimiser step.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from metaslot.models.aggregators.codebook_state import CodebookState
from metaslot.models.aggregators.slot_attention import SlotAttentionWeights
from metaslot.models.aggregators.specs import MetaSlotSpec
from metaslot.models.records import AggregatorOutput, CodebookStatistics
from metaslot.ops.dedup import prune_duplicates
from metaslot.ops.noise import counter_uniform, prune_probability
from metaslot.ops.quantize import quantize
from metaslot.ops.slot_attention import aggregate
from metaslot.runtime.distributed import all_gather_tensor, world_size


class MetaSlot(SlotAttentionWeights):
    """Drop-in replacement for a Slot Attention module (same weights, same call, same output record).

    Built from its spec: ``MetaSlotSpec(num_slots=7, slot_dim=64, feature_dim=32).build()`` (which is
    ``MetaSlot(spec)``). When the caller passes ``initial_slots`` the
    module's own initialiser is unused (under DDP, freeze it or use ``find_unused_parameters``).
    State that changes during training (codebook,
    usage counters, ring buffer, step counter, k-means flag) lives in ``codebook_state`` as a parameter
    and registered buffers, so it checkpoints, moves with ``.to()`` and is synchronised under DDP.
    """

    spec: MetaSlotSpec

    def __init__(self, spec: MetaSlotSpec) -> None:
        super().__init__(spec)
        self.codebook_state = CodebookState(spec)
        # Parameters that can never receive a gradient are frozen, so DDP (without
        # find_unused_parameters) does not wait for them: the codebook when only k-means moves it, and
        # the initialiser when no straight-through term reaches it (stage 1 starts from detached slots).
        if spec.codebook_update == "kmeans":
            self.codebook_state.codebook.requires_grad_(False)
        if not spec.straight_through:
            self.initializer.requires_grad_(False)

    @property
    def codebook(self) -> Float[Tensor, "m d"]:
        """The prototypes (an ``nn.Parameter``)."""
        return self.codebook_state.codebook

    @property
    def codebook_size(self) -> int:
        """m, the number of prototypes (`metaslot.models.interfaces.Aggregator`)."""
        return self.spec.codebook_size

    def _prototype_source(self) -> Float[Tensor, "m d"]:
        # Gradient reaches the prototypes only when the spec says the optimiser trains them.
        if self.spec.codebook_update in ("gradient", "both"):
            return self.codebook_state.codebook
        return self.codebook_state.codebook.detach()

    def prune_path(self) -> Bool[Tensor, ""]:
        """Whether a forward now takes the prune-and-mask path: always at evaluation, else u < p(step).

        ``u = counter_uniform(path_seed, step)``: one draw per optimiser step, derived from the seed buffer
        and the step counter on the device (no host sync, no generator), so every micro-batch of a step
        and every rank under DDP take the same path.
        """
        state = self.codebook_state
        if not self.training:
            return torch.ones((), dtype=torch.bool, device=state.step_counter.device)
        probability = prune_probability(state.step_counter, self.spec.prune_start, self.spec.prune_growth)
        return counter_uniform(state.path_seed, state.step_counter) < probability

    def forward(
        self,
        features: Float[Tensor, "b n c"],
        initial_slots: Float[Tensor, "b k d"] | None = None,
        generator: torch.Generator | None = None,
    ) -> AggregatorOutput:
        """Aggregate ``features`` into slots; ``generator`` (on the features' device, or None for the global
        RNG) supplies every random draw (initial-slot noise, key/value noise, Gumbel noise) but the path
        draw, which comes from ``(path_seed, step_counter)`` (see `prune_path`).
        """
        spec = self.spec
        self.check_features(features)
        initial = self.initial_slots(features, initial_slots, generator)
        features_normed = self.norm_features(features)
        noisy = self.training or spec.noise_at_eval
        # Clean read-outs of both stages share one projection, unless reading the features directly is cheaper.
        source = self.key_value_source(features_normed, initial.shape[1], 2 * spec.num_iterations)

        # Stage 2 starts from (detached) prototypes, so stage 1 never needs a graph.
        with torch.no_grad():
            middle = aggregate(
                initial.detach(),
                features_normed,
                self.layers(),
                spec.num_iterations,
                noise_weight=spec.noise_weight if noisy and spec.noise_stages == "both" else 0.0,
                generator=generator,
                source=source,
                epsilon=spec.epsilon,
            ).slots
        quantized = quantize(
            middle,
            self._prototype_source(),
            gumbel=spec.quantizer == "gumbel" and self.training,
            generator=generator,
        )
        keep: Bool[Tensor, "b k"] = prune_duplicates(quantized.codes) | ~self.prune_path()
        # Pruned rows start stage 2 at zero, as the reference's dedup writes them.
        start = torch.where(keep[:, :, None], quantized.prototypes, torch.zeros_like(quantized.prototypes))
        final = aggregate(
            start,
            features_normed,
            self.layers(),
            spec.num_iterations,
            keep=keep,
            noise_weight=spec.noise_weight if noisy else 0.0,
            generator=generator,
            straight_through=initial if spec.straight_through else None,
            source=source,
            epsilon=spec.epsilon,
        )
        codes: Int[Tensor, "b k"] = torch.where(keep, quantized.codes, torch.full_like(quantized.codes, -1))
        return AggregatorOutput(slots=final.slots, attention=final.attention, keep=keep, codes=codes)

    def codebook_statistics(self) -> CodebookStatistics:
        """Codes in use and their perplexity among the recent kept slots (the ring buffer); no host sync."""
        return self.codebook_state.statistics()

    @torch.no_grad()
    def update_codebook(self, output: AggregatorOutput, generator: torch.Generator | None = None) -> None:
        """Codebook upkeep after the optimiser step (no gradient, no host sync).

        Re-quantises the final kept slots (gathered from all ranks under DDP) with the exact nearest
        prototype, writes them to the ring buffer, refreshes usage counters, replaces dead codes (noise
        from ``generator``, on the codebook's device, or None for the global RNG), runs the optional k-means steps and advances the step counter; under DDP rank
        0's resulting state is broadcast so every rank is bit-identical.
        """
        slots = all_gather_tensor(output.slots.detach())
        valid = all_gather_tensor(output.keep)
        self.codebook_state.upkeep(
            slots.reshape(-1, slots.shape[-1]),
            valid.reshape(-1),
            num_images=output.slots.shape[0] * world_size(),
            generator=generator,
        )
