"""Every result record of `metaslot.ops` has one style: a frozen dataclass with named fields."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from metaslot.ops import Aggregation, KeyValueSource, Quantized, RingBuffer, empty_ring_buffer, quantize

RECORDS = {
    Aggregation: ("slots", "attention"),
    KeyValueSource: ("keys_values",),
    Quantized: ("prototypes", "codes"),
    RingBuffer: ("vectors", "pointer", "fill"),
}


@pytest.mark.parametrize("record", list(RECORDS), ids=lambda record: record.__name__)
def test_ops_records_are_frozen_dataclasses_with_their_fields(record: type) -> None:
    assert dataclasses.is_dataclass(record) and record.__dataclass_params__.frozen
    assert not issubclass(record, tuple)  # read by name, never unpacked by position
    assert tuple(field.name for field in dataclasses.fields(record)) == RECORDS[record]


def test_results_cannot_be_changed_after_the_fact() -> None:
    result = quantize(torch.zeros(1, 2, 3), torch.eye(3))
    buffer = empty_ring_buffer(4, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.codes = torch.zeros(1, 2, dtype=torch.long)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        buffer.fill = torch.tensor(1)  # type: ignore[misc]
