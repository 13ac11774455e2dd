"""Synthetic multi-object shapes with instance masks: the embedded dataset (no files, no download).

Each image holds a variable number of flat-coloured shapes (circle, ellipse, square, triangle,
diamond) drawn in order, so later shapes occlude earlier ones and the segment shows what is visible.
An object whose visible area falls under ``min_visible_pixels`` is removed from the drawing (its
colour never shows), so ``num_objects`` always equals the number of distinct non-zero labels.
Drawing is vectorised over objects with analytic masks on the pixel-centre grid. Every sample is a
pure function of (seed, split, index) through its own PCG64 stream.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import numpy
import torch
from jaxtyping import Bool, Float, Int, UInt8
from torch.utils.data import Dataset

from metaslot.data.records import Sample
from metaslot.data.sampling import ItemKey, item_index
from metaslot.data.transforms import normalize
from metaslot.errors import ConfigError
from metaslot.validators import at_most, holds, not_below, one_of, positive, subset_of

SHAPE_KINDS = ("circle", "ellipse", "square", "triangle", "diamond")
# Saturated, well separated colours (0-255); objects in one image get distinct ones.
PALETTE = numpy.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [170, 110, 40],
        [255, 250, 200],
        [128, 0, 0],
        [170, 255, 195],
        [255, 255, 255],
    ],
    dtype=numpy.uint8,
)
Background = Literal["black", "coloured", "textured"]
_SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}


def _sizes_fit(spec: ShapesSpec) -> None:
    low, high = spec.size_range
    if not (0 < low <= high <= 0.5):
        raise ConfigError(
            f"size_range {spec.size_range} must satisfy 0 < low <= high <= 0.5 (fractions of the side)"
        )
    if math.pi * (low * spec.resolution) ** 2 * 0.5 < spec.min_visible_pixels():
        raise ConfigError(
            f"size_range low ({low}) gives shapes smaller than {spec.min_visible_pixels()} pixels at "
            f"resolution {spec.resolution}: raise size_range[0] or the resolution"
        )


@attrs.frozen
class ShapesSpec:
    """Synthetic shapes dataset. ``build(split)`` gives train/val/test streams that never overlap."""

    resolution: int = attrs.field(default=64, validator=positive)
    min_objects: int = attrs.field(default=1, validator=positive)
    max_objects: int = attrs.field(
        default=6,
        validator=[
            positive,
            not_below("min_objects", "raise max_objects"),
            at_most(len(PALETTE), "the number of distinct colours"),
        ],
    )
    size_range: tuple[float, float] = attrs.field(default=(0.08, 0.2), validator=holds(_sizes_fit))
    """Shape radius over the image side, (low, high)."""
    background: Background = attrs.field(default="black", validator=one_of("black", "coloured", "textured"))
    kinds: tuple[str, ...] = attrs.field(default=SHAPE_KINDS, validator=subset_of(SHAPE_KINDS))
    train_size: int = attrs.field(default=10_000, validator=positive)
    val_size: int = attrs.field(default=500, validator=positive)
    seed: int = 0

    def min_visible_pixels(self) -> int:
        """Objects with fewer visible pixels are dropped (about 0.4 % of the image, at least 4)."""
        return max(4, self.resolution**2 // 256)

    def build(self, split: str = "train", train: bool = False) -> ShapesDataset:
        """The dataset for ``split`` (train, val or test). ``train`` is accepted for interface symmetry."""
        if split not in _SPLIT_STREAM:
            raise ConfigError(f"unknown split {split!r}: use one of {sorted(_SPLIT_STREAM)}")
        length = self.train_size if split == "train" else self.val_size
        return ShapesDataset(self, split, length)


class ShapesDataset(Dataset[Sample]):
    """``Dataset[Sample]`` of generated shapes images (ImageNet-normalised, like the real datasets)."""

    def __init__(self, spec: ShapesSpec, split: str, length: int) -> None:
        self.spec = spec
        self.split = split
        self.length = length
        side = (numpy.arange(spec.resolution, dtype=numpy.float32) + 0.5) / spec.resolution
        self._grid_y, self._grid_x = side[None, :, None], side[None, None, :]  # (1, h, 1), (1, 1, w)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int | ItemKey) -> Sample:
        index = item_index(key)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} {self.split} shapes")
        image, segment = self.draw(index)
        num_objects = int(numpy.unique(segment).size - (1 if (segment == 0).any() else 0))
        return Sample(
            image=normalize(torch.from_numpy(image).permute(2, 0, 1).contiguous()),
            segment=torch.from_numpy(segment.astype(numpy.int64)),
            num_objects=num_objects,
        )

    def generator(self, index: int) -> numpy.random.Generator:
        return numpy.random.Generator(numpy.random.PCG64([self.spec.seed, _SPLIT_STREAM[self.split], index]))

    def draw(self, index: int) -> tuple[UInt8[numpy.ndarray, "h w 3"], UInt8[numpy.ndarray, "h w"]]:
        """The RGB image and its label map (0 background, 1..K in drawing order of the visible shapes)."""
        spec = self.spec
        generator = self.generator(index)
        background = self._background(generator)
        minimum = spec.min_visible_pixels()
        for _ in range(20):  # redraw in the rare case that occlusion leaves too few objects
            count = int(generator.integers(spec.min_objects, spec.max_objects + 1))
            masks = self._shape_masks(generator, count)
            visible = _visible_owner(masks)
            areas = numpy.bincount(visible.reshape(-1), minlength=count + 1)[1:]
            kept = masks[areas >= minimum]
            if kept.shape[0] >= spec.min_objects:
                break
        colours = PALETTE[generator.permutation(len(PALETTE))[: masks.shape[0]]][areas >= minimum]
        segment = _visible_owner(kept).astype(numpy.uint8)
        image = numpy.concatenate([numpy.zeros((1, 3), numpy.uint8), colours])[segment]
        if self.spec.background != "black":
            image = numpy.where(segment[..., None] > 0, image, background)
        return numpy.ascontiguousarray(image, dtype=numpy.uint8), segment

    def _background(self, generator: numpy.random.Generator) -> UInt8[numpy.ndarray, "h w 3"]:
        resolution = self.spec.resolution
        if self.spec.background == "black":
            return numpy.zeros((resolution, resolution, 3), numpy.uint8)
        base = generator.uniform(20, 90, size=3)
        if self.spec.background == "coloured":
            return numpy.broadcast_to(base.astype(numpy.uint8), (resolution, resolution, 3)).copy()
        # Textured: a few random low-frequency sinusoids around a dark base colour.
        frequencies = generator.uniform(2, 8, size=(3, 2)) * 2 * math.pi
        phases = generator.uniform(0, 2 * math.pi, size=3)
        wave = sum(
            numpy.sin(frequencies[i, 0] * self._grid_y[0] + frequencies[i, 1] * self._grid_x[0] + phases[i])
            for i in range(3)
        )
        texture = base[None, None, :] + 12.0 * wave[..., None] * generator.uniform(0.5, 1.0, size=3)
        return numpy.clip(texture, 0, 110).astype(numpy.uint8)

    def _shape_masks(self, generator: numpy.random.Generator, count: int) -> Bool[numpy.ndarray, "k h w"]:
        spec = self.spec
        kinds = generator.choice(len(spec.kinds), size=count)
        radius = generator.uniform(spec.size_range[0], spec.size_range[1], size=count).astype(numpy.float32)
        # Centres keep every shape inside the canvas, so the last-drawn shape is always fully visible.
        centre_y = generator.uniform(radius, 1 - radius).astype(numpy.float32)
        centre_x = generator.uniform(radius, 1 - radius).astype(numpy.float32)
        angle = generator.uniform(0, 2 * math.pi, size=count).astype(numpy.float32)
        elongation = generator.uniform(0.5, 0.8, size=count).astype(numpy.float32)
        r, cos, sin = radius[:, None, None], numpy.cos(angle)[:, None, None], numpy.sin(angle)[:, None, None]
        dy, dx = self._grid_y - centre_y[:, None, None], self._grid_x - centre_x[:, None, None]
        u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # coordinates in each shape's own frame
        names = [spec.kinds[kind] for kind in kinds]
        masks = numpy.empty((count, *u.shape[1:]), bool)
        for name in set(names):  # each analytic test only on the shapes of that kind
            chosen = numpy.asarray([n == name for n in names])
            masks[chosen] = _inside(name, u[chosen], v[chosen], r[chosen], elongation[chosen, None, None])
        return masks


def _inside(
    kind: str,
    u: Float[numpy.ndarray, "k h w"],
    v: Float[numpy.ndarray, "k h w"],
    radius: Float[numpy.ndarray, "k 1 1"],
    elongation: Float[numpy.ndarray, "k 1 1"],
) -> Bool[numpy.ndarray, "k h w"]:
    """Analytic inside-test in each shape's own frame (u, v); ``radius`` is the circumradius."""
    if kind == "circle":
        return u * u + v * v <= radius * radius
    if kind == "ellipse":
        return (u / radius) ** 2 + (v / (radius * elongation)) ** 2 <= 1
    if kind == "square":
        return numpy.maximum(numpy.abs(u), numpy.abs(v)) <= radius * 0.8
    if kind == "diamond":
        return numpy.abs(u) + numpy.abs(v) <= radius
    inside = numpy.ones(u.shape, bool)  # equilateral triangle: three half-planes
    for corner in range(3):
        theta = 2 * math.pi * corner / 3
        inside &= math.cos(theta) * u + math.sin(theta) * v <= radius / 2
    return inside


def _visible_owner(masks: Bool[numpy.ndarray, "k h w"]) -> Int[numpy.ndarray, "h w"]:
    """1-based index of the topmost (last-drawn) shape covering each pixel, 0 where none does."""
    owner = numpy.zeros(masks.shape[1:], numpy.int64)
    for index in range(masks.shape[0]):  # later shapes overwrite earlier ones: occlusion
        owner[masks[index]] = index + 1
    return owner


def to_rgb(image: Float[torch.Tensor, "3 h w"]) -> UInt8[numpy.ndarray, "h w 3"]:
    """Normalised sample image back to uint8 RGB (pictures, tests)."""
    from metaslot.data.transforms import denormalize

    return (denormalize(image).permute(1, 2, 0).numpy() * 255).round().astype(numpy.uint8)
