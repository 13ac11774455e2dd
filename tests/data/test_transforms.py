"""Transforms keep image and segment aligned; the crop sampler honours its ranges; compaction keeps 0."""

from __future__ import annotations

import math

import numpy
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.data.transforms import (
    CropWindow,
    centre_square_window,
    compact_labels,
    crop,
    denormalize,
    normalize,
    sample_crop_window,
    sample_generator,
    transform_pair,
)


def _label_coded(height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocky labels and an image whose channels encode the label, so alignment is checkable."""
    generator = numpy.random.default_rng(seed)
    blocks = generator.integers(0, 6, size=(math.ceil(height / 4), math.ceil(width / 4)))
    labels = numpy.kron(blocks, numpy.ones((4, 4), numpy.int64))[:height, :width]
    image = numpy.stack([labels * 40, 255 - labels * 40, labels * 20], axis=0).astype(numpy.uint8)
    return torch.from_numpy(image), torch.from_numpy(labels)


@given(
    height=st.integers(8, 48),
    width=st.integers(8, 48),
    seed=st.integers(0, 2**16),
)
def test_crop_window_ranges(height: int, width: int, seed: int) -> None:
    window = sample_crop_window(height, width, numpy.random.default_rng(seed))
    assert 0 <= window.top and window.top + window.height <= height
    assert 0 <= window.left and window.left + window.width <= width
    square = min(height, width) ** 2
    area = window.height * window.width
    # Rounding to whole pixels moves area and ratio a little on tiny images.
    slack = (window.height + window.width + 1) / square
    in_range = 0.75 - slack <= area / square <= 1.0 + slack
    ratio_ok = (
        3 / 4 - 2 / min(window.height, window.width)
        <= window.width / window.height
        <= 4 / 3 + 2 / min(window.height, window.width)
    )
    is_fallback = window.top == (height - window.height) // 2 and window.left == (width - window.width) // 2
    assert (in_range and ratio_ok) or is_fallback


@given(
    height=st.integers(8, 40),
    width=st.integers(8, 40),
    seed=st.integers(0, 2**16),
    train=st.booleans(),
)
def test_image_and_segment_stay_aligned(height: int, width: int, seed: int, train: bool) -> None:
    image, labels = _label_coded(height, width, seed)
    generator = numpy.random.default_rng(seed) if train else None
    # Resize to the crop's own size class is where misalignment would show: use the image side.
    out_image, out_segment = transform_pair(image, labels, size=min(height, width), generator=generator)
    # Nearest-exact segments and bilinear images agree wherever the 3x3 neighbourhood is one label.
    padded = torch.nn.functional.pad(out_segment[None, None].float(), (1, 1, 1, 1), mode="replicate")
    neighbourhood = torch.nn.functional.unfold(padded, 3).view(9, *out_segment.shape)
    uniform = (neighbourhood == out_segment.float()).all(0)
    decoded = (out_image[0].float() / 40).round().long()
    assert torch.equal(decoded[uniform], out_segment[uniform])


@given(
    height=st.integers(4, 30),
    width=st.integers(4, 30),
    data=st.data(),
)
def test_crop_and_flip_are_exact(height: int, width: int, data) -> None:
    image, labels = _label_coded(height, width, 0)
    top = data.draw(st.integers(0, height - 1))
    left = data.draw(st.integers(0, width - 1))
    window = CropWindow(
        top, left, data.draw(st.integers(1, height - top)), data.draw(st.integers(1, width - left))
    )
    cut_image, cut_labels = crop(image, window), crop(labels, window)
    assert torch.equal((cut_image[0] // 40).long(), cut_labels)
    assert torch.equal((cut_image.flip(-1)[0] // 40).long(), cut_labels.flip(-1))


def test_eval_transform_is_centre_square() -> None:
    image, labels = _label_coded(20, 32, 1)
    out_image, out_segment = transform_pair(image, labels, size=20, generator=None)
    window = centre_square_window(20, 32)
    assert window == CropWindow(0, 6, 20, 20)
    assert torch.equal(out_segment, labels[:, 6:26])
    assert torch.equal(out_image, image[:, :, 6:26])


def test_flip_happens_about_half_the_time() -> None:
    image, labels = _label_coded(16, 16, 2)
    flips = 0
    for index in range(40):
        generator = sample_generator(0, 0, index)
        window = sample_crop_window(16, 16, generator)
        expected = torch.nn.functional.interpolate(
            crop(labels, window)[None, None].float(), size=(16, 16), mode="nearest-exact"
        )[0, 0].long()
        _, segment = transform_pair(image, labels, size=16, generator=sample_generator(0, 0, index))
        flips += int(not torch.equal(segment, expected))
    assert 8 <= flips <= 32


@given(st.lists(st.integers(0, 12), min_size=1, max_size=40))
def test_compaction_keeps_background_and_objects(values: list[int]) -> None:
    segment = torch.tensor(values)
    compacted, count = compact_labels(segment)
    objects = sorted(set(values) - {0})
    assert count == len(objects)
    assert torch.equal(compacted == 0, segment == 0)  # no object ever becomes background
    for rank, value in enumerate(objects, start=1):
        assert torch.all(compacted[segment == value] == rank)


def test_compaction_without_background_keeps_first_object() -> None:
    compacted, count = compact_labels(torch.tensor([[3, 3], [7, 9]], dtype=torch.uint8))
    assert count == 3 and torch.equal(compacted, torch.tensor([[1, 1], [2, 3]]))


def test_normalize_round_trip() -> None:
    image = torch.randint(0, 256, (3, 5, 6), dtype=torch.uint8)
    restored = denormalize(normalize(image)) * 255
    torch.testing.assert_close(restored, image.float(), atol=1e-3, rtol=0)


def test_generators_differ_by_epoch_and_index() -> None:
    draws = {(e, i): sample_generator(7, e, i).uniform() for e in range(3) for i in range(3)}
    assert len(set(draws.values())) == 9
    assert sample_generator(7, 1, 2).uniform() == draws[(1, 2)]
    with pytest.raises(ValueError, match="non-negative"):
        sample_generator(-1, 0, 0)


def test_compaction_rejects_negative_labels() -> None:
    with pytest.raises(ValueError, match="-1"):
        compact_labels(torch.tensor([0, -1, 2]))
