"""Codebook upkeep: ring buffer vs a list model, timeouts, dead-code replacement, k-means steps."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.ops import (
    RingBuffer,
    buffer_code_usage,
    dead_code_timeout_steps,
    empty_ring_buffer,
    filled_rows,
    kmeans,
    kmeans_ema_step,
    replace_dead_codes,
    sample_filled_rows,
    update_usage_counters,
    write_ring_buffer,
)

WIDTH = 2


@given(
    capacity=st.integers(1, 5),
    writes=st.lists(st.lists(st.booleans(), min_size=0, max_size=8), min_size=1, max_size=6),
)
def test_ring_buffer_matches_a_list_model_and_never_exposes_unfilled_rows(capacity, writes):
    buffer = empty_ring_buffer(capacity, WIDTH)
    model_rows: list[list[float] | None] = [None] * capacity
    model_pointer = 0
    counter = 0
    for valid_flags in writes:
        vectors = (
            torch.arange(counter, counter + len(valid_flags) * WIDTH, dtype=torch.float32).reshape(-1, WIDTH)
            + 1
        )
        counter += len(valid_flags) * WIDTH
        buffer = write_ring_buffer(buffer, vectors, torch.tensor(valid_flags, dtype=torch.bool))
        for row, valid in zip(vectors.tolist(), valid_flags, strict=True):
            if valid:
                model_rows[model_pointer] = row
                model_pointer = (model_pointer + 1) % capacity
        filled = filled_rows(buffer)
        assert filled.tolist() == [row is not None for row in model_rows]
        assert int(buffer.fill) == sum(row is not None for row in model_rows)
        assert int(buffer.pointer) == model_pointer
        for index, row in enumerate(model_rows):
            if row is None:
                assert torch.all(buffer.vectors[index] == 0)  # still the zero initialisation
            else:
                assert buffer.vectors[index].tolist() == row


def test_more_valid_rows_than_capacity_keeps_the_last_ones():
    buffer = empty_ring_buffer(3, WIDTH)
    buffer = write_ring_buffer(buffer, torch.ones(1, WIDTH), torch.tensor([True]))
    vectors = torch.arange(14, dtype=torch.float32).reshape(7, WIDTH)
    valid = torch.tensor([True, True, False, True, True, True, False])
    buffer = write_ring_buffer(buffer, vectors, valid)
    # Valid rows 0,1,3,4,5 → ranks 0..4 at (1 + rank) % 3; only ranks 2..4 (rows 3,4,5)
    # are written, at positions 0, 1, 2.
    assert buffer.vectors.tolist() == [vectors[3].tolist(), vectors[4].tolist(), vectors[5].tolist()]
    assert int(buffer.pointer) == (1 + 5) % 3 and int(buffer.fill) == 3


def test_filled_rows_follow_the_pointer_for_a_restored_buffer():
    buffer = RingBuffer(vectors=torch.zeros(5, WIDTH), pointer=torch.tensor(1), fill=torch.tensor(3))
    assert filled_rows(buffer).tolist() == [True, False, False, True, True]


@pytest.mark.parametrize(("capacity", "expected"), [(896, 2341), (1408, 1490), (768, 2731), (672, 3121)])
def test_timeout_conversion_matches_the_reference_numbers(capacity, expected):
    assert dead_code_timeout_steps(4096, 512, capacity) == expected


def test_timeout_conversion_rejects_zero():
    with pytest.raises(ValueError, match="buffer_capacity"):
        dead_code_timeout_steps(4096, 512, 0)


def test_usage_counters_count_down_floor_at_zero_and_ignore_invalid_codes():
    counters = torch.tensor([0, 1, 2, 5])
    codes = torch.tensor([2, -1, 2, 0])
    valid = torch.tensor([True, False, True, False])
    assert update_usage_counters(counters, codes, valid, timeout_steps=7).tolist() == [0, 0, 7, 4]


def filled_buffer(vectors: torch.Tensor, capacity: int) -> RingBuffer:
    return write_ring_buffer(
        empty_ring_buffer(capacity, vectors.shape[1]), vectors, torch.ones(len(vectors), dtype=torch.bool)
    )


def test_codes_are_replaced_only_once_their_counter_reaches_zero():
    timeout = 3
    codebook = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    counters = torch.full((4,), timeout)
    buffer = filled_buffer(torch.tensor([[50.0, 50.0], [60.0, -60.0]]), capacity=3)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, timeout + 1):
        counters = update_usage_counters(counters, torch.tensor([0]), torch.tensor([True]), timeout)
        new_codebook, new_counters = replace_dead_codes(
            codebook, counters, buffer, timeout_steps=timeout, generator=generator
        )
        if step < timeout:
            assert counters.tolist() == [timeout] + [timeout - step] * 3
            assert torch.equal(new_codebook, codebook) and torch.equal(new_counters, counters)
    assert counters.tolist() == [timeout, 0, 0, 0]
    assert torch.equal(new_codebook[0], codebook[0])
    assert torch.all((new_codebook[1:] - codebook[1:]).abs().sum(dim=-1) > 10)
    assert new_counters.tolist() == [timeout] * 4


def test_replacement_draws_farthest_filled_rows_in_order_even_when_capacity_is_small():
    codebook = torch.zeros(6, 2)
    codebook[0] = torch.tensor([0.0, 0.0])  # the only active code, at the origin
    counters = torch.tensor([4, 0, 0, 0, 0, 0])
    # capacity 3 < 6 codes; two filled rows at distances 1 and 5 from the active code, one empty row.
    buffer = filled_buffer(torch.tensor([[1.0, 0.0], [0.0, 5.0]]), capacity=3)
    new_codebook, new_counters = replace_dead_codes(
        codebook, counters, buffer, timeout_steps=4, rate=1.0, relative_noise=0.0
    )
    far, near = [0.0, 5.0], [1.0, 0.0]
    assert new_codebook.tolist() == [[0.0, 0.0], far, near, far, near, far]
    assert new_counters.tolist() == [4, 4, 4, 4, 4, 4]


def test_replacement_mixes_by_rate_adds_relative_noise_and_is_reproducible():
    codebook = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    counters = torch.tensor([1, 0])
    buffer = filled_buffer(torch.tensor([[30.0, 40.0]]), capacity=2)

    def run(seed: int) -> torch.Tensor:
        return replace_dead_codes(
            codebook,
            counters,
            buffer,
            timeout_steps=2,
            rate=0.8,
            relative_noise=0.01,
            generator=torch.Generator().manual_seed(seed),
        )[0]

    first = run(5)
    torch.testing.assert_close(first, run(5), rtol=0, atol=0)
    expected = 0.2 * codebook[1] + 0.8 * torch.tensor([30.0, 40.0])
    deviation = (first[1] - expected).norm()
    assert 0 < deviation < 0.8 * 0.01 * 50.0 * 5  # noise scale ρ‖x‖ = 0.5, times the rate, within 5 σ
    assert torch.equal(first[0], codebook[0])


def test_no_replacement_with_an_empty_buffer_or_no_dead_code():
    codebook = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    dead = torch.tensor([0, 0, 3, 0])
    empty = empty_ring_buffer(5, 2)
    new_codebook, new_counters = replace_dead_codes(codebook, dead, empty, timeout_steps=3)
    assert torch.equal(new_codebook, codebook) and torch.equal(new_counters, dead)
    alive = torch.tensor([1, 2, 3, 4])
    new_codebook, new_counters = replace_dead_codes(
        codebook, alive, filled_buffer(torch.ones(2, 2), 5), timeout_steps=3
    )
    assert torch.equal(new_codebook, codebook) and torch.equal(new_counters, alive)


def test_all_dead_ranks_against_the_whole_codebook():
    codebook = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    buffer = filled_buffer(torch.tensor([[0.0, 1.0], [10.0, 1.0]]), capacity=2)
    new_codebook, _ = replace_dead_codes(
        codebook, torch.zeros(2, dtype=torch.long), buffer, timeout_steps=1, rate=1.0, relative_noise=0.0
    )
    assert new_codebook.tolist() == [[10.0, 1.0], [0.0, 1.0]]
    assert torch.isfinite(new_codebook).all()


def test_kmeans_ema_step_hand_computed():
    codebook = torch.tensor([[0.0, 0.0], [10.0, 10.0], [100.0, 100.0]])
    vectors = torch.tensor([[1.0, 0.0], [3.0, 0.0], [9.0, 9.0], [120.0, 120.0]])
    valid = torch.tensor([True, True, True, False])
    moved = kmeans_ema_step(codebook, vectors, valid, decay=0.9)
    expected = torch.tensor([[0.2, 0.0], [9.9, 9.9], [100.0, 100.0]])
    torch.testing.assert_close(moved, expected)
    assert torch.equal(codebook[2], torch.tensor([100.0, 100.0]))  # input untouched


@given(seed=st.integers(0, 2**31), codes=st.integers(1, 5), count=st.integers(1, 12))
def test_one_lloyd_iteration_equals_an_ema_step_without_memory(seed, codes, count):
    generator = torch.Generator().manual_seed(seed)
    vectors = torch.randn(count, 3, generator=generator)
    valid = torch.rand(count, generator=generator) < 0.7
    initial = torch.randn(codes, 3, generator=generator)
    torch.testing.assert_close(
        kmeans(vectors, valid, initial, iterations=1), kmeans_ema_step(initial, vectors, valid, decay=0.0)
    )
    assert torch.equal(kmeans(vectors, valid, initial, iterations=0), initial)


def test_kmeans_finds_separated_clusters_ignores_invalid_and_keeps_empty_centres():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-10.0, 0.0], [10.0, 0.0]])
    vectors = torch.cat(
        [
            centres[0] + 0.1 * torch.randn(20, 2, generator=generator),
            centres[1] + 0.1 * torch.randn(20, 2, generator=generator),
        ]
    )
    outlier = torch.tensor([[1000.0, 1000.0]])
    all_vectors = torch.cat([vectors, outlier])
    valid = torch.cat([torch.ones(40, dtype=torch.bool), torch.tensor([False])])
    initial = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [500.0, -500.0]])
    result = kmeans(all_vectors, valid, initial, iterations=5)
    torch.testing.assert_close(result[0], vectors[:20].mean(dim=0))
    torch.testing.assert_close(result[1], vectors[20:].mean(dim=0))
    assert torch.equal(result[2], initial[2])


UPKEEP_SCRIPT = """
import torch
from metaslot.ops import (
    RingBuffer, filled_rows, kmeans_ema_step, replace_dead_codes, update_usage_counters, write_ring_buffer,
)

