"""`pipeline.segment`: images from anywhere → the evaluation transform → slots, masks and labels at their size."""

from __future__ import annotations

from pathlib import Path

import attrs
import hypothesis.strategies as st
import numpy
import PIL.Image
import pytest
import torch
from hypothesis import given

from metaslot.data.transforms import centre_square_window, crop, normalize, resize_image
from metaslot.models.decoders import BroadcastPixelDecoderSpec
from metaslot.models.encoders import CNNEncoderSpec
from metaslot.models.pipelines import AutoencoderSpec
from metaslot.models.records import AggregatorOutput, Window
from metaslot.models.segmentation import (
    ImageInputError,
    centre_square,
    image_batch,
    masks_at_input,
    preprocess,
    segmentation_at_input,
)
from tests.support.pipeline_checks import tiny_aggregator

SIZE = 8


def tiny_autoencoder(kind: str = "metaslot", **aggregator: object):
    torch.manual_seed(0)
    return AutoencoderSpec(
        encoder=CNNEncoderSpec(channels=(8, 8), kernel_size=3, strides=(2, 1)),
        aggregator=attrs.evolve(tiny_aggregator(kind, feature_dim=8), **aggregator),
        decoder=BroadcastPixelDecoderSpec(hidden_channels=8, broadcast_size=2, num_convs=1),
        image_size=SIZE,
    ).build()


def random_uint8(height: int, width: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize(("height", "width"), [(45, 37), (37, 45), (8, 8), (5, 11)])
def test_uint8_batches_reach_the_model_exactly_as_dataset_images(height: int, width: int) -> None:
    images = random_uint8(height, width)
    window = centre_square(height, width)
    reference = centre_square_window(height, width)
    assert (window.top, window.left, window.side) == (reference.top, reference.left, reference.height)
    expected = torch.stack([normalize(resize_image(crop(image, reference), SIZE)) for image in images])
    assert torch.equal(preprocess(images, window, SIZE), expected)


def test_float_images_in_unit_range_match_uint8_up_to_rounding() -> None:
    images = random_uint8(45, 37)
    window = centre_square(45, 37)
    from_uint8 = preprocess(images, window, SIZE)
    from_float = preprocess(images.float() / 255, window, SIZE)
    # The uint8 path resizes in fixed point and rounds: within one grey level (/ the smallest ImageNet std).
    torch.testing.assert_close(from_float, from_uint8, atol=1.0 / 57.12, rtol=0)


def test_masks_are_placed_in_the_seen_square_and_unseen_pixels_get_label_minus_one() -> None:
    masks = torch.zeros(1, 2, 2, 2)
    masks[0, 1] = 1.0  # slot 1 owns the whole square
    window = Window(top=1, left=0, side=2)
    full = masks_at_input(masks, window, 4, 2)
    assert full.shape == (1, 2, 4, 2)
    assert torch.equal(full[0, 1], torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]))
    aggregated = AggregatorOutput(
        slots=torch.zeros(1, 2, 3),
        attention=torch.zeros(1, 2, 4),
        keep=torch.tensor([[True, True]]),
        codes=torch.tensor([[0, 1]]),
    )
    labels = segmentation_at_input(aggregated, masks, window, 4, 2).labels
    assert torch.equal(labels[0], torch.tensor([[-1, -1], [1, 1], [1, 1], [-1, -1]]))


