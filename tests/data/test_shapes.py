"""Synthetic shapes: deterministic, masks consistent with pixels, object counts in range."""

from __future__ import annotations

import numpy
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from metaslot.data.shapes import PALETTE, ShapesSpec, _visible_owner, to_rgb


@given(
    index=st.integers(0, 10_000),
    background=st.sampled_from(["black", "coloured", "textured"]),
    counts=st.sampled_from([(1, 6), (2, 4), (3, 3)]),
)
def test_masks_match_pixels_and_counts(index: int, background: str, counts: tuple[int, int]) -> None:
    spec = ShapesSpec(resolution=32, background=background, min_objects=counts[0], max_objects=counts[1])
    dataset = spec.build("train")
    image, segment = dataset.draw(index)
    labels = sorted(set(numpy.unique(segment).tolist()) - {0})
    assert labels == list(range(1, len(labels) + 1))
    assert counts[0] <= len(labels) <= counts[1]
    palette = {tuple(colour) for colour in PALETTE.tolist()}
    colours = []
    for label in labels:
        pixels = image[segment == label]
        assert (pixels == pixels[0]).all(), "an object is drawn in one flat colour"
        assert tuple(pixels[0].tolist()) in palette
        assert pixels.shape[0] >= spec.min_visible_pixels()
        colours.append(tuple(pixels[0].tolist()))
    assert len(set(colours)) == len(colours), "objects in one image have distinct colours"
    sample = dataset[index]
    assert sample.num_objects == len(labels)
    assert torch.equal(sample.segment, torch.from_numpy(segment.astype(numpy.int64)))
    numpy.testing.assert_array_equal(to_rgb(sample.image), image)


def test_background_pixels_never_use_an_object_colour_on_black() -> None:
    image, segment = ShapesSpec(resolution=32).build("val").draw(3)
    assert (image[segment == 0] == 0).all()


def test_deterministic_and_split_dependent() -> None:
    spec = ShapesSpec(resolution=32)
    first, second = spec.build("train"), spec.build("train")
    for index in (0, 5, 99):
        assert torch.equal(first[index].image, second[index].image)
        assert torch.equal(first[index].segment, second[index].segment)
    val = spec.build("val")
    assert not all(torch.equal(first[i].segment, val[i].segment) for i in range(4))
    other_seed = ShapesSpec(resolution=32, seed=1).build("train")
    assert not all(torch.equal(first[i].segment, other_seed[i].segment) for i in range(4))


def test_counts_vary_across_images() -> None:
    dataset = ShapesSpec(resolution=32).build("train")
    counts = {dataset[index].num_objects for index in range(40)}
    assert len(counts) >= 3


def test_later_shapes_occlude_earlier_ones() -> None:
    masks = numpy.zeros((3, 4, 4), bool)
    masks[0, :, :3] = True  # drawn first
    masks[1, 1:3, 1:] = True  # drawn over it
    masks[2, 3, 3] = True  # drawn last
    owner = _visible_owner(masks)
    expected = numpy.array([[1, 1, 1, 0], [1, 2, 2, 2], [1, 2, 2, 2], [1, 1, 1, 3]])
    numpy.testing.assert_array_equal(owner, expected)


def test_hidden_shapes_are_dropped_from_the_count() -> None:
    # Big shapes on a small canvas: some end up (nearly) hidden and must not be counted.
    spec = ShapesSpec(resolution=32, size_range=(0.3, 0.4), min_objects=1, max_objects=6)
    dataset = spec.build("train")
    dropped = 0
    for index in range(12):
        generator = dataset.generator(index)  # replay the first drawing attempt of draw()
        dataset._background(generator)
        drawn = int(generator.integers(spec.min_objects, spec.max_objects + 1))
        masks = dataset._shape_masks(generator, drawn)
        visible = numpy.bincount(_visible_owner(masks).reshape(-1), minlength=drawn + 1)[1:]
        sample = dataset[index]
        assert sample.num_objects == int((visible >= spec.min_visible_pixels()).sum())
        dropped += drawn - sample.num_objects
    assert dropped > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_objects": 4, "max_objects": 2}, "max_objects"),
        ({"max_objects": 40}, "colours"),
        ({"size_range": (0.3, 0.1)}, "size_range"),
        ({"resolution": 0}, "resolution"),
        ({"kinds": ("hexagon",)}, "kinds"),
        ({"background": "plaid"}, "background"),
    ],
)
def test_spec_validation_explains(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShapesSpec(**kwargs)


def test_index_out_of_range() -> None:
    dataset = ShapesSpec(resolution=32, val_size=3).build("val")
    assert len(dataset) == 3
    with pytest.raises(IndexError, match="3"):
        dataset[3]
    with pytest.raises(ValueError, match="split"):
        ShapesSpec().build("holdout")
