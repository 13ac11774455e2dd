"""One rule for turning decoded pixels of any depth into 8-bit RGB, shared by every image reader.

The dataset reader (`metaslot.data.decoding.decode_image`), `segment()` and ``cli.visualize --image``
(`metaslot.models.segmentation.read_image`) once disagreed: a 16-bit grey PNG read as white on one
path and by its high byte on the other, and a float image became black.
"""

from __future__ import annotations

import numpy
from jaxtyping import UInt8

from metaslot.errors import DataError


def to_rgb8(
    pixels: numpy.ndarray, what: str, error: type[DataError] = DataError
) -> UInt8[numpy.ndarray, "h w 3"]:
    """Decoded pixels (``h w``, or ``h w c`` with c = 1, 2, 3 or 4, colour in RGB order) as 8-bit RGB: the
    one rule of every image reader (dataset records, `segment`, ``cli.visualize --image``).

    8-bit stays; 16-bit (also PIL's 32-bit integer mode holding 16-bit values) keeps its high byte;
    floats in [0, 1] are scaled by 255 (other floats are refused: their range is unknown); grey becomes
    three equal channels; alpha is dropped.
    """
    if pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = pixels[:, :, : pixels.shape[2] - 1]  # grey+alpha, RGB+alpha: drop alpha
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise error(f"{what} has pixels of shape {pixels.shape}, which is no grey or RGB(A) image")
    if pixels.dtype == numpy.bool_:
        pixels = pixels.astype(numpy.uint8) * 255
    elif pixels.dtype.kind in "ui" and pixels.dtype.itemsize > 1:
        if pixels.size and (int(pixels.min()) < 0 or int(pixels.max()) > 65535):
            raise error(f"{what} holds integer pixels outside 0-65535: save it as an 8- or 16-bit image")
        pixels = (pixels.astype(numpy.uint32) >> 8).astype(numpy.uint8)
    elif pixels.dtype.kind == "f":
        if pixels.size and not (numpy.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1):
            raise error(
                f"{what} holds float pixels outside [0, 1] (range {pixels.min():.3g} to {pixels.max():.3g}): "
                "scale it to [0, 1] or save it as an 8-bit image"
            )
        pixels = numpy.round(pixels.astype(numpy.float64) * 255).astype(numpy.uint8)
    elif pixels.dtype != numpy.uint8:
        raise error(f"{what} has pixels of type {pixels.dtype}: save it as an 8- or 16-bit image")
    if pixels.ndim == 2:
        pixels = numpy.repeat(pixels[:, :, None], 3, axis=2)
    return numpy.ascontiguousarray(pixels)
