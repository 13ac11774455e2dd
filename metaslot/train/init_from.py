"""``--init-from RUN_OR_CHECKPOINT``: start a run from another run's weights (AdaSlot's second stage).

The released AdaSlot trains fixed-K DINOSAUR first and loads its ``state_dict`` with ``strict=False``
into the AdaSlot model, whose score network starts fresh (``spec/adaslot.md`` §11). Here every weight
whose name and shape match is loaded; every other one of the new model stays as built and is listed,
and so are the source's weights the new model has no place for. With the shared initialiser the slot
count may differ from the source run's: no weight depends on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs
import torch

from metaslot.errors import CheckpointError
from metaslot.train import checkpoint as checkpoints


@attrs.frozen
class KeyReport:
    """Which of the model's weights came from the source (``loaded``), which kept their fresh values
    (``fresh``: absent there, or ``mismatched`` in shape) and which source weights went ``unused``."""

    source: Path
    loaded: tuple[str, ...]
    fresh: tuple[str, ...]
    mismatched: tuple[str, ...]
    unused: tuple[str, ...]

    def lines(self) -> list[str]:
        """The report as log lines: one summary, then every key by kind."""
        lines = [
            f"--init-from {self.source}: {len(self.loaded)} weights loaded, {len(self.fresh)} fresh "
            f"({len(self.mismatched)} of them of another shape there), {len(self.unused)} unused"
        ]
        lines += [f"  loaded {key}" for key in self.loaded]
        lines += [
            f"  fresh  {key}{' (other shape there)' if key in self.mismatched else ''}" for key in self.fresh
        ]
        lines += [f"  unused {key}" for key in self.unused]
        return lines

    def as_json(self) -> dict[str, object]:
        return {
            "source": str(self.source),
            "loaded": list(self.loaded),
            "fresh": list(self.fresh),
            "mismatched": list(self.mismatched),
            "unused": list(self.unused),
        }


def source_weights(path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """(checkpoint sidecar, model weights) of a run folder's last checkpoint or of a checkpoint file,
    verified like any checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"--init-from {path} does not exist; pass a run folder or a checkpoint file")
    _, sidecar = checkpoints.resolve_checkpoint(path)
    return sidecar, checkpoints.read_model_weights(sidecar).tensors


def match_weights(
    own: dict[str, torch.Tensor], source: dict[str, torch.Tensor], origin: Path
) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """The source weights to load (same name and shape) and the report; refuses when nothing matches."""
    shared = sorted(set(own) & set(source))
    mismatched = tuple(key for key in shared if own[key].shape != source[key].shape)
    loaded = tuple(key for key in shared if key not in mismatched)
    if not loaded:
        raise CheckpointError(
            f"--init-from {origin}: none of its {len(source)} weights fits this model; was it trained "
            "with another --model or other widths?"
        )
    fresh = tuple(sorted(set(own) - set(loaded)))
    report = KeyReport(
        source=origin,
        loaded=loaded,
        fresh=fresh,
        mismatched=mismatched,
        unused=tuple(sorted(set(source) - set(own))),
    )
    return {key: source[key] for key in loaded}, report


def initialise_from(model: torch.nn.Module, path: Path) -> KeyReport:
    """Load every weight of ``path`` (run folder or checkpoint) that fits ``model`` by name and shape;
    the others stay as built. Returns the key report."""
    sidecar, source = source_weights(path)
    selected, report = match_weights(model.state_dict(), source, sidecar)
    model.load_state_dict(selected, strict=False)
    return report


def print_report(report: KeyReport) -> None:
    """The key report on stderr, where the run's notes go (the run folder keeps it as init_from.json)."""
    for line in report.lines():
        print(line, file=sys.stderr)
