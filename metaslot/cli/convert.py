"""`python -m cli.convert {voc,coco,clevrtex} --raw-dir RAW --out OUT`: raw datasets to our pickle-free LMDB files.

Writes ``OUT/train.lmdb`` and ``OUT/val.lmdb``; point the dataset root at the parent of OUT
(e.g. ``--out data/voc`` then ``VOCSpec(root="data")``).

`python -m cli.convert checkpoint FILE --model M --data D [--aggregator A] [--vqvae STAGE1] --out FOLDER`:
a reference ``.pth`` file (read with ``weights_only=True``) to a ``save_pretrained`` folder
(safetensors, config.json, model card with the source file's SHA-256), so it is never unpickled again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro

from metaslot.cli._errors import user_errors
from metaslot.data.convert import ConversionReport, convert_clevrtex, convert_coco, convert_voc

PROGRAM = "python -m cli.convert"


def _print_report(report: ConversionReport, out: Path) -> None:
    for name, count in report.counts.items():
        print(f"wrote {count} records to {out / name}")
    if report.overlapping_train_images:
        action = "dropped from train" if report.dropped else "kept (pass --drop-overlap to drop them)"
        print(
            f"train/val overlap: {len(report.overlapping_train_images)} VOC2012 training images are identical to "
            f"VOC2007 validation images; {action}. First few: {report.overlapping_train_images[:5]}"
        )


def voc(raw_dir: Path, out: Path, drop_overlap: bool = False, progress: bool = True) -> None:
    """VOC2012 SegmentationObject → train, VOC2007 SegmentationObject → val (RAW holds VOC2012/ and VOC2007/ or VOCdevkit/)."""
    _print_report(convert_voc(raw_dir, out, drop_overlap=drop_overlap, progress=progress), out)


def coco(raw_dir: Path, out: Path, progress: bool = True) -> None:
    """COCO 2017 panoptic (RAW holds annotations/, train2017/, val2017/)."""
    _print_report(convert_coco(raw_dir, out, progress=progress), out)


def clevrtex(raw_dir: Path, out: Path, progress: bool = True) -> None:
    """ClevrTex: clevrtex_full → train, clevrtex_outd → val (RAW holds both folders)."""
    _print_report(convert_clevrtex(raw_dir, out, progress=progress), out)


def checkpoint(
    file: Annotated[Path, tyro.conf.Positional],
    model: str,
    data: str,
    out: Path,
    aggregator: str = "metaslot",
    vqvae: Path | None = None,
) -> None:
    """A reference .pth (MetaSlot / VQ-VFM-OCL) → a save_pretrained folder; --vqvae: a SLATE/SlotDiffusion file's stage-1 VQ-VAE file."""
    import metaslot
    from metaslot.pretrained.sharing import save_pretrained

    pipeline = metaslot.load(file, model=model, data=data, aggregator=aggregator, vqvae=vqvae)
    folder = save_pretrained(pipeline, out)
    print(
        f"wrote {folder}: model.safetensors, config.json, README.md (load it with metaslot.load({str(folder)!r}))"
    )
    if model in ("slate", "slotdiffusion") and vqvae is None:
        print(
            "note: the reference file holds no VQ decoder, so this model segments and scores but draws no "
            "images; convert again with --vqvae STAGE1.pth (the stage-1 VQ-VAE file) to render"
        )


def main(args: list[str] | None = None) -> None:
    """Console entry point (``metaslot-convert``); ``args`` defaults to ``sys.argv[1:]``."""
    # Without prog, tyro names the program after sys.argv[0]: the shim's file path under `python -m`.
    with user_errors("convert"):
        tyro.extras.subcommand_cli_from_dict(
            {"voc": voc, "coco": coco, "clevrtex": clevrtex, "checkpoint": checkpoint},
            prog=PROGRAM,
            args=args,
        )


if __name__ == "__main__":
    main()