@given(
    batch=st.integers(1, 3),
    slots=st.integers(2, 5),
    side=st.integers(2, 6),
    extra=st.integers(0, 4),
    seed=st.integers(0, 2**16),
)
def test_labels_never_pick_pruned_slots(batch: int, slots: int, side: int, extra: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    keep = torch.rand(batch, slots, generator=generator) < 0.5
    keep[:, 0] = True  # evaluation always keeps the first slot of each code
    # Pruned slots get the largest values, so only the keep mask can stop them from winning.
    masks = torch.rand(batch, slots, side, side, generator=generator) + 10.0 * (~keep)[:, :, None, None]
    aggregated = AggregatorOutput(
        slots=torch.zeros(batch, slots, 4),
        attention=torch.zeros(batch, slots, side * side),
        keep=keep,
        codes=torch.zeros(batch, slots, dtype=torch.long),
    )
    window = centre_square(side + extra, side)
    labels = segmentation_at_input(aggregated, masks, window, side + extra, side).labels
    seen = labels >= 0
    assert int(seen.sum()) == batch * side * side
    chosen_kept = torch.gather(keep, 1, labels.clamp(min=0).flatten(1)).view_as(labels)
    assert bool(chosen_kept[seen].all())


def test_segment_gives_the_forward_masks_without_a_loss_and_keeps_train_mode() -> None:
    pipeline = tiny_autoencoder().train()
    images = random_uint8(SIZE, SIZE)
    rng = torch.get_rng_state()
    result = pipeline.segment(images)
    assert torch.equal(torch.get_rng_state(), rng), "segment must not draw from the global RNG"
    assert pipeline.training, "segment restores the mode it found"
    pipeline.eval()
    with torch.no_grad():
        output = pipeline(preprocess(images, centre_square(SIZE, SIZE), SIZE))
    assert torch.equal(result.masks, output.masks) and torch.equal(result.keep, output.keep)
    assert torch.equal(result.slots, output.slots)
    assert torch.equal(result.labels, output.masks.masked_fill(~output.keep[..., None, None], -1).argmax(1))
    assert not result.masks.requires_grad


def test_paths_and_pil_images_of_odd_sizes_give_what_their_pixels_give(tmp_path: Path) -> None:
    pipeline = tiny_autoencoder()
    images = random_uint8(13, 21)
    paths, pictures = [], []
    for index, image in enumerate(images):
        picture = PIL.Image.fromarray(image.permute(1, 2, 0).numpy())
        picture.save(tmp_path / f"{index}.png")
        paths.append(tmp_path / f"{index}.png")
        pictures.append(picture)
    from_tensor = pipeline.segment(images)
    assert from_tensor.masks.shape == (2, 3, 13, 21) and from_tensor.labels.shape == (2, 13, 21)
    assert from_tensor.window == Window(top=0, left=4, side=13)
    for other in (
        pipeline.segment(paths),
        pipeline.segment([str(path) for path in paths]),
        pipeline.segment(pictures),
    ):
        assert torch.equal(other.masks, from_tensor.masks) and torch.equal(other.labels, from_tensor.labels)
    one = pipeline.segment(paths[1])  # a batch of one: the same up to batched-kernel rounding
    torch.testing.assert_close(one.masks[0], from_tensor.masks[1])


def test_grey_and_alpha_files_are_read_as_rgb(tmp_path: Path) -> None:
    grey = numpy.arange(6 * 7, dtype=numpy.uint8).reshape(6, 7)
    PIL.Image.fromarray(grey, mode="L").save(tmp_path / "grey.png")
    PIL.Image.fromarray(numpy.zeros((6, 7, 4), dtype=numpy.uint8), mode="RGBA").save(tmp_path / "alpha.png")
    batch = image_batch(tmp_path / "grey.png")
    assert batch.shape == (1, 3, 6, 7) and batch.dtype == torch.uint8
    assert torch.equal(batch[0, 0], torch.from_numpy(grey)) and torch.equal(batch[0, 0], batch[0, 2])
    assert image_batch(tmp_path / "alpha.png").shape == (1, 3, 6, 7)


def test_sampling_initialisers_are_repeatable_through_the_generator() -> None:
    pipeline = tiny_autoencoder("slot_attention", initializer="shared", shared_samples_at_eval=True)
    images = random_uint8(SIZE, SIZE)
    first, again = pipeline.segment(images), pipeline.segment(images)
    assert torch.equal(first.slots, again.slots)
    other = pipeline.segment(images, generator=torch.Generator().manual_seed(5))
    assert not torch.equal(first.slots, other.slots)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (
            torch.zeros(3, 8, 8, dtype=torch.uint8),
            r"\(b, 3, h, w\), got shape \(3, 8, 8\) \(add the batch axis",
        ),
        (torch.zeros(1, 4, 8, 8, dtype=torch.uint8), r"RGB batch \(b, 3, h, w\), got shape \(1, 4, 8, 8\)"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.int32), "dtype torch.int32 are not understood"),
        (torch.full((1, 3, 8, 8), 2.0), r"float images must be RGB in \[0, 1\], got values in \[2, 2\]"),
        (torch.full((1, 3, 8, 8), float("nan")), "float images must be RGB in"),
        ([], "no images given"),
    ],
)
def test_bad_inputs_say_what_to_pass(images: object, message: str) -> None:
    with pytest.raises(ImageInputError, match=message):
        tiny_autoencoder().segment(images)


def test_files_that_are_not_images_or_differ_in_size(tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageInputError, match="notes.png' is not an image PIL can read"):
        image_batch([tmp_path / "notes.png"])
    with pytest.raises(FileNotFoundError, match="missing.png' does not exist"):
        image_batch(tmp_path / "missing.png")
    PIL.Image.new("RGB", (4, 5)).save(tmp_path / "a.png")
    PIL.Image.new("RGB", (6, 5)).save(tmp_path / "b.png")
    with pytest.raises(ImageInputError, match=r"different sizes \[\(5, 4\), \(5, 6\)\].*one at a time"):
        image_batch([tmp_path / "a.png", tmp_path / "b.png"])
