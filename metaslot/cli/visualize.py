"""`python -m cli.visualize RUN_OR_CHECKPOINT [--checkpoint last|best] [--images N | --image FILE ...]
[flags]`: pictures of a run folder's last checkpoint (``--checkpoint best``: its best), of the file given,
or of a ``save_pretrained`` folder (pictures go into that folder).

With ``--images N`` (default 8): the segmentation grid (image | ground truth | prediction | per-slot
masks, pruned slots marked), the slot-count histogram and, for MetaSlot, the prototype gallery of the
first N validation images, into ``<run>/pictures-<checkpoint>-<split>/``; same arguments as `cli.eval`.

With ``--image a.jpg b.png``: the same grid for those files (what the model saw, its prediction and
per-slot masks), one full-size label picture per file and ``slots.json`` with each file's kept-slot
count, printed too, into ``<run>/pictures-<checkpoint>-images/`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaslot.cli._errors import user_errors
from metaslot.cli.eval import chosen_checkpoint, refuse_best, run
from metaslot.errors import ConfigError

PROGRAM = "python -m cli.visualize"


def _wants_files(arguments: list[str]) -> bool:
    return any(word == "--image" or word.startswith("--image=") for word in arguments)


def run_on_files(argv: list[str], program: str) -> None:
    """Pictures of the files given with ``--image`` (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog=program,
        allow_abbrev=False,
        description="Segment image files with a trained run and draw the pictures.",
    )
    parser.add_argument("source", help="run folder (its last checkpoint) or checkpoint file")
    parser.add_argument(
        "--checkpoint",
        choices=("last", "best"),
        default="last",
        help="which checkpoint of a run folder (default: last)",
    )
    parser.add_argument("--image", nargs="+", required=True, type=Path, help="image files (PNG, JPEG, ...)")
    parser.add_argument("--output", type=Path, default=None, help="folder for the pictures")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    options = parser.parse_args(argv)

    from metaslot.pretrained.loading import is_pretrained_folder, load
    from metaslot.pretrained.pictures import draw_image_files
    from metaslot.runtime.device import resolve_device

    source = Path(options.source)
    if is_pretrained_folder(source):  # a save_pretrained folder: one model, pictures beside it
        refuse_best(source, options.checkpoint)
        pipeline = load(source, device=resolve_device(options.device))
        output = options.output or source / "pictures-images"
    else:
        run_dir, sidecar = chosen_checkpoint(source, options.checkpoint)
        pipeline = load(sidecar, device=resolve_device(options.device))
        name = sidecar.name.removesuffix(".json")
        output = options.output or run_dir / f"pictures-{name}-images"
    pictures = draw_image_files(pipeline, list(options.image), output)
    for item in pictures.images:
        slots = ", ".join(str(slot) for slot in item.kept)
        print(f"{item.image}: {len(item.kept)} of {item.num_slots} slots kept (slots {slots})")
    for path in pictures.written:
        print(f"picture: {path}" if path.suffix == ".png" else f"slots: {path}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``metaslot-visualize``)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    with user_errors("visualize"):
        if {"-h", "--help"} & set(arguments) and all(word.startswith("-") for word in arguments):
            print(
                f"usage: {PROGRAM} RUN_OR_CHECKPOINT [--checkpoint {{last,best}}] [--images N | --image FILE [FILE ...]] "
                "[--help for the options]"
            )
            return
        if _wants_files(arguments):
            if "--images" in arguments:
                raise ConfigError("--images N draws validation images, --image FILE ... your files: give one")
            run_on_files(arguments, PROGRAM)
        else:
            run(arguments, PROGRAM, pictures_only=True)


if __name__ == "__main__":
    main()