torch.set_num_threads(1)


def upkeep(codebook, counters, buffer_vectors, pointer, fill, vectors, codes, valid):
    buffer = write_ring_buffer(RingBuffer(buffer_vectors, pointer, fill), vectors, valid)
    counters = update_usage_counters(counters, codes, valid, 3)
    codebook, counters = replace_dead_codes(codebook, counters, buffer, timeout_steps=3)
    codebook = kmeans_ema_step(codebook, buffer.vectors, filled_rows(buffer), decay=0.9)
    return codebook, counters, buffer.vectors, buffer.pointer, buffer.fill


generator = torch.Generator().manual_seed(0)
arguments = (
    torch.randn(4, 2, generator=generator), torch.tensor([1, 0, 2, 0]), torch.zeros(3, 2), torch.tensor(0),
    torch.tensor(0), torch.randn(5, 2, generator=generator), torch.tensor([0, 1, 1, 3, -1]),
    torch.tensor([True, True, False, True, False]),
)
torch.manual_seed(0)
eager = upkeep(*arguments)
torch.manual_seed(0)
traced = torch.compile(upkeep, backend="eager", fullgraph=True)(*arguments)
for left, right in zip(eager, traced):
    torch.testing.assert_close(left, right)
print("traced without graph breaks")
"""


@pytest.mark.distributed
def test_upkeep_traces_without_graph_breaks():
    # fullgraph=True fails on any host sync (.item(), nonzero, data-dependent shapes). Runs in a fresh
    # process with shape checking off: the jaxtyping/beartype wrappers themselves cannot be traced.
    environment = {**os.environ, "METASLOT_TYPECHECK": "0"}
    finished = subprocess.run(
        [sys.executable, "-c", UPKEEP_SCRIPT], env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "traced without graph breaks" in finished.stdout


def _buffer(vectors: torch.Tensor, fill: int, pointer: int) -> RingBuffer:
    return RingBuffer(vectors=vectors, pointer=torch.tensor(pointer), fill=torch.tensor(fill))


def test_sampled_rows_are_distinct_filled_rows_in_random_order():
    vectors = torch.arange(10, dtype=torch.float32)[:, None].expand(10, WIDTH).clone()
    buffer = _buffer(vectors, fill=6, pointer=8)  # rows 2..7 are filled
    picks = sample_filled_rows(buffer, 6, torch.Generator().manual_seed(0))[:, 0]
    assert sorted(picks.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    again = sample_filled_rows(buffer, 6, torch.Generator().manual_seed(0))[:, 0]
    assert torch.equal(picks, again)
    other = sample_filled_rows(buffer, 6, torch.Generator().manual_seed(1))[:, 0]
    assert sorted(other.tolist()) == sorted(picks.tolist()) and not torch.equal(other, picks)
    # More seeds than filled rows: every filled row is used, then they repeat in the same order.
    many = sample_filled_rows(buffer, 9, torch.Generator().manual_seed(0))[:, 0]
    assert torch.equal(many[:6], picks) and torch.equal(many[6:], picks[:3])


def test_buffer_code_usage_counts_filled_rows_per_nearest_code():
    codebook = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    vectors = torch.tensor([[1.0, 0.0], [9.0, 1.0], [8.0, 0.0], [0.0, 9.0]])
    usage = buffer_code_usage(_buffer(vectors, fill=3, pointer=3), codebook)  # row 3 is not filled
    assert usage.tolist() == [1.0, 2.0, 0.0]
    assert buffer_code_usage(_buffer(vectors, fill=0, pointer=0), codebook).tolist() == [0.0, 0.0, 0.0]
