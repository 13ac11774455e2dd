"""`python -m cli.convert {voc,coco,clevrtex} --raw-dir RAW --out OUT`: raw datasets to our pickle-free LMDB files.

Writes ``OUT/train.lmdb`` and ``OUT/val.lmdb``; point the dataset root at the parent of OUT
(e.g. ``--out data/voc`` then ``VOCSpec(root="data")``).
"""

from __future__ import annotations

from pathlib import Path

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


def main(args: list[str] | None = None) -> None:
    """Console entry point (``metaslot-convert``); ``args`` defaults to ``sys.argv[1:]``."""
    # Without prog, tyro names the program after sys.argv[0]: the shim's file path under `python -m`.
    with user_errors("convert"):
        tyro.extras.subcommand_cli_from_dict(
            {"voc": voc, "coco": coco, "clevrtex": clevrtex}, prog=PROGRAM, args=args
        )


if __name__ == "__main__":
    main()
