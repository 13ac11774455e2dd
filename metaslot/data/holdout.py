"""A held-out slice of the training split: validation images that are never trained on.

For VOC, COCO and ClevrTex the published "val" split is the paper's test split, so choosing a "best"
checkpoint on it would peek at the numbers being reported. `holdout_indices` sets aside ``count``
training samples instead, drawn from a permutation that depends only on the split's length (not on the
run's seed, so every run of a preset holds out the same images); `IndexedSubset` serves the rest for
training and the held-out ones for validation. The indices handed to the underlying dataset are its
own, so an augmentation drawn from ``sample_generator(seed, epoch, index)`` is the one the full split
would give that image, and a resumed run reads exactly what it would have.
"""

from __future__ import annotations

import numpy
import torch

from metaslot.data.sampling import ItemKey, item_epoch, item_index
from metaslot.errors import ConfigError

HOLDOUT_STREAM = 0x401D
"""Seeds the held-out choice together with the split length (fixed: independent of ``--loop.seed``)."""


def holdout_indices(length: int, count: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(kept, held_out): sorted sample indices of a split of ``length``, ``count`` of them held out."""
    if not 0 < count < length:
        raise ConfigError(
            f"--loop.val-holdout {count} must hold out at least one and fewer than all {length} training "
            f"samples; pick a value in [1, {length - 1}] or validate on the val split (--loop.val-split val)"
        )
    order = numpy.random.Generator(numpy.random.PCG64([HOLDOUT_STREAM, length])).permutation(length)
    return numpy.sort(order[count:]), numpy.sort(order[:count])


class IndexedSubset(torch.utils.data.Dataset):
    """The samples ``indices`` of ``dataset``, renumbered 0..len-1; accepts an index or an `ItemKey`
    (whose epoch is passed on with the original index, so augmentations match the full dataset's)."""

    def __init__(self, dataset: torch.utils.data.Dataset, indices: numpy.ndarray) -> None:
        self.dataset = dataset
        self.indices = [int(index) for index in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | ItemKey):
        position = item_index(key)
        if not 0 <= position < len(self.indices):
            raise IndexError(f"index {position} out of range for a subset of {len(self.indices)} samples")
        index = self.indices[position]
        return self.dataset[ItemKey(index, item_epoch(key)) if isinstance(key, ItemKey) else index]
