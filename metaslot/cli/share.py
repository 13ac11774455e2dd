"""`python -m cli.share RUN FOLDER [--checkpoint last|best] [--push-to OWNER/NAME]`: share a trained model.

Writes FOLDER with ``model.safetensors`` (every weight, frozen backbones included), ``config.json``
(the run's config) and a model card ``README.md`` (preset, data, steps, evaluation table), which
``metaslot.load(FOLDER)`` loads back bit for bit. ``--push-to`` then uploads FOLDER to that Hugging
Face repo (created if needed; log in first with ``hf auth login``), and the card loads it by that id.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaslot.cli._errors import user_errors

PROGRAM = "python -m cli.share"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Save a trained run as a self-contained folder (and upload it to the Hugging Face hub).",
        allow_abbrev=False,
    )
    parser.add_argument("run", help="run folder, checkpoint file or pretrained folder")
    parser.add_argument("folder", type=Path, help="folder to write (new, or written by an earlier share)")
    parser.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="which checkpoint of a run folder (default: last)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace the model already in FOLDER (another model, or a hand-edited model card)",
    )
    parser.add_argument("--push-to", metavar="OWNER/NAME", default=None, help="upload to this hub repo")
    parser.add_argument("--private", action="store_true", help="create the hub repo as private")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``metaslot-share``)."""
    options = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    with user_errors("share"):
        from metaslot.pretrained.sharing import push_to_hub, save_pretrained

        folder = save_pretrained(
            options.run,
            options.folder,
            checkpoint=options.checkpoint,
            name_for_loading=options.push_to,
            replace=options.replace,
        )
        print(f"saved: {folder} (model.safetensors, config.json, README.md)")
        if options.push_to is not None:
            url = push_to_hub(folder, options.push_to, private=options.private or None)
            print(f"pushed: {url}")


if __name__ == "__main__":
    main()
