"""The restricted unpickler: data from both numpy generations loads, anything executable is refused."""

from __future__ import annotations

import io
import os
import pickle

import numpy
import pytest

from metaslot.data.lmdb_io import (
    MissingDatasetError,
    RecordFile,
    UnsafeRecordError,
    pack_record,
    safe_loads,
    unpack_record,
    write_records,
)

RECORD = {
    "image": b"\x89PNG...",
    "segment": numpy.arange(12, dtype=numpy.uint8),
    "bbox": numpy.linspace(0, 1, 8, dtype=numpy.float32).reshape(2, 4),
    "clazz": numpy.array([3, 200], dtype=numpy.uint8),
    "isthing": numpy.array([True, False]),
    "scale": numpy.float32(2.5),
    "count": numpy.int64(7),
    "flag": numpy.bool_(True),
    "video": io.BytesIO(b"avi bytes"),
    "nested": {"data": [io.BytesIO(b"a"), io.BytesIO(b"b")], "min": 0.5, "max": (1, 2)},
}


def _assert_same(loaded: dict, expected: dict) -> None:
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        if isinstance(value, numpy.ndarray | numpy.generic):
            assert numpy.asarray(loaded[key]).dtype == numpy.asarray(value).dtype
            numpy.testing.assert_array_equal(loaded[key], value)
        elif isinstance(value, io.BytesIO):
            assert loaded[key].getvalue() == value.getvalue()
        elif isinstance(value, dict):
            _assert_same(loaded[key], value)
        elif isinstance(value, list):
            assert [item.getvalue() for item in loaded[key]] == [item.getvalue() for item in value]
        else:
            assert loaded[key] == value


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("numpy1", [False, True])
def test_published_records_load(protocol: int, numpy1: bool, numpy1_pickle) -> None:
    data = pickle.dumps(RECORD, protocol=protocol)
    if numpy1:
        data = numpy1_pickle(data)
        assert b"numpy.core" in data
    _assert_same(safe_loads(data, where="test"), RECORD)


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_record_is_refused_and_nothing_runs(tmp_path, published_writer) -> None:
    marker = tmp_path / "pwned"
    path = published_writer(tmp_path / "evil.lmdb", [{"image": b"x", "segment": _Exploit(str(marker))}])
    records = RecordFile(path, "voc")
    with pytest.raises(UnsafeRecordError, match=r"evil\.lmdb.*000000|system"):
        records.record(0)
    with pytest.raises(UnsafeRecordError) as error:
        records.record(0)
    assert "evil.lmdb" in str(error.value) and "000000" in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(_Exploit("/nonexistent/x")),
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        b"cnumpy\nload\n(S'x'\ntR.",
        b"ccopyreg\n_reconstructor\n(cbuiltins\nobject\nNtR.",
        b"c_codecs\nencode\n(S'x'\nS'hex'\ntR.",  # only text codecs are allowed
    ],
)
def test_dangerous_globals_are_refused(payload: bytes) -> None:
    with pytest.raises(pickle.UnpicklingError):
        safe_loads(payload, where="file.lmdb key '000001'")


def test_malicious_keys_are_refused(tmp_path, published_writer) -> None:
    marker = tmp_path / "pwned"
    path = published_writer(tmp_path / "evil.lmdb", [])
    import lmdb

    environment = lmdb.open(str(path), subdir=False, map_size=1 << 30)
    with environment.begin(write=True) as transaction:
        transaction.put(b"__keys__", pickle.dumps(_Exploit(str(marker))))
    environment.close()
    with pytest.raises(UnsafeRecordError, match="__keys__"):
        RecordFile(path, "voc")
    assert not marker.exists()


def test_msgpack_records_round_trip(tmp_path) -> None:
    record = {key: value for key, value in RECORD.items() if key not in ("video", "nested")}
    loaded = unpack_record(pack_record(record))
    expected = dict(record, scale=2.5, count=7, flag=True)
    _assert_same(loaded, {k: v for k, v in expected.items()})
    path = tmp_path / "ours.lmdb"
    assert write_records(path, [record, record]) == 2
    files = RecordFile(path, "voc")
    assert files.pickle_free and len(files) == 2
    numpy.testing.assert_array_equal(files.record(1)["bbox"], RECORD["bbox"])
    assert not (tmp_path / "ours.lmdb.partial").exists()


def test_msgpack_refuses_object_arrays() -> None:
    with pytest.raises(TypeError, match="dtype"):
        pack_record({"bad": numpy.array([object()], dtype=object)})


def test_missing_file_names_the_file_and_the_fix(tmp_path) -> None:
    with pytest.raises(MissingDatasetError) as error:
        RecordFile(tmp_path / "voc" / "train.lmdb", "voc")
    message = str(error.value)
    assert "train.lmdb" in message and str(tmp_path) in message
    assert "cli.convert voc" in message and "VQ-VFM-OCL" in message
