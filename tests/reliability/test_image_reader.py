"""Images are read the same way everywhere (issue 28, item 6).

`segment()` and ``cli.visualize --image`` read a 16-bit grey PNG as white (99.5 % of the pixels 255)
while the dataset reader kept the high byte (mean 130); a mode ``F`` image became black. Both paths
now share one conversion to 8-bit RGB; a decompression bomb and a missing file are one-line errors.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy
import PIL.Image
import pytest

from metaslot.data.decoding import decode_image
from metaslot.errors import MetaslotError, MissingFileError
from metaslot.models.segmentation import ImageInputError, read_image


def grey_ramp_16bit() -> numpy.ndarray:
    return (numpy.arange(64 * 64, dtype=numpy.uint32).reshape(64, 64) * 16).astype(numpy.uint16)


def png_bytes(picture: PIL.Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="png")
    return buffer.getvalue()


def test_a_16_bit_grey_png_reads_the_same_from_a_file_and_from_a_dataset_record(tmp_path: Path) -> None:
    ramp = grey_ramp_16bit()
    encoded = png_bytes(PIL.Image.fromarray(ramp))
    path = tmp_path / "deep.png"
    path.write_bytes(encoded)
    from_file = read_image(path).permute(1, 2, 0).numpy()
    from_record = decode_image(encoded)
    assert numpy.array_equal(from_file, from_record)
    assert numpy.array_equal(from_file[:, :, 0], (ramp >> 8).astype(numpy.uint8))  # the high byte
    assert (from_file == 255).mean() < 0.05


def test_a_float_image_in_0_1_is_scaled_not_blackened() -> None:
    values = numpy.linspace(0.0, 1.0, 32 * 32, dtype=numpy.float32).reshape(32, 32)
    picture = PIL.Image.fromarray(values, mode="F")
    read = read_image(picture).numpy()
    assert numpy.array_equal(read[0], numpy.round(values * 255).astype(numpy.uint8))


def test_a_float_image_outside_0_1_is_refused_in_one_line() -> None:
    picture = PIL.Image.fromarray(numpy.full((8, 8), 300.0, dtype=numpy.float32), mode="F")
    with pytest.raises(ImageInputError, match="float"):
        read_image(picture)


def test_a_decompression_bomb_is_one_line(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "bomb.png"
    PIL.Image.new("L", (200, 200)).save(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # 40 000 pixels: over twice the limit
    with pytest.raises(ImageInputError, match="bomb.png") as caught:
        read_image(path)
    assert "\n" not in str(caught.value)


def test_a_large_image_between_the_warning_and_the_bomb_limit_is_refused_too(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "large.png"
    PIL.Image.new("L", (40, 40)).save(path)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # 1 600 pixels: PIL only warns
    with pytest.raises(ImageInputError, match="pixels"):
        read_image(path)


def test_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match="nowhere.png"):
        read_image(tmp_path / "nowhere.png")
    assert issubclass(MissingFileError, MetaslotError)
