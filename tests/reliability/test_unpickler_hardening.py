"""A crafted published record cannot change the allowed functions through pickle's BUILD opcode.

Issue 14, hardening: BUILD on the allowed ``_codecs.encode`` stand-in changed its ``__defaults__`` for
the whole process. BUILD is now honoured only on what numpy's reconstruct paths produce.
"""

from __future__ import annotations

import io
import pickle
import struct

import numpy
import pytest

from metaslot.data import lmdb_io
from metaslot.data.lmdb_io import UnsafeRecordError, safe_loads


def _unicode(text: str) -> bytes:
    encoded = text.encode()
    return b"X" + struct.pack("<I", len(encoded)) + encoded


def _build_on_encode(state: bytes) -> bytes:
    """Protocol-2 pickle: push ``_codecs.encode``, BUILD it with ``state``, return it."""
    return b"\x80\x02" + b"c_codecs\nencode\n" + state + b"b."


# (None, {"__defaults__": ("ascii",)}): the slot-state form, which setattr()s each entry.
SLOT_STATE = b"N}" + _unicode("__defaults__") + _unicode("ascii") + b"\x85s\x86"
# {"__defaults__": ...}: the dict form, which writes into the function's __dict__.
DICT_STATE = b"}" + _unicode("__defaults__") + _unicode("ascii") + b"\x85s"


@pytest.mark.parametrize("state", [SLOT_STATE, DICT_STATE], ids=["slot-state", "dict-state"])
def test_build_on_an_allowed_function_is_refused_and_changes_nothing(state: bytes) -> None:
    function = lmdb_io._latin1_encode
    original_defaults, original_dict = function.__defaults__, dict(function.__dict__)
    try:
        with pytest.raises(
            UnsafeRecordError, match=r"BUILD on the function _codecs\.encode in evil\.lmdb key"
        ):
            safe_loads(_build_on_encode(state), where="evil.lmdb key '000000'")
        assert function.__defaults__ == original_defaults
        assert function.__dict__ == original_dict
        assert function("é") == "é".encode()  # still utf-8 by default
    finally:  # the old code changed them for the rest of the test session
        function.__defaults__ = original_defaults
        function.__dict__.clear()
        function.__dict__.update(original_dict)


@pytest.mark.parametrize("protocol", [2, 5])
def test_build_on_numpy_reconstructed_objects_still_works(protocol: int) -> None:
    record = {
        "array": numpy.arange(6, dtype=numpy.float32).reshape(2, 3),
        "scalar": numpy.int64(7),
        "dtype": numpy.dtype("<u2"),
        "video": io.BytesIO(b"clip"),
    }
    assert b"b" in pickle.dumps(record, protocol=protocol)  # BUILD opcodes are present
    loaded = safe_loads(pickle.dumps(record, protocol=protocol), where="test")
    numpy.testing.assert_array_equal(loaded["array"], record["array"])
    assert loaded["scalar"] == 7 and loaded["dtype"] == numpy.dtype("<u2")
    assert loaded["video"].getvalue() == b"clip"
