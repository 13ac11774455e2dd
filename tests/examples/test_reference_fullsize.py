"""examples/reference_fullsize.py on its smallest full-size case (the c4 VQ-VAE of the paper presets)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType


def test_full_size_c4_vqvae_round_trip_is_exact(reference_fullsize: ModuleType, tmp_path: Path) -> None:
    result = reference_fullsize.round_trip("vqvae:coco:c4", tmp_path)
    assert result["entries"] == 139  # the reference manifest's count (vqvae-coco-c4)
    assert result["loss"] == 0.0 and result["reconstruction"] == 0.0
    assert not any(tmp_path.iterdir())
