"""What a reference ``.pth`` meets on its way in: only tensors are unpickled, damaged or foreign files and
wrong presets are one-line errors, the CLI says them in one line."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import metaslot
from metaslot.cli import convert as convert_cli
from metaslot.errors import CheckpointError, CheckpointMismatchError, ConfigError
from metaslot.pretrained import reference_layout as layout
from metaslot.pretrained.reference import as_reference_ran, read_reference_file
from tests.pretrained.test_reference_roundtrip import _ours, tiny_spec


class Payload:
    """Runs ``open(marker, "w")`` when unpickled by a loader that trusts the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_code_running_pickle_posing_as_pth_is_refused_and_nothing_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "ran"
    file = tmp_path / "model.pth"
    state = {"m.decode.bos": torch.zeros(1), "evil": Payload(marker)}
    if writer == "torch.save":
        torch.save(state, file)
    else:
        file.write_bytes(pickle.dumps(state))
    with pytest.raises(CheckpointError) as caught:
        metaslot.load(file, model="dinosaur", data="coco")
    assert not marker.exists()
    assert "\n" not in str(caught.value)
    assert "refused" in str(caught.value) or "not a readable PyTorch checkpoint" in str(caught.value)


def _tiny_reference_file(tmp_path: Path) -> Path:
    spec = as_reference_ran(tiny_spec("dinosaur"))
    path = tmp_path / "tiny.pth"
    torch.save(layout.to_reference_layout(_ours(spec), spec), path)
    return path


def test_a_truncated_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = _tiny_reference_file(tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError) as caught:
        metaslot.load(path, model="dinosaur", data="coco")
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "truncated" in message


def test_entries_that_are_not_tensors_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "training-state.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "step": 3}, path)
    with pytest.raises(CheckpointError, match="not named tensors"):
        read_reference_file(path)


def test_a_wrong_preset_is_one_line_naming_keys_and_what_the_file_is(tmp_path: Path) -> None:
    path = _tiny_reference_file(tmp_path)
    with pytest.raises(CheckpointMismatchError) as caught:
        metaslot.load(path, model="vqvae", data="coco")
    message = str(caught.value)
    assert "\n" not in message
    assert "unexpected" in message and "m.encode_backbone.1." in message
    assert "looks trained as --model dinosaur" in message


def test_a_reference_file_without_its_preset_says_what_to_pass(tmp_path: Path) -> None:
    path = _tiny_reference_file(tmp_path)
    with pytest.raises(ConfigError, match='model="dinosaur", data="coco"'):
        metaslot.load(path)


def test_the_cli_prints_a_damaged_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.pth"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SystemExit):
        convert_cli.main(
            ["checkpoint", str(path), "--model", "dinosaur", "--data", "coco", "--out", str(tmp_path / "o")]
        )
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("convert: error:") and "cut.pth" in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_missing_file_says_where_the_published_files_are_listed(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no checkpoint file at .*cli.download --models"):
        metaslot.load(tmp_path / "metaslot-dinosaur-coco.pth", model="dinosaur", data="coco")
