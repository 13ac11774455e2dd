"""Byte codecs for record fields: compressed images to RGB arrays, index maps to label arrays and back."""

from __future__ import annotations

import cv2
import numpy
from jaxtyping import UInt8

from metaslot.errors import CorruptDataError
from metaslot.runtime.pixels import to_rgb8


def _as_buffer(data: bytes | bytearray | numpy.ndarray, what: str) -> numpy.ndarray:
    # The published files store encoded maps either as bytes or as the uint8 array cv2.imencode returns.
    if isinstance(data, numpy.ndarray):
        if data.dtype != numpy.uint8:
            raise CorruptDataError(f"encoded {what} array has dtype {data.dtype}, expected uint8 bytes")
        return data.reshape(-1)
    if not isinstance(data, bytes | bytearray | memoryview):
        # bytes(5) would silently give five zero bytes.
        raise ValueError(f"encoded {what} is a {type(data).__name__}, expected bytes or a uint8 array")
    return numpy.frombuffer(bytes(data), dtype=numpy.uint8)


def decode_image(data: bytes | bytearray | numpy.ndarray) -> UInt8[numpy.ndarray, "h w 3"]:
    """PNG/JPEG/WebP bytes to an RGB uint8 array (`to_rgb8`: 16-bit keeps the high byte, alpha dropped)."""
    decoded = cv2.imdecode(_as_buffer(data, "image"), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        raise CorruptDataError("could not decode image bytes (not a PNG/JPEG/WebP image)")
    if decoded.ndim == 3 and decoded.shape[2] == 4:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    elif decoded.ndim == 3 and decoded.shape[2] == 3:
        decoded = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return to_rgb8(decoded, "the image record", CorruptDataError)


def decode_index_map(data: bytes | bytearray | numpy.ndarray) -> UInt8[numpy.ndarray, "h w"]:
    """Lossless WebP/PNG index map (bytes or uint8 array) to an (h, w) uint8 label map."""
    decoded = cv2.imdecode(_as_buffer(data, "segment"), cv2.IMREAD_GRAYSCALE)
    if decoded is None:
        raise CorruptDataError("could not decode segment bytes (expected a lossless WebP or PNG index map)")
    return decoded


def encode_index_map_png(labels: UInt8[numpy.ndarray, "h w"]) -> bytes:
    """Lossless PNG of an index map (what our converter stores)."""
    ok, encoded = cv2.imencode(".png", numpy.ascontiguousarray(labels))
    if not ok:
        raise ValueError("PNG encoding of the index map failed")
    return encoded.tobytes()


def encode_index_map_webp(labels: UInt8[numpy.ndarray, "h w"]) -> UInt8[numpy.ndarray, " n"]:
    """Lossless WebP of an index map as the uint8 array ``cv2.imencode`` returns (the published layout)."""
    ok, encoded = cv2.imencode(".webp", numpy.ascontiguousarray(labels), [cv2.IMWRITE_WEBP_QUALITY, 101])
    if not ok:
        raise ValueError("WebP encoding of the index map failed")
    return encoded.reshape(-1)


def encode_image(rgb: UInt8[numpy.ndarray, "h w 3"], extension: str = ".png", quality: int = 95) -> bytes:
    """RGB array to PNG/JPEG bytes (tests, benchmarks and fixtures)."""
    parameters = [cv2.IMWRITE_JPEG_QUALITY, quality] if extension in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(
        extension, cv2.cvtColor(numpy.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), parameters
    )
    if not ok:
        raise ValueError(f"encoding an image as {extension} failed")
    return encoded.tobytes()


def rank_colours(
    rgb: UInt8[numpy.ndarray, "h w 3"], *, background_is_black: bool = True
) -> UInt8[numpy.ndarray, "h w"]:
    """Colour-coded instance map to labels: colours ranked by R + 256 G + 65536 B.

    With ``background_is_black`` black is always label 0 (even when absent, so the first object is
    never turned into background, unlike the reference); otherwise the smallest code becomes 0 (the
    reference's ClevrTex rule, where the background colour has the smallest code).
    """
    wide = rgb.astype(numpy.int64)
    codes = wide[..., 0] + 256 * wide[..., 1] + 65536 * wide[..., 2]
    present = numpy.unique(codes)
    if background_is_black and (present.size == 0 or present[0] != 0):
        present = numpy.concatenate([numpy.zeros(1, numpy.int64), present])
    if present.size > 256:
        raise CorruptDataError(
            f"{present.size - 1} distinct object colours exceed the 255 labels a uint8 map holds"
        )
    return numpy.searchsorted(present, codes).astype(numpy.uint8)
