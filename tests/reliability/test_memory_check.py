"""Sizes that can only run out of memory are refused up front with an estimate (issue 28, item 10).

``--data.resolution 4096``, batch 100 000 or 1e5 slots once made the run folder and died in the
allocator 10–42 s later. The check adds up a lower bound on a few activations from the specs alone
(`metaslot.train.memory_check`); the memory is fixed here (16 GiB, a small GPU's) so the result does
not depend on the machine running the tests.
"""

from __future__ import annotations

import attrs
import pytest

from metaslot.cli import train as train_cli
from metaslot.errors import ConfigError
from metaslot.train import memory_check
from metaslot.train.config import TrainConfig
from metaslot.train.memory_check import GIB, lower_bound, too_large
from metaslot.train.presets import FTDINOSAUR_PRESETS, PRESETS
from metaslot.train.requirements import check_requirements
from tests.support.cli_args import loop_args

SMALL_GPU = (16 * GIB, "a 16 GiB GPU's")


def shapes() -> TrainConfig:
    return PRESETS[("autoencoder", "shapes")]()


def oversized() -> dict[str, TrainConfig]:
    config = shapes()
    aggregator = attrs.evolve(config.model.aggregator, num_slots=100_000, buffer_capacity=6_400_000)
    return {
        "resolution-4096": attrs.evolve(config, data=attrs.evolve(config.data, resolution=4096)),
        "batch-100000": attrs.evolve(config, loop=attrs.evolve(config.loop, batch_size=100_000)),
        "slots-100000": attrs.evolve(config, model=attrs.evolve(config.model, aggregator=aggregator)),
    }


@pytest.mark.parametrize("name", ["resolution-4096", "batch-100000", "slots-100000"])
def test_sizes_that_cannot_fit_are_refused_with_the_estimate(name: str) -> None:
    config = oversized()[name]
    message = too_large(config, SMALL_GPU)
    assert message is not None and "\n" not in message
    needed = sum(size for _, size in lower_bound(config, 4)) / GIB
    assert needed > 16 and f"at least {needed:.1f} GiB" in message and "16.0 GiB" in message


def test_the_estimate_grows_with_each_size() -> None:
    base = sum(size for _, size in lower_bound(shapes(), 4))
    for config in oversized().values():
        assert sum(size for _, size in lower_bound(config, 4)) > 100 * base


def test_half_precision_halves_all_but_the_input_images() -> None:
    config = oversized()["slots-100000"]
    full, half = dict(lower_bound(config, 4)), dict(lower_bound(config, 2))
    assert half["input images"] == full["input images"]
    assert half["slot masks"] * 2 == full["slot masks"]


def test_every_preset_at_its_own_size_passes() -> None:
    configs = [factory() for factory in PRESETS.values()]
    configs += [factory() for factory in FTDINOSAUR_PRESETS.values()]
    for config in configs:
        assert too_large(config, SMALL_GPU) is None, config.name
        assert too_large(config) is None, config.name  # this machine's own memory


def test_the_command_line_refuses_before_any_folder_is_made(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(memory_check, "device_memory", lambda config: SMALL_GPU)
    runs = tmp_path / "runs"
    with pytest.raises(SystemExit):
        train_cli.main(
            ["--model", "autoencoder", "--data", "shapes", "--data.resolution", "4096", "--name", "big"]
            + loop_args(runs)
        )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "GiB for activations alone" in err and "nothing was written" in err
    assert not runs.exists()


def test_check_requirements_raises_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_check, "device_memory", lambda config: SMALL_GPU)
    with pytest.raises(ConfigError, match=r"needs at least \d+\.\d GiB"):
        check_requirements(oversized()["batch-100000"])


def test_a_video_clip_counts_each_of_its_frames() -> None:
    config = PRESETS[("autoencoder", "movi_d")]()
    one = attrs.evolve(config, data=attrs.evolve(config.data, train_frames=1))
    bounds = {
        frames: dict(lower_bound(attrs.evolve(config, data=attrs.evolve(config.data, train_frames=frames)), 4))
        for frames in (1, 6, None)
    }
    assert bounds[6]["input images"] == 6 * bounds[1]["input images"]
    assert bounds[None]["slot masks"] == 24 * bounds[1]["slot masks"]  # None: all 24 frames of a clip
    # A batch of clips whose images fit one at a time but not with every frame.
    clips = attrs.evolve(one, loop=attrs.evolve(one.loop, batch_size=64, accumulate=1))
    fits = sum(dict(lower_bound(clips, 4)).values())
    memory = (fits * 3, "a test GPU's")
    assert too_large(clips, memory) is None
    every_frame = attrs.evolve(clips, data=attrs.evolve(clips.data, train_frames=None))
    message = too_large(every_frame, memory)
    assert message is not None and f"micro-batch of {64 * 24} images" in message
