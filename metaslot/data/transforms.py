"""Image + segment transforms, applied with the same geometry to both (reference.md §3.5).

Training: random resized crop (area in [0.75, 1] of the largest square, aspect 3/4..4/3 log-uniform,
10 attempts then a centre fallback), resize, horizontal flip with p = 0.5. Evaluation: the largest
centred square, resized. Images are resized bilinearly with antialiasing, segments with
nearest-exact. All randomness comes from an explicit ``numpy.random.Generator``; ``sample_generator``
derives one per (seed, epoch, index), so augmentation differs across epochs and workers and a resumed
run sees exactly the same crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy
import torch
from jaxtyping import Float, Int, Integer, Shaped, UInt8
from torch import Tensor
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from metaslot.errors import ConfigError, CorruptDataError
from metaslot.ops.imagenet import centre_square, denormalize_255, normalize_255


@dataclass(frozen=True)
class CropWindow:
    """A crop rectangle in pixels."""

    top: int
    left: int
    height: int
    width: int


def sample_generator(seed: int, epoch: int, index: int) -> numpy.random.Generator:
    """An independent random stream per (seed, epoch, sample index)."""
    if min(seed, epoch, index) < 0:
        raise ValueError(f"seed ({seed}), epoch ({epoch}) and index ({index}) must be non-negative")
    return numpy.random.Generator(numpy.random.PCG64([seed, epoch, index]))


def centre_square_window(height: int, width: int) -> CropWindow:
    """The largest centred square (floor offsets, like the reference's CenterCrop)."""
    top, left, side = centre_square(height, width)
    return CropWindow(top=top, left=left, height=side, width=side)


def sample_crop_window(
    height: int,
    width: int,
    generator: numpy.random.Generator,
    scale: tuple[float, float] = (0.75, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> CropWindow:
    """RandomResizedCrop's window sampler with the area range relative to the largest square.

    ``scale`` is first multiplied by min(h, w)^2 / (h w), as the reference does, so [0.75, 1] means
    75-100 % of the largest square's area. Aspect ratios are log-uniform in ``ratio``. After
    ``attempts`` misses the window falls back to a centred crop clamped to ``ratio``.
    """
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ConfigError(f"scale {scale} and ratio {ratio} must be positive, increasing ranges")
    area = height * width
    square_fraction = min(height, width) ** 2 / area
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * square_fraction * generator.uniform(scale[0], scale[1])
        aspect = math.exp(generator.uniform(log_ratio[0], log_ratio[1]))
        crop_width = round(math.sqrt(target_area * aspect))
        crop_height = round(math.sqrt(target_area / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(generator.integers(0, height - crop_height + 1))
            left = int(generator.integers(0, width - crop_width + 1))
            return CropWindow(top, left, crop_height, crop_width)
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_width, crop_height = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        crop_height, crop_width = height, round(height * ratio[1])
    else:
        crop_width, crop_height = width, height
    return CropWindow((height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width)


def crop(tensor: Shaped[Tensor, "*c h w"], window: CropWindow) -> Shaped[Tensor, "*c hh ww"]:
    """Cut ``window`` out of the last two axes."""
    height, width = tensor.shape[-2:]
    if (
        window.top < 0
        or window.left < 0
        or window.top + window.height > height
        or window.left + window.width > width
    ):
        raise ValueError(f"crop window {window} does not fit inside a {height}x{width} image")
    return tensor[..., window.top : window.top + window.height, window.left : window.left + window.width]


def resize_image(image: UInt8[Tensor, "*t 3 h w"], size: int) -> UInt8[Tensor, "*t 3 size size"]:
    """Bilinear resize with antialiasing to size x size."""
    return tvf.resize(image, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def resize_segment(segment: Integer[Tensor, "*t h w"], size: int) -> Integer[Tensor, "*t size size"]:
    """Nearest-exact resize of label maps (labels are never blended)."""
    return tvf.resize(segment[None], [size, size], interpolation=InterpolationMode.NEAREST_EXACT)[0]


def normalize(image: UInt8[Tensor, "*t 3 h w"]) -> Float[Tensor, "*t 3 h w"]:
    """uint8 RGB to ImageNet-normalised float32."""
    return normalize_255(image.float())


def denormalize(image: Float[Tensor, "*b 3 h w"]) -> Float[Tensor, "*b 3 h w"]:
    """ImageNet-normalised images back to RGB in [0, 1] (for pictures)."""
    return (denormalize_255(image) / 255.0).clamp(0.0, 1.0)


def compact_labels(segment: Integer[Tensor, "*s"]) -> tuple[Int[Tensor, "*s"], int]:
    """Renumber present object labels to 1..K in ascending order; 0 always stays background.

    Returns the int64 map and K. Unlike the reference's ``unique(return_inverse=True)``, a crop
    without background keeps all its objects (none becomes 0).
    """
    labels = segment.long()
    if labels.numel() == 0:
        return labels, 0
    if int(labels.min()) < 0:
        raise CorruptDataError(f"segment labels must be non-negative, got {int(labels.min())}")
    # bincount + cumsum instead of unique: ranks present labels without sorting every pixel.
    present = torch.bincount(labels.reshape(-1)) > 0
    present[0] = False
    table = torch.cumsum(present, 0) * present
    return table[labels], int(present.sum())


def transform_pair(
    image: UInt8[Tensor, "*t 3 h w"],
    segment: Integer[Tensor, "*t h w"],
    *,
    size: int,
    generator: numpy.random.Generator | None,
    flip_probability: float = 0.5,
) -> tuple[UInt8[Tensor, "*t 3 size size"], Int[Tensor, "*t size size"]]:
    """Crop, resize and (maybe) flip an image (or all frames of a video) and its segment alike.

    With a generator: training augmentation (random resized crop + flip). Without: evaluation
    (centre largest square + resize).
    """
    height, width = image.shape[-2:]
    if segment.shape[-2:] != (height, width):
        raise ValueError(
            f"segment shape {tuple(segment.shape)} differs from image shape {tuple(image.shape)}"
        )
    if generator is None:
        window = centre_square_window(height, width)
        flip = False
    else:
        window = sample_crop_window(height, width, generator)
        flip = bool(generator.uniform() < flip_probability)
    image = resize_image(crop(image, window), size)
    segment = resize_segment(crop(segment, window), size).long()
    if flip:
        image, segment = image.flip(-1), segment.flip(-1)
    return image, segment
