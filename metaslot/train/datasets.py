"""The datasets of a run: what it trains on and what it validates on (``--loop.val-split``).

With ``val_split='train-holdout'`` the training split loses ``val_holdout`` samples, the same ones for
every run (`metaslot.data.holdout`), which validation reads without augmentation; the sampler sees the
remaining samples only, so they are never trained on and a resumed run reads exactly the same order.
With ``val_split='val'`` the run trains on the whole training split and validates on the dataset's
``val`` split.
"""

from __future__ import annotations

import attrs
import torch

from metaslot.data.holdout import IndexedSubset, holdout_indices
from metaslot.errors import ConfigError
from metaslot.train.config import TrainConfig


@attrs.frozen
class RunDatasets:
    train: torch.utils.data.Dataset
    """What the sampler draws training batches from."""
    validation: torch.utils.data.Dataset
    """What validation (and the choice of the ``best`` checkpoint) reads."""
    validation_split: str
    """Its name: ``train-holdout`` or ``val``."""


def run_datasets(config: TrainConfig) -> RunDatasets:
    """The training and validation datasets of ``config`` (see the module docstring)."""
    train_set = config.data.build("train", True)
    if config.loop.val_split == "val":
        return RunDatasets(train_set, config.data.build("val", False), "val")
    unaugmented = config.data.build("train", False)
    if len(unaugmented) != len(train_set):
        raise ConfigError(
            f"the training split has {len(train_set)} samples for training but {len(unaugmented)} without "
            "augmentation, so no slice of it can be held out; use --loop.val-split val"
        )
    kept, held_out = holdout_indices(len(train_set), config.loop.val_holdout)
    return RunDatasets(IndexedSubset(train_set, kept), IndexedSubset(unaugmented, held_out), "train-holdout")
