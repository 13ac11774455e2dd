"""Damaged LMDB files give one error naming the file (and the key), never SIGBUS or a bare traceback.

Issue 14, item 10. Real small LMDB files are written here and then truncated or emptied.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import lmdb
import numpy
import pytest

from metaslot.cli._errors import user_errors
from metaslot.data.lmdb_io import (
    FORMAT_KEY,
    KEYS_KEY,
    CorruptDataError,
    RecordFile,
    pack_record,
    write_records,
)


def _records(count: int) -> list[dict]:
    generator = numpy.random.default_rng(0)
    return [
        {
            "image": generator.integers(0, 256, 3000, dtype=numpy.uint8).tobytes(),
            "segment": generator.integers(0, 5, (20, 20), dtype=numpy.uint8),
        }
        for _ in range(count)
    ]


def _write_raw(path: Path, values: dict[bytes, bytes]) -> Path:
    environment = lmdb.open(str(path), subdir=False, map_size=1 << 26)
    with environment.begin(write=True) as transaction:
        for key, value in values.items():
            transaction.put(key, value)
    environment.close()
    return path


READ_LAST_RECORD = textwrap.dedent(
    """
    import sys
    from metaslot.data.lmdb_io import RecordFile

    try:
        records = RecordFile(sys.argv[1], "voc")
        records.record(len(records) - 1)
    except Exception as error:
        print(f"{type(error).__name__}: {error}")
        sys.exit(3)
    print("read without error")
    """
)


@pytest.mark.parametrize("keep", ["a third", "all but one byte"])
def test_truncated_file_is_refused_naming_it_instead_of_sigbus(tmp_path: Path, keep: str) -> None:
    path = tmp_path / "train.lmdb"
    write_records(path, _records(40))
    size = path.stat().st_size
    assert size > 20 * 4096  # many pages, so the B-tree's pages lie past the cut
    os.truncate(path, size // 3 if keep == "a third" else size - 1)
    # In a subprocess: reading past the end of a memory-mapped file kills the process with SIGBUS.
    environment = {**os.environ, "METASLOT_TYPECHECK": "0"}
    finished = subprocess.run(
        [sys.executable, "-c", READ_LAST_RECORD, str(path)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 3, (finished.returncode, finished.stdout, finished.stderr[-2000:])
    assert finished.stdout.startswith("CorruptDataError: ")
    assert str(path) in finished.stdout and "truncated" in finished.stdout
    assert f"{size} bytes" in finished.stdout  # what the header says the file should hold


@pytest.mark.parametrize(
    ("content", "says"), [(b"", "is empty"), (b"not an lmdb " * 400, "not an LMDB file")]
)
def test_empty_or_foreign_file_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture, content: bytes, says: str
) -> None:
    path = tmp_path / "val.lmdb"
    path.write_bytes(content)
    with pytest.raises(CorruptDataError, match=says) as error:
        RecordFile(path, "voc")
    assert str(path) in str(error.value) and "cli.convert voc" in str(error.value)
    with pytest.raises(SystemExit), user_errors("eval"):
        RecordFile(path, "voc")
    printed = capsys.readouterr().err.strip()
    assert printed.startswith("eval: error: ") and str(path) in printed and "\n" not in printed


def _truncated_pickle_file(path: Path) -> Path:
    keys = [b"000000", b"000001"]
    records = [pickle.dumps(record, protocol=4) for record in _records(2)]
    return _write_raw(
        path,
        {
            KEYS_KEY: pickle.dumps(keys, protocol=4),
            keys[0]: records[0],
            keys[1]: records[1][: len(records[1]) // 2],
        },
    )


def _truncated_msgpack_file(path: Path) -> Path:
    keys = ["000000", "000001"]
    records = [pack_record(record) for record in _records(2)]
    return _write_raw(
        path,
        {
            FORMAT_KEY: pack_record({"name": "metaslot-lmdb", "version": 1}),
            KEYS_KEY: pack_record(keys),
            b"000000": records[0],
            b"000001": records[1][: len(records[1]) // 2],
        },
    )


@pytest.mark.parametrize("writer", [_truncated_pickle_file, _truncated_msgpack_file])
def test_truncated_record_names_the_file_and_key(tmp_path: Path, writer) -> None:
    records = RecordFile(writer(tmp_path / "coco.lmdb"), "coco")
    assert sorted(records.record(0)) == ["image", "segment"]
    with pytest.raises(CorruptDataError) as error:
        records.record(1)
    message = str(error.value)
    assert str(tmp_path / "coco.lmdb") in message and "'000001'" in message
    assert "truncated or damaged" in message and "cli.convert coco" in message


def test_truncated_keys_list_names_the_file(tmp_path: Path) -> None:
    keys = pickle.dumps([b"%06d" % index for index in range(50)], protocol=4)
    path = _write_raw(tmp_path / "voc.lmdb", {KEYS_KEY: keys[:-7]})
    with pytest.raises(CorruptDataError, match=r"voc\.lmdb key '__keys__'"):
        RecordFile(path, "voc")
