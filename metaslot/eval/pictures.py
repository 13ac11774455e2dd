"""PNG pictures of an evaluation: segmentation grid, slot-count histogram, prototype gallery.

Drawn with matplotlib's Agg backend (no display needed). Images are shown min–max scaled per image,
so any input normalisation displays correctly.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as pyplot  # noqa: E402
import numpy  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional  # noqa: E402
from einops import rearrange  # noqa: E402
from jaxtyping import UInt8  # noqa: E402

from metaslot.eval.evaluate import EvaluationResult, PictureSamples  # noqa: E402
from metaslot.runtime import files  # noqa: E402


def displayable(image: torch.Tensor) -> numpy.ndarray:
    """(3, h, w) in any range → (h, w, 3) in [0, 1]."""
    image = image.float()
    low, high = image.amin(), image.amax()
    return rearrange((image - low) / (high - low).clamp(min=1e-8), "c h w -> h w c").numpy()


def _palette(count: int) -> numpy.ndarray:
    colours = matplotlib.colormaps["tab20"](numpy.linspace(0, 1, 20))[:, :3]
    return numpy.concatenate([colours] * (count // 20 + 1))[:count]


def _labels_rgb(labels: torch.Tensor, background_black: bool) -> numpy.ndarray:
    labels_np = labels.numpy()
    colours = _palette(int(labels_np.max()) + 1)
    rgb = colours[labels_np]
    if background_black:
        rgb[labels_np == 0] = 0.0
    return rgb


def kept_slot_labels(masks: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-pixel index of the kept slot with the largest mask, ``(k, h, w)`` masks → ``(h, w)`` labels.

    Pruned slots never win a pixel, whatever their (meaningless) masks hold.
    """
    return masks.masked_fill(~keep[:, None, None], float("-inf")).argmax(0)


def label_overlay(picture: numpy.ndarray, labels: numpy.ndarray, count: int) -> numpy.ndarray:
    """``picture`` (h, w, 3) tinted with one palette colour per label (``count`` labels at most)."""
    return 0.45 * picture + 0.55 * _palette(count)[labels]


def _resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(masks.shape[-2:]) == size:
        return masks
    return torch.nn.functional.interpolate(masks[None], size=size, mode="bilinear", align_corners=False)[0]


def _cat(chunks: list[torch.Tensor]) -> torch.Tensor | None:
    return torch.cat(chunks) if chunks else None


def save_segmentation_grid(samples: PictureSamples, path: Path, max_images: int = 8) -> Path:
    """Rows of: image | [ground truth] | prediction overlay | [reconstruction] | one panel per slot.

    Pruned slots are shown greyed out with a red "pruned" title.
    """
    images = _cat(samples.images)[:max_images]
    segments = _cat(samples.segments)  # none for images from outside a dataset (no annotation)
    masks = _cat(samples.masks)
    keep = _cat(samples.keep)
    reconstructions = _cat(samples.reconstructions)
    num_slots = 0 if masks is None else masks.shape[1]
    fixed = (
        ["image"]
        + (["ground truth"] if segments is not None else [])
        + (["prediction"] if masks is not None else [])
        + (["reconstruction"] if reconstructions is not None else [])
    )
    columns = len(fixed) + num_slots
    rows = images.shape[0]
    figure, axes = pyplot.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows), squeeze=False)
    for row in range(rows):
        picture = displayable(images[row])
        size = tuple(images.shape[-2:])
        panels: list[tuple[str, numpy.ndarray]] = [("image", picture)]
        if segments is not None:
            panels.append(("ground truth", _labels_rgb(segments[row], True)))
        if masks is not None:
            slot_masks = _resize_masks(masks[row], size)
            labels = kept_slot_labels(slot_masks, keep[row])
            panels.append(("prediction", label_overlay(picture, labels.numpy(), num_slots)))
        if reconstructions is not None:
            panels.append(("reconstruction", displayable(reconstructions[row])))
        for column, (title, panel) in enumerate(panels):
            axes[row, column].imshow(numpy.clip(panel, 0, 1))
            if row == 0:
                axes[row, column].set_title(title, fontsize=8)
        if masks is not None:
            for slot in range(num_slots):
                axis = axes[row, len(fixed) + slot]
                weight = slot_masks[slot].clamp(0, 1).numpy()[..., None]
                kept = bool(keep[row, slot])
                panel = picture * weight + (1 - weight) * (0.15 if kept else 0.6)
                axis.imshow(numpy.clip(panel, 0, 1))
                label = f"slot {slot}" if kept else f"slot {slot} pruned"
                axis.set_title(label, fontsize=7, color="black" if kept else "red")
                if not kept:
                    axis.plot([0, size[1] - 1], [0, size[0] - 1], color="red", linewidth=1)
                    axis.plot([0, size[1] - 1], [size[0] - 1, 0], color="red", linewidth=1)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    save_figure(figure, path)
    return path


