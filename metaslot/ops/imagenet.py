"""The image conventions every part shares: ImageNet statistics, the largest centred square and the
normalisation the datasets, `SlotPipeline.segment`, TAESD and the reference-file importers agree on.

Below both `metaslot.data` and `metaslot.models`, so neither keeps a copy (there were three copies of the
statistics and two of the centre square).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel mean of ImageNet RGB on the 0-1 scale."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel standard deviation of ImageNet RGB on the 0-1 scale."""
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
"""The same on the 0-255 scale (the reference's Normalize), written out so it is exact."""
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """(top, left, side) of the largest centred square (floor offsets, like the reference's CenterCrop)."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def normalize_255(pixels: Float[Tensor, "*b 3 h w"]) -> Float[Tensor, "*b 3 h w"]:
    """RGB on the 0-255 scale (float) to ImageNet-normalised values."""
    mean = torch.tensor(IMAGENET_MEAN_255, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD_255, dtype=pixels.dtype, device=pixels.device).view(3, 1, 1)
    return (pixels - mean) / std


def denormalize_255(image: Float[Tensor, "*b 3 h w"]) -> Float[Tensor, "*b 3 h w"]:
    """ImageNet-normalised values back to RGB on the 0-255 scale."""
    mean = torch.tensor(IMAGENET_MEAN_255, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD_255, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return image * std + mean
