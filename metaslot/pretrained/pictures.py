"""Pictures of a trained model on image files from anywhere (``python -m cli.visualize RUN --image ...``).

For each file: ``pipeline.segment`` at the file's own size. Written into one folder:
``segmentation.png`` (the evaluation grid: the square the model saw | prediction | one panel per slot,
pruned slots marked), ``labels-<n>-<name>.png`` (each pixel tinted with its slot, at the file's full
size; what the model did not see is dimmed) and ``slots.json`` (kept-slot count, kept slots, prototype
codes and the seen square per file).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy
import PIL.Image
import torch
from jaxtyping import UInt8
from torch.nn import functional

from metaslot.errors import ConfigError
from metaslot.eval.evaluate import PictureSamples
from metaslot.eval.pictures import label_overlay, save_segmentation_grid
from metaslot.models.pipelines import SlotPipeline
from metaslot.models.records import Segmentation
from metaslot.models.segmentation import image_batch
from metaslot.runtime.files import atomic_write_bytes


@dataclass(frozen=True)
class ImageSlots:
    """What the model made of one file: its kept slots (indices) out of ``num_slots``, their codes."""

    image: str
    height: int
    width: int
    num_slots: int
    kept: list[int]
    codes: list[int]
    window: dict[str, int]


@dataclass(frozen=True)
class ImagePictures:
    """The files written and one :class:`ImageSlots` per image, in the order given."""

    written: list[Path]
    images: list[ImageSlots]


def _square(tensor: torch.Tensor, segmentation: Segmentation, side: int) -> torch.Tensor:
    """The seen square of ``tensor`` (c h w), resized to ``side`` (bilinear) for the grid."""
    window = segmentation.window
    square = tensor[..., window.top : window.top + window.side, window.left : window.left + window.side]
    return functional.interpolate(
        square[None].float(), size=(side, side), mode="bilinear", align_corners=False
    )


def _label_picture(image: torch.Tensor, segmentation: Segmentation) -> numpy.ndarray:
    """The full-size image tinted by slot label; pixels outside the seen square are dimmed."""
    picture = image.permute(1, 2, 0).float().numpy() / 255.0
    labels = segmentation.labels[0].cpu().numpy()
    tinted = label_overlay(picture, numpy.clip(labels, 0, None), segmentation.masks.shape[1])
    tinted[labels < 0] = 0.3 * picture[labels < 0]
    return (numpy.clip(tinted, 0, 1) * 255).round().astype(numpy.uint8)


def png_bytes(picture: UInt8[numpy.ndarray, "h w 3"]) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(picture).save(buffer, format="png")
    return buffer.getvalue()


def draw_image_files(pipeline: torch.nn.Module, files: list[Path], output_dir: Path) -> ImagePictures:
    """Segment each file (one at a time: sizes may differ) and write the pictures into ``output_dir``."""
    if not isinstance(pipeline, SlotPipeline):
        raise ConfigError(
            f"a {type(pipeline).__name__} has no slots to draw: pass a run of a slot model (autoencoder, "
            "dinosaur, slate, slotdiffusion)"
        )
    batches = [image_batch(path) for path in files]  # every file is read before anything is written
    output_dir.mkdir(parents=True, exist_ok=True)
    side = pipeline.image_size
    samples = PictureSamples(capacity=len(files))
    written: list[Path] = []
    described: list[ImageSlots] = []
    for index, (path, batch) in enumerate(zip(files, batches, strict=True)):
        segmentation = pipeline.segment(batch)
        image = batch[0]
        masks = segmentation.masks[0].cpu()
        samples.images.append(_square(image, segmentation, side) / 255.0)
        samples.masks.append(_square(masks, segmentation, side))
        samples.keep.append(segmentation.keep.cpu())
        samples.codes.append(segmentation.codes.cpu())
        labels_path = output_dir / f"labels-{index}-{path.stem}.png"
        atomic_write_bytes(labels_path, png_bytes(_label_picture(image, segmentation)))
        written.append(labels_path)
        window = segmentation.window
        described.append(
            ImageSlots(
                image=str(path),
                height=int(image.shape[-2]),
                width=int(image.shape[-1]),
                num_slots=int(masks.shape[0]),
                kept=[int(slot) for slot in torch.nonzero(segmentation.keep[0]).flatten().tolist()],
                codes=[int(code) for code in segmentation.codes[0].tolist()],
                window={"top": window.top, "left": window.left, "side": window.side},
            )
        )
    grid = save_segmentation_grid(samples, output_dir / "segmentation.png", max_images=len(files))
    summary = output_dir / "slots.json"
    atomic_write_bytes(summary, json.dumps([vars(item) for item in described], indent=2).encode())
    return ImagePictures(written=[grid, *written, summary], images=described)
