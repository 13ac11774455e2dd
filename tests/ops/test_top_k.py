"""Top-k decoding's choice of slots (`metaslot.ops.top_k`): a hand case and the decoder's limits."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.models.decoders import MLPDecoderSpec
from metaslot.ops import gather_chosen_slots, scatter_chosen_slots, top_k_slots


def test_the_highest_scores_per_token_are_chosen_and_pruned_slots_last() -> None:
    scores = torch.tensor([[[0.1, 0.7], [0.6, 0.2], [0.3, 0.1]]])  # 3 slots, 2 tokens
    chosen = top_k_slots(scores, 2)
    assert [sorted(chosen[0, :, token].tolist()) for token in range(2)] == [[1, 2], [0, 1]]
    keep = torch.tensor([[True, False, True]])
    chosen = top_k_slots(scores, 2, keep)
    assert [sorted(chosen[0, :, token].tolist()) for token in range(2)] == [[0, 2], [0, 2]]


@given(slots=st.integers(1, 5), tokens=st.integers(1, 6), seed=st.integers(0, 1000))
def test_scatter_puts_each_chosen_value_back_at_its_slot(slots: int, tokens: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(2, slots, tokens, generator=generator)
    top_k = max(1, slots - 1)
    chosen = top_k_slots(scores, top_k)
    picked = gather_chosen_slots(scores[..., None], chosen)[..., 0]
    back = scatter_chosen_slots(picked, chosen, slots)
    assert torch.equal(back.ne(0).sum(dim=1), torch.full((2, tokens), top_k))
    assert torch.equal(back, torch.where(back.ne(0), scores, torch.zeros_like(scores)))


def test_top_k_of_every_slot_decodes_as_without_top_k() -> None:
    torch.manual_seed(0)
    plain = MLPDecoderSpec(hidden_channels=(8,), activation="relu").build(
        slot_dim=4, feature_dim=3, num_tokens=5
    )
    every = MLPDecoderSpec(hidden_channels=(8,), activation="relu", top_k=3).build(
        slot_dim=4, feature_dim=3, num_tokens=5
    )
    every.load_state_dict(plain.state_dict())
    slots = torch.randn(2, 3, 4)
    scores = torch.rand(2, 3, 5).softmax(dim=1)
    expected, got = plain(slots), every(slots, scores=scores)
    torch.testing.assert_close(got.alpha, expected.alpha)
    torch.testing.assert_close(got.reconstruction, expected.reconstruction)