def save_slot_histogram(result: EvaluationResult, path: Path) -> Path:
    """Heat map of images by (annotated objects, kept slots); the dashed diagonal is one slot per object,
    the dotted one above it one per object plus one for the background."""
    histogram = numpy.asarray(result.slot_histogram, dtype=float)
    used_rows = numpy.nonzero(histogram.sum(1))[0]
    used_columns = numpy.nonzero(histogram.sum(0))[0]
    top = int(max(used_rows.max(initial=0), used_columns.max(initial=0))) + 1
    histogram = histogram[:top, :top]
    figure, axis = pyplot.subplots(figsize=(0.5 * top + 2.5, 0.5 * top + 2))
    image = axis.imshow(histogram.T, origin="lower", cmap="Blues")
    for objects in range(top):
        for slots in range(top):
            if histogram[objects, slots]:
                axis.text(
                    objects, slots, int(histogram[objects, slots]), ha="center", va="center", fontsize=7
                )
    axis.plot(
        [-0.5, top - 0.5], [-0.5, top - 0.5], color="red", linewidth=0.8, linestyle="--", label="objects"
    )
    axis.plot(
        [-0.5, top - 1.5],
        [0.5, top - 0.5],
        color="darkorange",
        linewidth=0.8,
        linestyle=":",
        label="objects + 1 (background)",
    )
    axis.legend(loc="upper left", fontsize=7)
    axis.set_xlabel("annotated objects")
    axis.set_ylabel("kept slots")
    axis.set_title(f"slot count vs objects ({result.images} images)", fontsize=9)
    figure.colorbar(image, ax=axis, label="images")
    figure.tight_layout()
    save_figure(figure, path)
    return path


def _crop_to_mask(picture: numpy.ndarray, mask: numpy.ndarray, size: int = 48) -> numpy.ndarray:
    """The masked image inside the mask's bounding box, padded to a square and resized to ``size``."""
    rows, columns = numpy.nonzero(mask > 0.5)
    if rows.size == 0:
        rows, columns = numpy.nonzero(mask >= mask.max())
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    crop = (picture * mask[..., None] + 0.1 * (1 - mask[..., None]))[top:bottom, left:right]
    height, width = crop.shape[:2]
    side = max(height, width)
    padded = numpy.full((side, side, 3), 0.1)
    padded[
        (side - height) // 2 : (side - height) // 2 + height,
        (side - width) // 2 : (side - width) // 2 + width,
    ] = crop
    tensor = rearrange(torch.from_numpy(padded).float(), "h w c -> 1 c h w")
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="nearest")
    return rearrange(resized, "1 c h w -> h w c").numpy()


def save_prototype_gallery(
    samples: PictureSamples, result: EvaluationResult, path: Path, max_codes: int = 12, examples: int = 6
) -> Path | None:
    """For the most used prototypes: how often each fired, and example slots (masked crops) that chose it."""
    if not samples.codes or not samples.masks or result.code_usage is None:
        return None
    images, masks, keep, codes = (
        _cat(samples.images),
        _cat(samples.masks),
        _cat(samples.keep),
        _cat(samples.codes),
    )
    usage = numpy.asarray(result.code_usage)
    order = [int(code) for code in numpy.argsort(-usage, kind="stable") if usage[code] > 0][:max_codes]
    if not order:
        return None
    figure, axes = pyplot.subplots(
        len(order), examples + 1, figsize=(1.3 * (examples + 1), 1.3 * len(order)), squeeze=False
    )
    for row, code in enumerate(order):
        axes[row, 0].text(0.5, 0.5, f"code {code}\n{usage[code]} slots", ha="center", va="center", fontsize=8)
        positions = torch.nonzero((codes == code) & keep).tolist()[:examples]
        for column, (image_index, slot) in enumerate(positions, start=1):
            picture = displayable(images[image_index])
            mask = _resize_masks(masks[image_index], tuple(images.shape[-2:]))[slot].clamp(0, 1).numpy()
            axes[row, column].imshow(numpy.clip(_crop_to_mask(picture, mask), 0, 1))
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
        axis.spines[:].set_visible(False)
    figure.suptitle(f"MetaSlot prototypes: {int((usage > 0).sum())} of {usage.size} in use", fontsize=9)
    figure.tight_layout()
    save_figure(figure, path)
    return path


def save_figure(figure: pyplot.Figure, path: Path) -> None:
    """Write ``figure`` as a PNG all at once (a failed write leaves no half picture) and close it."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, dpi=100, format="png")
    finally:
        pyplot.close(figure)
    files.atomic_write_bytes(path, buffer.getvalue())


def write_pictures(
    samples: PictureSamples,
    result: EvaluationResult,
    directory: Path,
    *,
    max_images: int = 8,
    gallery_codes: int = 12,
    gallery_examples: int = 6,
) -> list[Path]:
    """All pictures that apply to this pipeline, into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if samples.count and max_images > 0:
        written.append(save_segmentation_grid(samples, directory / "segmentation.png", max_images))
    if result.images and any(any(row) for row in result.slot_histogram):
        written.append(save_slot_histogram(result, directory / "slot_count.png"))
    if gallery_codes > 0:
        gallery = save_prototype_gallery(
            samples, result, directory / "prototypes.png", gallery_codes, gallery_examples
        )
        if gallery is not None:
            written.append(gallery)
    return written


def segmentation_grid_image(samples: PictureSamples, max_images: int = 8) -> UInt8[numpy.ndarray, "h w 3"]:
    """The evaluation's segmentation grid (`metaslot.eval.pictures.save_segmentation_grid`) as RGB pixels.

    ``samples`` is what ``evaluate(..., pictures=PictureSamples(capacity))`` filled.
    """
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        path = save_segmentation_grid(samples, Path(folder) / "grid.png", max_images)
        with Image.open(path) as picture:
            return numpy.asarray(picture.convert("RGB"), dtype=numpy.uint8).copy()
