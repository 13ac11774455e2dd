"""The commands around a trained model: visualize --image, eval anywhere (no weights file, user's data), share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import PIL.Image
import pytest
import torch

import metaslot
from metaslot.cli import eval as eval_cli
from metaslot.cli import share as share_cli
from metaslot.cli import visualize as visualize_cli
from metaslot.data.decoding import encode_image, encode_index_map_png
from metaslot.data.lmdb_io import write_records
from tests.support.tiny_runs import WeightsRun


def write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    pixels = numpy.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=numpy.uint8)
    PIL.Image.fromarray(pixels).save(path)
    return path


def one_error_line(capsys: pytest.CaptureFixture, stopped: pytest.ExceptionInfo, program: str) -> str:
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{program}: error: "), lines
    return lines[0]


def test_visualize_image_files_of_any_size(
    autoencoder_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first = write_image(tmp_path / "a.png", 45, 37)
    second = write_image(tmp_path / "b.jpg", 30, 64, seed=1)
    output = tmp_path / "pictures"
    visualize_cli.main([str(autoencoder_run), "--image", str(first), str(second), "--output", str(output)])
    printed = capsys.readouterr().out
    assert sorted(path.name for path in output.iterdir()) == [
        "labels-0-a.png",
        "labels-1-b.png",
        "segmentation.png",
        "slots.json",
    ]
    with PIL.Image.open(output / "labels-1-b.png") as labels:
        assert labels.size == (64, 30)  # the file's own size
    summary = json.loads((output / "slots.json").read_text())
    assert [item["image"] for item in summary] == [str(first), str(second)]
    # visualize reads the best checkpoint, like `cli.eval`
    pipeline = metaslot.load(autoencoder_run, checkpoint="best")
    for item, path in zip(summary, (first, second), strict=True):
        keep = pipeline.segment(path).keep[0]
        assert item["kept"] == torch.nonzero(keep).flatten().tolist() and item["num_slots"] == 3
        assert f"{path}: {len(item['kept'])} of 3 slots kept" in printed
    assert summary[1]["window"] == {"top": 0, "left": 17, "side": 30}


def test_visualize_default_folder_and_the_dinosaur_without_its_weights(
    dinosaur_run: WeightsRun, tmp_path: Path
) -> None:
    image = write_image(tmp_path / "photo.png", 40, 50)
    visualize_cli.main([str(dinosaur_run.run_dir), "--image", str(image)])
    # a run folder gives its last checkpoint
    assert (dinosaur_run.run_dir / "pictures-step-0000003-images" / "segmentation.png").stat().st_size > 0


def test_visualize_bad_files_are_one_line_and_write_nothing(
    autoencoder_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    good = write_image(tmp_path / "good.png", 20, 20)
    (tmp_path / "notes.png").write_text("not an image")
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as stopped:
        visualize_cli.main(
            [str(autoencoder_run), "--image", str(good), str(tmp_path / "notes.png"), "--output", str(output)]
        )
    assert "notes.png' is not an image PIL can read" in one_error_line(capsys, stopped, "visualize")
    assert not output.exists()
    with pytest.raises(SystemExit) as stopped:
        visualize_cli.main([str(tmp_path / "no-run"), "--image", str(good)])
    assert "no-run is neither a run folder nor a checkpoint" in one_error_line(capsys, stopped, "visualize")
    with pytest.raises(SystemExit) as stopped:
        visualize_cli.main([str(autoencoder_run), "--images", "2", "--image", str(good)])
    assert "give one" in one_error_line(capsys, stopped, "visualize")


def test_eval_needs_no_backbone_weights_file(dinosaur_run: WeightsRun, tmp_path: Path) -> None:
    assert not dinosaur_run.weights.exists()
    output = tmp_path / "eval"
    eval_cli.main([str(dinosaur_run.run_dir), "--evaluation.max-batches", "1", "--output", str(output)])
    assert json.loads((output / "evaluation.json").read_text())["images"] == 2


def write_voc_like(root: Path, count: int, size: tuple[int, int]) -> None:
    """``root/voc/val.lmdb`` in our converter's format: random images with two rectangles each."""
    generator = numpy.random.default_rng(0)
    records = []
    for index in range(count):
        image = generator.integers(0, 256, (*size, 3), dtype=numpy.uint8)
        segment = numpy.zeros(size, dtype=numpy.uint8)
        segment[2:10, 3:12] = 1
        segment[12:20, 5:9] = 2
        records.append(
            {"image": encode_image(image), "segment": encode_index_map_png(segment), "name": f"{index}"}
        )
    write_records(root / "voc" / "val.lmdb", records)


def test_eval_on_the_users_data_root_with_batch_size_and_workers(
    autoencoder_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_voc_like(tmp_path / "datasets", count=3, size=(24, 30))
    output = tmp_path / "voc-eval"
    arguments = ["--data", "voc", "--data.root", str(tmp_path / "datasets"), "--data.resolution", "32"]
    arguments += ["--evaluation.batch-size", "1", "--evaluation.max-batches", "2", "--num-workers", "0"]
    eval_cli.main([str(autoencoder_run), *arguments, "--evaluation.pictures", "0", "--output", str(output)])
    assert "data: voc at 32 px, the run's training resolution" in capsys.readouterr().out
    assert json.loads((output / "evaluation.json").read_text())["images"] == 2  # 2 batches of 1


def test_share_writes_a_folder_that_loads_back(
    autoencoder_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pushed: list[tuple[Path, str, object]] = []

    def push_to_hub(folder: Path, repo_id: str, private: bool | None = None) -> str:
        pushed.append((folder, repo_id, private))
        return "https://hub/commit"

    monkeypatch.setattr("metaslot.pretrained.sharing.push_to_hub", push_to_hub)  # no network
    share_cli.main([str(autoencoder_run), str(tmp_path / "shared"), "--push-to", "alice/shapes", "--private"])
    assert capsys.readouterr().out.splitlines() == [
        f"saved: {tmp_path / 'shared'} (model.safetensors, config.json, README.md)",
        "pushed: https://hub/commit",
    ]
    assert pushed == [(tmp_path / "shared", "alice/shapes", True)]
    assert 'metaslot.load("alice/shapes")' in (tmp_path / "shared" / "README.md").read_text()
    loaded, original = metaslot.load(tmp_path / "shared"), metaslot.load(autoencoder_run)
    assert all(torch.equal(loaded.state_dict()[name], value) for name, value in original.state_dict().items())
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as stopped:
        share_cli.main([str(autoencoder_run), str(tmp_path / "mine")])
    assert "already holds config.json not written by save_pretrained" in one_error_line(
        capsys, stopped, "share"
    )
    assert (tmp_path / "mine" / "config.json").read_text() == "{}"
