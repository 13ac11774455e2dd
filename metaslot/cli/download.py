"""`python -m cli.download {voc,coco,clevrtex,movi_d} [--root data]`: the published converted LMDB files.

Writes ``ROOT/<dataset>/train.lmdb`` and ``ROOT/<dataset>/val.lmdb`` (what ``--data.root ROOT`` reads),
with a progress bar; an interrupted download resumes from ``<file>.partial`` when run again. Each file
is checked against the table in ``metaslot.data.download`` (size and SHA-256 where known) before it is
renamed into place; ``--list`` prints that table, including which URLs and hashes are unverified.
``--models`` prints the published models metaslot can load (``metaslot.list_models()``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaslot.cli._errors import user_errors
from metaslot.data.download import (
    DATASETS,
    PUBLISHED_FILES,
    SPLITS,
    DownloadReport,
    download_dataset,
    format_bytes,
)

PROGRAM = "python -m cli.download"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Download the published converted LMDB files of one dataset into ROOT/<dataset>/.",
        allow_abbrev=False,
    )
    parser.add_argument("dataset", nargs="?", choices=DATASETS, help="which dataset to fetch")
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("data"),
        help="data folder (default: data, the presets' --data.root)",
    )
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument(
        "--base-url",
        default=None,
        help="a mirror laid out as BASE_URL/<dataset>/<split>.lmdb instead of the release URLs",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--list", action="store_true", help="print the table of files, URLs and hashes, then stop"
    )
    parser.add_argument(
        "--models",
        action="store_true",
        help="print the published models metaslot can load (source, format, size, SHA-256, preset, "
        "reported numbers), then stop",
    )
    return parser


def table_lines() -> list[str]:
    """One line per published file: path, size, SHA-256 and URL, each marked where unverified."""
    lines = []
    for entry in PUBLISHED_FILES:
        size = format_bytes(entry.size) if entry.size is not None else "size unknown"
        digest = entry.sha256 or "sha256 unknown"
        url = entry.url if entry.url_verified else f"{entry.url} (unverified)"
        lines.append(f"{entry.relative_path}  {size}  {digest}  {url}")
    return lines


def model_lines() -> list[str]:
    """A paragraph per published model (``metaslot.list_models()``): what to fetch, how to load it."""
    from metaslot.pretrained.catalog import list_models

    lines = []
    for model in list_models():
        size = format_bytes(model.size) if model.size is not None else "size unknown"
        digest = model.sha256 or "sha256 unknown (printed when the file is loaded)"
        source = model.source if model.source_verified else f"{model.source} (unverified)"
        lines += [
            f"{model.name}: {model.title}",
            f"  source: {source}  [{model.publisher}]",
            f"  file: {model.file_format}, {size}, {digest}",
            f"  preset: {model.preset.flags()}   load: {model.load_call()}",
            f"  reported: {', '.join(str(number) for number in model.reported)}  ({model.reported_in})",
            f"  protocol: {model.protocol}",
        ]
        if model.companion is not None:
            lines.append(f"  also needs: {model.companion}")
    return lines


def report_lines(report: DownloadReport) -> list[str]:
    """What to tell the user about one file: where it is, and a warning when it could not be verified."""
    action = (
        "already present"
        if report.downloaded_bytes == 0 and report.resumed_from == 0
        else f"downloaded ({format_bytes(report.resumed_from)} resumed)"
        if report.resumed_from
        else "downloaded"
    )
    lines = [
        f"{report.path}: {action}, {report.size} bytes, sha256 {report.sha256}, checked: {report.checked}"
    ]
    if report.checked == "format only":
        lines.append(
            f"warning: {report.path} cannot be verified: the table in metaslot/data/download.py has no size "
            "or SHA-256 for it (only its LMDB header was checked); compare the size and SHA-256 above with "
            "the release page"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``metaslot-download``); ``argv`` defaults to ``sys.argv[1:]``."""
    parser = build_parser()
    arguments = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    if arguments.list:
        print("\n".join(table_lines()))
        return
    if arguments.models:
        print("\n".join(model_lines()))
        return
    if arguments.dataset is None:
        parser.error(f"name a dataset: {', '.join(DATASETS)} (or --list, or --models)")
    with user_errors("download"):
        reports = download_dataset(
            arguments.dataset,
            arguments.root,
            splits=arguments.splits,
            base_url=arguments.base_url,
            progress=not arguments.no_progress,
        )
        for report in reports:
            for line in report_lines(report):
                print(line, file=sys.stderr if line.startswith("warning:") else sys.stdout)


if __name__ == "__main__":
    main()
