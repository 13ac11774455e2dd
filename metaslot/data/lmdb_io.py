"""Safe LMDB I/O: the restricted unpickler for the published files, our pickle-free msgpack format,
lazy per-process environments and the atomic writer used by the converters.

The published VQ-VFM-OCL / MetaSlot files store ``pickle.dumps(dict)`` records (reference.md §3.1).
Plain ``pickle.loads`` on a downloaded file runs arbitrary code, so records are read with
``SafeUnpickler``, which resolves only the handful of globals that numpy arrays, numpy scalars and
``io.BytesIO`` need. Files written by our converter never contain pickles: records are msgpack maps
whose typed arrays are ``{"dtype", "shape", "data"}`` maps, and a ``__format__`` key marks them.
"""

from __future__ import annotations

import codecs
import io
import os
import pickle
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import numpy

from metaslot.errors import CorruptDataError, DataError, MissingFileError

KEYS_KEY = b"__keys__"
FORMAT_KEY = b"__format__"
FORMAT_NAME = "metaslot-lmdb"
FORMAT_VERSION = 1
RELEASE_PAGE = "https://github.com/Genera1Z/VQ-VFM-OCL (release page: converted LMDB files)"
# Sparse on Linux: the file only grows as pages are written (same as the reference's 1 TiB).
MAP_SIZE = 1 << 40
# Array dtypes a typed-array map may carry: plain numbers only, never object arrays.
ALLOWED_DTYPES = frozenset(
    [
        "bool",
        "uint8",
        "int8",
        "uint16",
        "int16",
        "uint32",
        "int32",
        "uint64",
        "int64",
        "float16",
        "float32",
        "float64",
    ]
)


class UnsafeRecordError(CorruptDataError, pickle.UnpicklingError):
    """A record asked for a global outside the allow-list (or is otherwise not a plain data record)."""


class MissingDatasetError(MissingFileError):
    """A dataset file is absent; the message says where it was looked for and how to get it."""


def _damaged_advice(dataset: str) -> str:
    return (
        f"re-download the converted {dataset} file from {RELEASE_PAGE} or convert the raw dataset again "
        f"with `python -m cli.convert {dataset} ...`"
    )


def _numpy_core_attr(module: str, name: str) -> Any:
    """Resolve ``multiarray._reconstruct`` and friends from whichever numpy is installed.

    Files pickled under numpy 1.x name ``numpy.core.*``, under numpy 2.x ``numpy._core.*``; both map to
    the same installed function without importing the deprecated ``numpy.core`` alias.
    """
    try:
        core = __import__(f"numpy._core.{module}", fromlist=[name])
    except ImportError:  # numpy 1.x has no numpy._core
        core = __import__(f"numpy.core.{module}", fromlist=[name])
    return getattr(core, name)


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 numpy pickles use it, restricted to the text codecs they need."""
    if codecs.lookup(encoding).name not in ("latin-1", "iso8859-1", "utf-8"):
        raise UnsafeRecordError(f"_codecs.encode with codec {encoding!r} is not allowed in a data record")
    return codecs.encode(text, encoding)


_BUILTINS = {
    name: getattr(__import__("builtins"), name)
    for name in (
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "bytes",
        "bytearray",
        "str",
        "int",
        "float",
        "bool",
        "complex",
    )
}


def _allowed_global(module: str, name: str) -> Any | None:
    if module == "builtins":
        return _BUILTINS.get(name)
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        return _numpy_core_attr("multiarray", name)
    if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":
        return _numpy_core_attr("numeric", name)  # pickle protocol 5 arrays
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(numpy, name)
    if module == "numpy.dtypes" and name.endswith("DType") and name != "ObjectDType":
        return getattr(getattr(numpy, "dtypes", None), name, None)
    if module == "_codecs" and name == "encode":
        return _latin1_encode
    if module in ("_io", "io") and name == "BytesIO":
        return io.BytesIO
    return None


class _SealedFunction:
    """An allowed function as the unpickler hands it out: it can be called, but not changed.

    Pickle's BUILD opcode sets attributes on whatever object is on the stack; applied to a plain
    function it could rewrite ``__defaults__`` or ``__kwdefaults__`` for the whole process. BUILD is
    meant for the objects numpy's reconstruct functions return (arrays, dtypes, scalars; and BytesIO),
    which define ``__setstate__``; on this wrapper ``__setstate__`` refuses. The allowed classes need no
    wrapper: they are immutable types.
    """

    __slots__ = ("_function", "_name", "_where")

    def __init__(self, function: Any, name: str, where: str) -> None:
        self._function, self._name, self._where = function, name, where

    def __call__(self, *arguments: Any) -> Any:
        return self._function(*arguments)

    def __setstate__(self, state: Any) -> None:
        raise UnsafeRecordError(
            f"refused pickle BUILD on the function {self._name} in {self._where}: only numpy arrays, dtypes, "
            "scalars and io.BytesIO may be built. The file is corrupt or crafted; re-download it or "
            "convert the raw dataset with `python -m cli.convert`."
        )


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain data: builtins containers, numpy arrays/scalars, BytesIO."""

    def __init__(self, file: io.BytesIO, *, where: str) -> None:
        super().__init__(file)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_global(module, name)
        if found is None:
            raise UnsafeRecordError(
                f"refused to unpickle global {module}.{name} in {self._where}: data records may only hold "
                "builtins containers/scalars/bytes, numpy arrays and scalars, and io.BytesIO. The file is "
                "corrupt or crafted; re-download it or convert the raw dataset with `python -m cli.convert`."
            )
        if isinstance(found, type):
            return found
        return _SealedFunction(found, f"{module}.{name}", self._where)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeRecordError(f"persistent ids are not allowed in {self._where}")


