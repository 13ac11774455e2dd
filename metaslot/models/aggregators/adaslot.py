"""AdaSlot (Fan et al., CVPR 2024): Slot Attention from a shared Gaussian, then a score network keeps or
drops every slot with a hard straight-through Gumbel sample (``spec/adaslot.md`` §1-8).

The module returns the same `AggregatorOutput` as the other aggregators: ``keep`` (bool) for everything
that honours kept slots, ``keep_weight`` (the straight-through float) for the decoders' alpha, and the
sparsity term ``λ·mean(keep)`` in ``loss_terms`` for the pipeline to add to its loss. The math is in
`metaslot.ops.adaslot`; the step buffer drives the optional temperature anneal.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from metaslot.models.aggregators.slot_attention import SlotAttentionWeights
from metaslot.models.aggregators.specs import AdaSlotSpec
from metaslot.models.records import AggregatorOutput, CodebookStatistics
from metaslot.ops.adaslot import argmax_keep, gumbel_keep, lower_bound_keep, sparsity_penalty, temperature
from metaslot.ops.slot_attention import aggregate


class AdaSlot(SlotAttentionWeights):
    """Slot Attention weights (same names, so a fixed-K run's weights load) plus ``score``:
    LN → Linear(d, 4d) → ReLU → Linear(4d, 2), the released per-slot keep/drop logits.

    Built from its spec: ``AdaSlotSpec(num_slots=7, slot_dim=64, feature_dim=64).build()`` (= ``AdaSlot(spec)``).
    ``step_counter`` counts optimiser steps (advanced by `update_codebook`, the hook every aggregator has); it
    drives the cosine temperature and checkpoints with the module.
    """

    spec: AdaSlotSpec

    def __init__(self, spec: AdaSlotSpec) -> None:
        super().__init__(spec)
        width = spec.slot_dim
        self.score = nn.Sequential(
            nn.LayerNorm(width), nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, 2)
        )
        self.register_buffer("step_counter", torch.zeros((), dtype=torch.long))

    @property
    def codebook_size(self) -> None:
        """No codebook (`metaslot.models.interfaces.Aggregator`)."""
        return None

    def temperature(self) -> Float[Tensor, ""] | float:
        """The Gumbel temperature at the current optimiser step (`metaslot.ops.adaslot.temperature`)."""
        spec = self.spec
        return temperature(
            self.step_counter,
            spec.temperature_schedule,
            spec.temperature_start,
            spec.temperature_end,
            spec.temperature_steps,
        )

    def keep_logits(self, slots: Float[Tensor, "b k d"]) -> Float[Tensor, "b k 2"]:
        """Per-slot (drop, keep) logits of the score network, in float32."""
        return self.score(slots).float()

    def decide(
        self, logits: Float[Tensor, "b k 2"], generator: torch.Generator | None
    ) -> Float[Tensor, "b k"]:
        """The keep decision in {0, 1}: a straight-through Gumbel sample in training (and at evaluation
        with ``eval_keep='sample'``, as released), the argmax at evaluation with ``eval_keep='argmax'``;
        then the random lower bound."""
        if self.training or self.spec.eval_keep == "sample":
            keep = gumbel_keep(logits, self.temperature(), generator)
        else:
            keep = argmax_keep(logits)
        return lower_bound_keep(keep, self.spec.lower_bound, generator)

    def forward(
        self,
        features: Float[Tensor, "b n c"],
        initial_slots: Float[Tensor, "b k d"] | None = None,
        generator: torch.Generator | None = None,
    ) -> AggregatorOutput:
        """Slot Attention over all k slots (none masked), then the keep decision; ``generator`` supplies
        the initial-slot noise and the Gumbel noise (None: the global RNG)."""
        self.check_features(features)
        initial = self.initial_slots(features, initial_slots, generator)
        features_normed = self.norm_features(features)
        iterations = self.spec.num_iterations
        source = self.key_value_source(features_normed, initial.shape[1], iterations)
        aggregation = aggregate(
            initial, features_normed, self.layers(), iterations, source=source, epsilon=self.spec.epsilon
        )
        keep_weight = self.decide(self.keep_logits(aggregation.slots), generator)
        keep: Bool[Tensor, "b k"] = keep_weight.detach() > 0.5
        codes: Int[Tensor, "b k"] = torch.full(keep.shape, -1, dtype=torch.long, device=features.device)
        spec = self.spec
        sparsity = sparsity_penalty(
            keep_weight, spec.sparsity_weight, spec.sparsity_quadratic, spec.sparsity_bias
        )
        return AggregatorOutput(
            slots=aggregation.slots,
            attention=aggregation.attention,
            keep=keep,
            codes=codes,
            keep_weight=keep_weight,
            loss_terms={"sparsity": sparsity},
        )

    @torch.no_grad()
    def update_codebook(self, output: AggregatorOutput, generator: torch.Generator | None = None) -> None:
        """No codebook: only advance the step counter the temperature schedule reads."""
        self.step_counter.add_(1)

    def codebook_statistics(self) -> CodebookStatistics | None:
        """None: AdaSlot has no codebook."""
        return None
