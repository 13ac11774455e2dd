"""Duplicate pruning against a plain Python scan (the reference's semantics)."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.ops import prune_duplicates


def reference_scan(codes: list[list[int]]) -> list[list[bool]]:
    kept = []
    for image in codes:
        seen: set[int] = set()
        row = []
        for code in image:
            row.append(code >= 0 and code not in seen)
            seen.add(code)
        kept.append(row)
    return kept


code_grids = st.integers(1, 4).flatmap(
    lambda slots: st.lists(
        st.lists(st.integers(-1, 5), min_size=slots, max_size=slots), min_size=1, max_size=4
    )
)


@given(codes=code_grids)
def test_matches_python_scan(codes):
    keep = prune_duplicates(torch.tensor(codes))
    assert keep.tolist() == reference_scan(codes)


@given(codes=code_grids)
def test_exactly_one_kept_slot_per_distinct_code(codes):
    tensor = torch.tensor(codes)
    keep = prune_duplicates(tensor)
    for image, kept in zip(tensor, keep, strict=True):
        distinct = {code for code in image.tolist() if code >= 0}
        kept_codes = image[kept].tolist()
        assert sorted(kept_codes) == sorted(distinct)


def test_hand_case_lowest_index_wins_and_negative_codes_are_dropped():
    codes = torch.tensor([[3, 1, 3, -1, 1, 2], [0, 0, 0, 0, 0, 0]])
    expected = torch.tensor(
        [[True, True, False, False, False, True], [True, False, False, False, False, False]]
    )
    assert torch.equal(prune_duplicates(codes), expected)