def safe_loads(data: bytes, *, where: str) -> Any:
    """Unpickle ``data`` with the allow-list; ``where`` (file and key) goes into every error."""
    if len(data) > 0 and data[0] == 0x80 and len(data) > 1 and data[1] > 5:
        raise UnsafeRecordError(f"unknown pickle protocol {data[1]} in {where}")
    return SafeUnpickler(io.BytesIO(data), where=where).load()


# ---------------------------------------------------------------------------------------------
# Our pickle-free format (msgpack)


def _pack_default(value: Any) -> Any:
    if isinstance(value, numpy.ndarray):
        if value.dtype.name not in ALLOWED_DTYPES:
            raise TypeError(
                f"array dtype {value.dtype} cannot be stored; use one of {sorted(ALLOWED_DTYPES)}"
            )
        contiguous = numpy.ascontiguousarray(value)
        return {"dtype": contiguous.dtype.name, "shape": list(contiguous.shape), "data": contiguous.tobytes()}
    if isinstance(value, numpy.generic):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a metaslot LMDB record")


def _unpack_object_hook(value: dict[Any, Any]) -> Any:
    if set(value) == {"dtype", "shape", "data"} and isinstance(value["data"], bytes):
        if value["dtype"] not in ALLOWED_DTYPES:
            raise UnsafeRecordError(f"typed array with dtype {value['dtype']!r} is not allowed")
        return numpy.frombuffer(value["data"], dtype=value["dtype"]).reshape(value["shape"]).copy()
    return value


def pack_record(record: object) -> bytes:
    """Encode a record (a dict (bytes, numbers, strings, numpy arrays) as msgpack."""
    return msgpack.packb(record, default=_pack_default, use_bin_type=True)


def unpack_record(data: bytes) -> Any:
    """Decode a msgpack record, turning typed-array maps back into numpy arrays."""
    return msgpack.unpackb(data, raw=False, object_hook=_unpack_object_hook, strict_map_key=False)


# ---------------------------------------------------------------------------------------------
# Opening and reading


def missing_file_message(path: Path, dataset: str) -> str:
    return (
        f"dataset file {path.name} not found: looked for {path.resolve()}. Get the converted file "
        f"{dataset}/{path.name} from {RELEASE_PAGE} and place it there, or convert the raw dataset with "
        f"`python -m cli.convert {dataset} --raw-dir <raw {dataset} dir> --out {path.parent}`."
    )


# LMDB 0.9 on-disk layout (64-bit little-endian builds, which wrote every published file): pages 0 and 1
# are meta pages, a 16-byte page header then MDB_meta. Offsets below are from the start of a meta page.
_LMDB_MAGIC = 0xBEEFC0DE
_LMDB_DATA_VERSION = 1
_META_MAGIC_VERSION = struct.Struct("<II")  # mm_magic, mm_version at 16
_META_PAGE_SIZE = struct.Struct("<I")  # mm_dbs[0].md_pad (the page size) at 40
_META_LAST_PAGE_TXNID = struct.Struct("<QQ")  # mm_last_pg, mm_txnid at 136
_META_BYTES = 152


def _meta_page(header: bytes, offset: int) -> tuple[int, int, int] | None:
    """(page size, last used page, transaction id) of the meta page at ``offset``, None if not a meta page."""
    if len(header) < offset + _META_BYTES:
        return None
    magic, version = _META_MAGIC_VERSION.unpack_from(header, offset + 16)
    if magic != _LMDB_MAGIC or version != _LMDB_DATA_VERSION:
        return None
    (page_size,) = _META_PAGE_SIZE.unpack_from(header, offset + 40)
    last_page, txnid = _META_LAST_PAGE_TXNID.unpack_from(header, offset + 136)
    return page_size, last_page, txnid


