"""Full-size round trip through the reference's checkpoint layout: what docs/pretrained.md reports.

For each paper preset: random weights → the state dict the reference code would have saved
(``to_reference_layout``) → ``torch.save`` → ``metaslot.load(FILE, model=, data=, aggregator=)`` → the
outputs of both on two 256×256 images; prints the entry count, file size and largest difference.

    OMP_NUM_THREADS=1 python examples/reference_fullsize.py                  # all cases (~3 min on a CPU)
    python examples/reference_fullsize.py vqvae:coco:c4 dinosaur:voc:metaslot
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

import metaslot
from metaslot.pretrained import reference_layout as layout
from metaslot.pretrained.building import build_for_weights
from metaslot.pretrained.reference import reference_config

CASES = (
    *(
        f"{model}:coco:{aggregator}"
        for model in ("dinosaur", "slate", "slotdiffusion")
        for aggregator in ("metaslot", "slot-attention")
    ),
    "dinosaur:voc:metaslot",
    "dinosaur:clevrtex:metaslot",
    "vqvae:coco:c256",
    "vqvae:coco:c4",
)
"""``model:data:aggregator`` (for the VQ-VAE, ``vqvae:data:variant``)."""


def round_trip(case: str, folder: Path) -> dict[str, float]:
    """The largest difference per output of one case (``entries`` and ``bytes`` of the file too)."""
    model, data, choice = case.split(":")
    aggregator = "metaslot" if model == "vqvae" else choice
    config = reference_config(model, data, aggregator, choice if model == "vqvae" else None, renders=False)
    torch.manual_seed(0)
    ours = build_for_weights(config.model).eval()
    with torch.no_grad():  # every weight non-trivial, so a swapped or skipped tensor shows
        for tensor in ours.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.02 * torch.randn_like(tensor))
    state = layout.to_reference_layout(ours, config.model)
    path = folder / f"{model}-{data}-{choice}.pth"
    torch.save(state, path)
    loaded = metaslot.load(path, model=model, data=data, aggregator=aggregator)
    image = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        if model == "vqvae":
            first, second = ours(image), loaded(image)
        else:
            first = ours(image, generator=torch.Generator().manual_seed(1))
            second = loaded(image, generator=torch.Generator().manual_seed(1))
    differences = {
        field: (getattr(first, field).double() - getattr(second, field).double()).abs().max().item()
        for field in ("loss", "slots", "keep", "masks", "reconstruction")
        if getattr(first, field) is not None
    }
    result = {"entries": float(len(state)), "bytes": float(path.stat().st_size), **differences}
    path.unlink()
    return result


def main(cases: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="metaslot-reference-") as temporary:
        for case in cases or CASES:
            start = time.time()
            result = round_trip(case, Path(temporary))
            largest = max(value for name, value in result.items() if name not in ("entries", "bytes"))
            print(
                f"{case}: {int(result['entries'])} entries, {int(result['bytes'])} bytes, largest output "
                f"difference {largest} ({time.time() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
