"""`python -m cli.visualize RUN_OR_CHECKPOINT [--images N] [flags]`: pictures of a few validation images.

Writes the segmentation grid (image | ground truth | prediction | per-slot masks, pruned slots
marked), the slot-count histogram and, for MetaSlot, the prototype gallery into
``<run>/pictures-<checkpoint>-<split>/``. Same arguments as `cli.eval`, on a small number of batches.
"""

from __future__ import annotations

import sys

from metaslot.cli._errors import user_errors
from metaslot.cli.eval import run


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``metaslot-visualize``)."""
    with user_errors("visualize"):
        run(sys.argv[1:] if argv is None else list(argv), "python -m cli.visualize", pictures_only=True)


if __name__ == "__main__":
    main()