def check_lmdb_size(path: Path, dataset: str = "<dataset>") -> None:
    """Refuse a file shorter than the pages its newest meta page says are in use.

    LMDB maps the file into memory and trusts its meta pages: reading a page past the end of a truncated
    file kills the process with SIGBUS, without a message. The newest of the two meta pages (highest
    transaction id) gives the last used page number, so the file must hold at least
    ``(last_page + 1) · page_size`` bytes.
    """
    size = path.stat().st_size
    with path.open("rb") as file:
        first = file.read(_META_BYTES)
        meta = _meta_page(first, 0)
        if meta is None:
            what = "is empty" if size == 0 else "does not start with an LMDB meta page"
            raise CorruptDataError(
                f"{path} {what} ({size} bytes): it is not an LMDB file, or its start is damaged; "
                + _damaged_advice(dataset)
            )
        page_size = meta[0]
        if page_size < 512 or page_size & (page_size - 1):
            raise CorruptDataError(
                f"{path}: its LMDB header gives page size {page_size}, not a power of two of at least 512; "
                "the file is damaged. " + _damaged_advice(dataset)
            )
        file.seek(page_size)
        second = _meta_page(file.read(_META_BYTES), 0)
    newest = max((m for m in (meta, second) if m is not None), key=lambda m: m[2])
    needed = (newest[1] + 1) * page_size
    if size < needed:
        raise CorruptDataError(
            f"{path} is truncated: {size} bytes, but its LMDB header says pages up to {newest[1]} of "
            f"{page_size} bytes are in use ({needed} bytes); the copy or download stopped early. "
            + _damaged_advice(dataset)
        )


def open_environment(path: Path, dataset: str = "<dataset>") -> lmdb.Environment:
    """Open a single-file LMDB read-only (the reference's settings), with a helpful missing-file error.

    The file size is checked against the LMDB header first (`check_lmdb_size`), so a truncated file is
    an error naming it rather than a SIGBUS on the first read.
    """
    if not path.is_file():
        raise MissingDatasetError(missing_file_message(path, dataset))
    check_lmdb_size(path, dataset)
    try:
        return lmdb.open(
            str(path),
            subdir=False,
            readonly=True,
            lock=False,
            readahead=False,
            meminit=False,
            max_spare_txns=4,
        )
    except lmdb.Error as error:
        raise CorruptDataError(
            f"{path} cannot be opened as an LMDB file ({error}); " + _damaged_advice(dataset)
        ) from error


# One read-only environment per file and process. py-lmdb refuses to open the same file twice in a
# process (two datasets over one file, or a DataLoader worker that inherited its parent's handle
# through fork), so handles are shared here; a handle inherited through fork is closed in the child
# (safe with lock=False) and reopened, which is what makes opening "lazily per worker" work.
_ENVIRONMENTS: dict[tuple[str, int, int], tuple[int, lmdb.Environment]] = {}


def _file_identity(path: Path, dataset: str) -> tuple[str, int, int]:
    # Keyed by inode too, so a file replaced by a new conversion gets a fresh handle.
    if not path.is_file():
        raise MissingDatasetError(missing_file_message(path, dataset))
    status = path.stat()
    return str(path.resolve()), status.st_dev, status.st_ino


def read_header(path: Path, dataset: str = "<dataset>") -> tuple[bytes | None, bytes | None]:
    """The raw ``__format__`` and ``__keys__`` values, without keeping a new handle open (no handle
    is left behind for DataLoader workers to inherit)."""
    cached = _ENVIRONMENTS.get(_file_identity(path, dataset))
    if cached is not None and cached[0] == os.getpid():
        environment, temporary = cached[1], False
    else:
        environment, temporary = open_environment(path, dataset), True
    try:
        with environment.begin() as transaction:
            return transaction.get(FORMAT_KEY), transaction.get(KEYS_KEY)
    except lmdb.Error as error:
        raise CorruptDataError(
            f"{path}: reading its header keys failed ({error}); " + _damaged_advice(dataset)
        ) from error
    finally:
        if temporary:
            environment.close()


def shared_environment(path: Path, dataset: str = "<dataset>") -> lmdb.Environment:
    """This process's read-only environment for ``path``, opened on first use."""
    key = _file_identity(path, dataset)
    cached = _ENVIRONMENTS.get(key)
    if cached is not None:
        pid, environment = cached
        if pid == os.getpid():
            return environment
        environment.close()  # inherited through fork: unusable here, and it blocks a fresh open
    environment = open_environment(path, dataset)
    _ENVIRONMENTS[key] = (os.getpid(), environment)
    return environment


