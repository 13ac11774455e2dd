"""Plain Slot Attention, and the weights it shares with MetaSlot.

The weights and their names follow the reference (``ocl.SlotAttention``): layer norms on queries and
features, bias-free query/key/value projections, a GRU cell with zeroed biases and a residual MLP.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from metaslot.errors import DataError
from metaslot.models.activations import activation_layer
from metaslot.models.aggregators.initializers import build_initializer
from metaslot.models.aggregators.specs import SlotAttentionSpec, _SlotAttentionFields
from metaslot.models.records import AggregatorOutput, CodebookStatistics
from metaslot.ops.slot_attention import (
    Aggregation,
    KeyValueSource,
    SlotAttentionLayers,
    aggregate,
    key_value_source,
)


class SlotAttentionWeights(nn.Module):
    """The parameters of one Slot Attention iteration plus the slot initialiser (shared by both aggregators)."""

    def __init__(self, spec: _SlotAttentionFields) -> None:
        super().__init__()
        self.spec = spec
        slot_dim, feature_dim = spec.slot_dim, spec.feature_dim
        self.initializer = build_initializer(
            spec.initializer, spec.num_slots, slot_dim, spec.shared_samples_at_eval
        )
        self.norm_queries = nn.LayerNorm(slot_dim)
        self.project_queries = nn.Linear(slot_dim, slot_dim, bias=False)
        self.norm_features = nn.LayerNorm(feature_dim)
        self.project_keys = nn.Linear(feature_dim, slot_dim, bias=False)
        self.project_values = nn.Linear(feature_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        self.norm_mlp = nn.LayerNorm(slot_dim)
        # The dropout sits with the activation (index 1 holds no parameters), so the Linear layers keep
        # the names mlp.0 and mlp.2 whatever the dropout; at 0 nothing is drawn.
        activation = activation_layer(spec.mlp_activation)
        if spec.mlp_dropout > 0:
            activation = nn.Sequential(activation, nn.Dropout(spec.mlp_dropout))
        self.mlp = nn.Sequential(
            nn.Linear(slot_dim, spec.mlp_hidden_dim), activation, nn.Linear(spec.mlp_hidden_dim, slot_dim)
        )
        self._zero_biases()
        # Built once: dynamo (torch 2.14) cannot construct an attrs frozen instance inside a compiled graph.
        self._layers = SlotAttentionLayers(
            project_queries=self._queries,
            project_keys_values=self._keys_values,
            update=self._update,
            key_value_weights=self._key_value_weights,  # bias-free nn.Linear projections
        )

    def _zero_biases(self) -> None:
        # The reference's reset_parameters zeroes every Linear and GRU bias inside the aggregator.
        with torch.no_grad():
            self.gru.bias_ih.zero_()
            self.gru.bias_hh.zero_()
            for layer in self.mlp:
                if isinstance(layer, nn.Linear):
                    layer.bias.zero_()

    def _queries(self, slots: Float[Tensor, "b k d"]) -> Float[Tensor, "b k d"]:
        return self.project_queries(self.norm_queries(slots))

    def _keys_values(
        self, features_normed: Float[Tensor, "b n c"]
    ) -> tuple[Float[Tensor, "b n d"], Float[Tensor, "b n d"]]:
        return self.project_keys(features_normed), self.project_values(features_normed)

    def _key_value_weights(self) -> tuple[Float[Tensor, "d c"], Float[Tensor, "d c"]]:
        return self.project_keys.weight, self.project_values.weight

    def _update(
        self, slots: Float[Tensor, "b k d"], updates: Float[Tensor, "b k d"]
    ) -> Float[Tensor, "b k d"]:
        batch, num_slots, slot_dim = slots.shape
        hidden = self.gru(updates.reshape(-1, slot_dim), slots.reshape(-1, slot_dim))
        hidden = hidden.reshape(batch, num_slots, slot_dim)
        return hidden + self.mlp(self.norm_mlp(hidden))

    def layers(self) -> SlotAttentionLayers:
        """This module's weights as the callables ``metaslot.ops.aggregate`` expects."""
        return self._layers

    def key_value_source(
        self, features_normed: Float[Tensor, "b n c"], num_slots: int, num_read_outs: int
    ) -> KeyValueSource:
        """How the clean read-outs of one forward (at most ``num_read_outs``; noisy ones never use it) get
        their keys and values, by the spec's ``attention_path`` (`metaslot.ops.key_value_source`)."""
        return key_value_source(
            features_normed,
            self._layers,
            num_slots=num_slots,
            num_read_outs=num_read_outs,
            path=self.spec.attention_path,
        )

    def initial_slots(
        self,
        features: Float[Tensor, "b n c"],
        initial_slots: Float[Tensor, "b k d"] | None,
        generator: torch.Generator | None,
    ) -> Float[Tensor, "b k d"]:
        """The caller's initial slots, or the initialiser's draw (mean at evaluation for per-slot)."""
        if initial_slots is not None:
            if initial_slots.shape[0] != features.shape[0] or initial_slots.shape[-1] != self.spec.slot_dim:
                raise ValueError(
                    f"initial_slots has shape {tuple(initial_slots.shape)} but features have batch "
                    f"{features.shape[0]} and slot_dim is {self.spec.slot_dim}: pass (batch, k, {self.spec.slot_dim})"
                )
            return initial_slots
        return self.initializer(features.shape[0], generator=generator)

    def check_features(self, features: Tensor) -> None:
        if features.ndim != 3 or features.shape[-1] != self.spec.feature_dim:
            raise DataError(
                f"features must have shape (batch, tokens, {self.spec.feature_dim}), got {tuple(features.shape)}: "
                f"flatten spatial maps to tokens and match feature_dim"
            )


