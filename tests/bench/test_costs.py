"""`cli.bench costs`: FLOPs by part that add up, the projection's arithmetic, and the stage-1 draw swap
of `metaslot.bench.noise_draws`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metaslot.bench import costs, noise_draws
from metaslot.cli.bench import main
from metaslot.models.decoders import MLPDecoderSpec
from metaslot.ops import slot_attention


def test_costs_rows_at_the_smoke_size(tmp_path: Path, capsys) -> None:
    output = tmp_path / "costs.json"
    main(["costs", "--smoke", "--utilisation", "0.5", "--output", str(output)])
    rows = json.loads(output.read_text())["costs"]
    assert [row["preset"] for row in rows] == [
        "dinosaur_voc",
        "slate_voc",
        "slotdiffusion_voc",
        "vqvae_voc c256",
        "vqvae_voc c4",
    ]
    for row in rows:
        flops = row["flops"]
        assert flops["total"] > 0 and flops["backbone"] > 0 and flops["decoder"] > 0
        parts = flops["backbone"] + flops["aggregator"] + flops["decoder"] + flops["rest"]
        assert parts == pytest.approx(flops["total"])
        assert flops["rest"] >= -1e-6 * flops["total"]  # the parts never exceed the step
        run_flops = flops["total"] * row["preset_batch_size"] / row["batch_size"] * row["preset_steps"]
        expected = run_flops / (0.5 * costs.GPU_BF16_PEAK) / 3600
        assert row["projected_gpu_hours"] == pytest.approx(expected)
        assert row["seconds_per_image"] > 0 and row["peak_step_memory_mib"] > 0
    assert (rows[0]["flops"]["aggregator"] > 0) and rows[3]["flops"]["aggregator"] == 0
    assert "PROJECTION" in capsys.readouterr().out


def test_flops_of_a_part_count_its_forward_and_backward() -> None:
    """An MLP decoder alone: its two linear layers and the alpha-weighted sum, each once forward and
    twice backward (input and weight gradients), 2 FLOPs per multiply-add."""
    decoder = MLPDecoderSpec(hidden_channels=(8,), pack_kept_slots=False).build(4, 3, 5)

    class OnlyDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder

        def forward(self, slots: torch.Tensor):
            class Output:
                loss = self.decoder(slots).reconstruction.square().mean()

            return Output()

    slots = torch.randn(2, 3, 4, requires_grad=True)
    flops = costs.step_flops(OnlyDecoder(), slots, {"decoder": ("decoder",)})
    rows = 2 * 3 * 5
    linear = rows * (4 * 8 + 8 * 4)  # slot width 4 → 8 hidden → 3 features + 1 alpha logit
    weighted_sum = 2 * 5 * 3 * 3  # einsum bkn,bknc->bnc
    assert flops["decoder"] == 3 * 2 * (linear + weighted_sum)
    assert flops["total"] == pytest.approx(flops["decoder"] + flops["rest"])


def test_full_draws_swap_the_stage_one_read_out_and_restore_it() -> None:
    reduced = slot_attention.noisy_feature_space_slot_attention
    with noise_draws.full_stage_one_draws():
        assert slot_attention.noisy_feature_space_slot_attention is noise_draws._full_draw
    assert slot_attention.noisy_feature_space_slot_attention is reduced