class RecordFile:
    """Read access to one LMDB file in either format (auto-detected), opened lazily once per process.

    Construction reads ``__keys__`` and the format header and closes the file again; records are read
    through the process's shared environment, so DataLoader workers each open their own handle on
    first access.
    """

    def __init__(self, path: Path | str, dataset: str = "<dataset>") -> None:
        self.path = Path(path)
        self.dataset = dataset
        format_value, raw_keys = read_header(self.path, dataset)
        self.pickle_free = format_value is not None
        if self.pickle_free:
            header = self._decode(format_value, "__format__")
            if not isinstance(header, dict) or header.get("name") != FORMAT_NAME:
                raise CorruptDataError(f"{self.path}: unknown __format__ header {header!r}")
        if raw_keys is None:
            raise CorruptDataError(
                f"{self.path} has no __keys__ entry; it is not a dataset LMDB (merged files with zstd keys "
                "are not supported: convert the raw dataset instead)"
            )
        keys = self._decode(raw_keys, "__keys__")
        if not isinstance(keys, list | tuple):
            raise CorruptDataError(
                f"{self.path}: __keys__ holds {type(keys).__name__}, expected a list of keys"
            )
        self.keys: list[bytes] = [key.encode("ascii") if isinstance(key, str) else bytes(key) for key in keys]

    def __len__(self) -> int:
        return len(self.keys)

    def _decode(self, data: bytes, key: str) -> Any:
        where = f"{self.path} key {key!r}"
        try:
            if self.pickle_free:
                return unpack_record(data)
            return safe_loads(data, where=where)
        except UnsafeRecordError as error:
            if self.pickle_free:  # the unpickler's own errors already name the file and key
                raise UnsafeRecordError(f"{where}: {error}") from error
            raise
        except Exception as error:  # noqa: BLE001 - any failure to decode stored bytes means damaged data
            raise CorruptDataError(
                f"{where}: the record cannot be decoded ({type(error).__name__}: {error}); the file is "
                "truncated or damaged. " + _damaged_advice(self.dataset)
            ) from error

    def record(self, index: int) -> dict[str, Any]:
        """The decoded record dict of sample ``index`` (position in ``__keys__``)."""
        key = self.keys[index]
        try:
            with shared_environment(self.path, self.dataset).begin() as transaction:
                data = transaction.get(key)
        except lmdb.Error as error:
            raise CorruptDataError(
                f"{self.path} key {key!r}: reading the record failed ({error}); "
                + _damaged_advice(self.dataset)
            ) from error
        if data is None:
            raise CorruptDataError(
                f"{self.path}: key {key!r} listed in __keys__ is missing; " + _damaged_advice(self.dataset)
            )
        record = self._decode(data, key.decode("ascii", "replace"))
        if not isinstance(record, dict):
            raise CorruptDataError(
                f"{self.path} key {key!r}: record is {type(record).__name__}, expected a dict"
            )
        return record


# ---------------------------------------------------------------------------------------------
# Writing (our format)


def write_records(path: Path | str, records: Iterable[dict[str, Any]], *, commit_every: int = 64) -> int:
    """Write records as ``%06d`` keys plus ``__keys__`` and ``__format__``, atomically.

    The file is built at ``<path>.partial`` and renamed over ``path`` only when complete, so an
    interrupted conversion never leaves a truncated dataset behind; when writing fails (an error while
    producing or storing a record, Ctrl-C) the partial file is removed. An empty ``records`` is refused:
    a dataset file without samples only fails later. Returns the number of records.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    leftovers = (partial, Path(str(partial) + "-lock"))
    for stale in leftovers:
        stale.unlink(missing_ok=True)
    keys: list[str] = []
    try:
        environment = lmdb.open(str(partial), subdir=False, map_size=MAP_SIZE, readonly=False, meminit=False)
        try:
            transaction = environment.begin(write=True)
            for record in _numbered(records):
                key, value = record
                transaction.put(key.encode("ascii"), pack_record(value))
                keys.append(key)
                if len(keys) % commit_every == 0:
                    transaction.commit()
                    transaction = environment.begin(write=True)
            if not keys:
                raise DataError(
                    f"no records to write to {path}: the source held no samples, so nothing was written"
                )
            transaction.put(KEYS_KEY, pack_record(keys))
            transaction.put(FORMAT_KEY, pack_record({"name": FORMAT_NAME, "version": FORMAT_VERSION}))
            transaction.commit()
            environment.sync(True)
        finally:
            environment.close()
        os.replace(partial, path)
    except BaseException:
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        raise
    leftovers[1].unlink(missing_ok=True)
    return len(keys)


def _numbered(records: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for index, record in enumerate(records):
        yield f"{index:06d}", record