class SlotAttention(SlotAttentionWeights):
    """Slot Attention (T iterations of inverted attention + GRU + MLP) returning an ``AggregatorOutput``.

    ``keep`` is all True and ``codes`` all -1; ``update_codebook`` is a no-op so training loops need no
    ``isinstance`` check.
    """

    spec: SlotAttentionSpec

    def __init__(self, spec: SlotAttentionSpec) -> None:
        super().__init__(spec)

    @property
    def codebook_size(self) -> None:
        """No codebook (`metaslot.models.interfaces.Aggregator`)."""
        return None

    def forward(
        self,
        features: Float[Tensor, "b n c"],
        initial_slots: Float[Tensor, "b k d"] | None = None,
        generator: torch.Generator | None = None,
    ) -> AggregatorOutput:
        self.check_features(features)
        initial = self.initial_slots(features, initial_slots, generator)
        features_normed = self.norm_features(features)
        source = self.key_value_source(features_normed, initial.shape[1], self.spec.num_iterations)
        if self.spec.bilevel:
            aggregation = self._bilevel(initial, features_normed, source)
        else:
            aggregation = aggregate(
                initial,
                features_normed,
                self._layers,
                self.spec.num_iterations,
                source=source,
                epsilon=self.spec.epsilon,
            )
        batch, num_slots = initial.shape[:2]
        keep: Bool[Tensor, "b k"] = torch.ones(batch, num_slots, dtype=torch.bool, device=features.device)
        codes: Int[Tensor, "b k"] = torch.full(
            (batch, num_slots), -1, dtype=torch.long, device=features.device
        )
        return AggregatorOutput(
            slots=aggregation.slots, attention=aggregation.attention, keep=keep, codes=codes
        )

    def _bilevel(
        self,
        initial: Float[Tensor, "b k d"],
        features_normed: Float[Tensor, "b n c"],
        source: KeyValueSource,
    ) -> Aggregation:
        """BO-QSA: the first T−1 iterations carry no gradient; the last starts from the detached slots
        plus the straight-through term, so the initial slots get the last iteration's gradient."""
        slots = initial
        if self.spec.num_iterations > 1:
            with torch.no_grad():
                slots = aggregate(
                    initial,
                    features_normed,
                    self._layers,
                    self.spec.num_iterations - 1,
                    source=source,
                    epsilon=self.spec.epsilon,
                ).slots
        return aggregate(
            slots.detach(),
            features_normed,
            self._layers,
            1,
            straight_through=initial,
            source=source,
            epsilon=self.spec.epsilon,
        )

    def update_codebook(self, output: AggregatorOutput, generator: torch.Generator | None = None) -> None:
        """Nothing to maintain: plain Slot Attention has no codebook."""
        return None

    def codebook_statistics(self) -> CodebookStatistics | None:
        """None: plain Slot Attention has no codebook."""
        return None
