"""Images from outside a dataset → the model's input, and its masks → the images' own size.

What :meth:`SlotPipeline.segment` is made of, as pure functions. The preprocessing is the evaluation
transform of the datasets (``metaslot/data/transforms.py``, reference §3.5): the largest centred square
(floor offsets), a bilinear resize with antialiasing to the model's side, then ImageNet normalisation on
the 0-255 scale. A uint8 batch therefore reaches the model exactly as a dataset image of the same pixels
would. Masks go back the other way: resized bilinearly to the square and placed at its position; the
pixels outside it (non-square inputs only) belong to no slot.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy
import PIL.Image
import PIL.ImageOps
import torch
from jaxtyping import Bool, Float, Int, UInt8
from torch import Tensor
from torch.nn import functional
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as tvf

from metaslot.errors import DataError, MissingFileError
from metaslot.models.records import AggregatorOutput, Segmentation, Window
from metaslot.ops import imagenet
from metaslot.ops.metrics import labels_allowing_empty
from metaslot.runtime.pixels import to_rgb8

ImageFile = str | os.PathLike | PIL.Image.Image
"""One image given by path or as a PIL image."""
Images = Tensor | ImageFile | Sequence[ImageFile]
"""What ``segment`` accepts: a uint8 (0-255) or float (0-1) RGB batch ``(b, 3, h, w)``, one image file, or
a list of them. (The tensor's shape and dtype are checked by :func:`image_batch`, which says what is wrong.)"""


class ImageInputError(DataError):
    """An input that is not an RGB image (batch) the model can read; the message names it and the fix."""


_NUMERIC_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
"""PIL modes whose pixel values `to_rgb8` reads directly (others, e.g. palette or CMYK, go through RGB)."""


def read_image(source: ImageFile) -> UInt8[Tensor, "3 h w"]:
    """An RGB uint8 image from a path or a PIL image (EXIF orientation applied), by the dataset reader's
    rule (`metaslot.data.decoding.to_rgb8`: 16-bit keeps the high byte, floats in [0, 1] scale by 255)."""
    if isinstance(source, PIL.Image.Image):
        picture, what = source, "the PIL image"
    else:
        path = Path(source)
        picture, what = open_picture(path), f"image {str(path)!r}"
    if picture.mode not in _NUMERIC_MODES:
        picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
    rgb = to_rgb8(numpy.asarray(picture), what, ImageInputError)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def open_picture(path: Path) -> PIL.Image.Image:
    """The decoded image file (EXIF orientation applied); a missing file, something that is not an image
    and a decompression bomb (more pixels than ``PIL.Image.MAX_IMAGE_PIXELS``) are one-line errors."""
    if not path.is_file():
        raise MissingFileError(f"image {str(path)!r} does not exist (or is not a file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as opened:
                picture = PIL.ImageOps.exif_transpose(opened)
                picture.load()
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as error:
        raise ImageInputError(
            f"image {str(path)!r} has more pixels than the {PIL.Image.MAX_IMAGE_PIXELS} allowed (a "
            "decompression bomb?): resize it, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file"
        ) from error
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageInputError(
            f"{str(path)!r} is not an image PIL can read ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no details'}): pass PNG, JPEG or another "
            "format Pillow opens"
        ) from error
    return picture


def _check_batch(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        fix = " (add the batch axis: images[None])" if images.dim() == 3 and images.shape[0] == 3 else ""
        raise ImageInputError(
            f"images must be an RGB batch (b, 3, h, w), got shape {tuple(images.shape)}{fix}"
        )
    if images.shape[0] == 0 or images.shape[-1] == 0 or images.shape[-2] == 0:
        raise ImageInputError(
            f"images must hold at least one non-empty image, got shape {tuple(images.shape)}"
        )
    if images.dtype == torch.uint8:
        return
    if not images.is_floating_point():
        raise ImageInputError(
            f"images of dtype {images.dtype} are not understood: pass uint8 (0-255) or float (0-1) RGB"
        )
    low, high = float(images.min()), float(images.max())
    if not (low >= 0.0 and high <= 1.0):  # also catches NaN
        raise ImageInputError(
            f"float images must be RGB in [0, 1], got values in [{low:.3g}, {high:.3g}]: divide 0-255 "
            "images by 255 (or pass them as uint8); dataset images are ImageNet-normalised, undo that with "
            "metaslot.data.transforms.denormalize"
        )


def image_batch(images: Images) -> UInt8[Tensor, "b 3 h w"] | Float[Tensor, "b 3 h w"]:
    """A checked RGB batch: a tensor as given, or the files/PIL images read and stacked (one size only)."""
    if isinstance(images, Tensor):
        _check_batch(images)
        return images
    sources = [images] if isinstance(images, (str, os.PathLike, PIL.Image.Image)) else list(images)
    if not sources:
        raise ImageInputError("no images given: pass a batch tensor, a path, a PIL image or a list of them")
    for source in sources:
        if not isinstance(source, (str, os.PathLike, PIL.Image.Image)):
            raise ImageInputError(
                f"cannot read an image from a {type(source).__name__}: a list holds paths or PIL images "
                "(stack tensors into one (b, 3, h, w) batch instead)"
            )
    pictures = [read_image(source) for source in sources]
    sizes = sorted({tuple(picture.shape[-2:]) for picture in pictures})
    if len(sizes) > 1:
        raise ImageInputError(
            f"images of different sizes {sizes} cannot share one batch (masks come back at the input "
            "size): segment them one at a time, e.g. [model.segment(path) for path in paths]"
        )
    return torch.stack(pictures)


def centre_square(height: int, width: int) -> Window:
    """The largest centred square (floor offsets, like the evaluation transform's centre crop)."""
    top, left, side = imagenet.centre_square(height, width)
    return Window(top=top, left=left, side=side)


def preprocess(
    images: UInt8[Tensor, "b 3 h w"] | Float[Tensor, "b 3 h w"], window: Window, size: int
) -> Float[Tensor, "b 3 size size"]:
    """Crop ``window``, resize to ``size`` (bilinear, antialiased) and ImageNet-normalise, as evaluation does."""
    square = images[..., window.top : window.top + window.side, window.left : window.left + window.side]
    resized = tvf.resize(square, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    pixels = resized.float() if resized.dtype == torch.uint8 else resized.float() * 255.0
    return imagenet.normalize_255(pixels)


def masks_at_input(
    masks: Float[Tensor, "b k s s"], window: Window, height: int, width: int
) -> Float[Tensor, "b k h w"]:
    """Masks of the square the model saw, resized to it (bilinear) and placed in an all-zero frame."""
    side = window.side
    if tuple(masks.shape[-2:]) != (side, side):
        masks = functional.interpolate(masks.float(), size=(side, side), mode="bilinear", align_corners=False)
    if (side, side) == (height, width):
        return masks.float()
    framed = masks.new_zeros((*masks.shape[:2], height, width), dtype=torch.float32)
    framed[..., window.top : window.top + side, window.left : window.left + side] = masks
    return framed


def outside(window: Window, height: int, width: int, device: torch.device) -> Bool[Tensor, "h w"]:
    """True for the pixels the model did not see."""
    unseen = torch.ones(height, width, dtype=torch.bool, device=device)
    unseen[window.top : window.top + window.side, window.left : window.left + window.side] = False
    return unseen


def segmentation_at_input(
    aggregated: AggregatorOutput, masks: Float[Tensor, "b k s s"], window: Window, height: int, width: int
) -> Segmentation:
    """The :class:`Segmentation` of an ``height × width`` batch from the model-size ``masks``."""
    full = masks_at_input(masks, window, height, width)
    labels: Int[Tensor, "b h w"] = labels_allowing_empty(full, aggregated.keep)
    # An image whose slots were all dropped (AdaSlot) has no slot to give its pixels: -1, as outside.
    labels = labels.masked_fill(labels == masks.shape[1], -1)
    labels = labels.masked_fill(outside(window, height, width, labels.device), -1)
    return Segmentation(
        slots=aggregated.slots,
        keep=aggregated.keep,
        codes=aggregated.codes,
        masks=full,
        labels=labels,
        window=window,
    )
