"""Fetch the published converted LMDB files: resumable HTTP download, size/SHA-256 check, atomic rename.

``download_dataset("voc", Path("data"))`` writes ``data/voc/train.lmdb`` and ``data/voc/val.lmdb``
(the layout the readers expect under ``--data.root data``). Each file is downloaded to
``<name>.partial``; an interrupted download continues from there with an HTTP ``Range`` request, and
the file is renamed into place only once it passed every check the table below allows. A file that
fails a check is removed and the error names it.

What we know about the published files (see :data:`PUBLISHED_FILES`): the release tags
``dataset-voc``, ``dataset-coco``, ``dataset-clevrtex`` and ``dataset-movi_d`` are listed in the
reference README (Genera1Z/VQ-VFM-OCL, "Converted Datasets"). The asset names inside those releases
could not be read from where this table was written (no access to the release pages), nor could any
file be downloaded, so the URLs are unverified and no size or SHA-256 is known: such a file is
checked only for being an LMDB file, and the download says it could not be verified. Whoever
downloads a file can fill in its ``size`` and ``sha256`` (the download prints both), or pass
``base_url`` for a mirror laid out as ``<base_url>/<dataset>/<split>.lmdb``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from http.client import HTTPResponse, IncompleteRead
from pathlib import Path
from typing import Literal

import attrs
from tqdm import tqdm

from metaslot.data.lmdb_io import check_lmdb_size
from metaslot.errors import CorruptDataError, MetaslotError

RELEASES = "https://github.com/Genera1Z/VQ-VFM-OCL/releases"
DATASETS = ("voc", "coco", "clevrtex", "movi_d")
SPLITS = ("train", "val")
CHUNK_BYTES = 1 << 20
TIMEOUT_SECONDS = 60.0
# Meta page of a single-file LMDB written on a 64-bit little-endian machine: MDB_MAGIC after the
# 16-byte page header.
LMDB_MAGIC = (0xBEEFC0DE).to_bytes(4, "little")
LMDB_MAGIC_OFFSET = 16

Checked = Literal["sha256", "size", "format only"]


class DownloadError(MetaslotError):
    """A download that cannot go on; the message names the file and what to do."""


class DownloadFailedError(DownloadError):
    """The server could not be reached, refused the request or closed the connection early."""


class HttpStatusError(DownloadFailedError):
    """The server answered with an HTTP error status (404: no such file at that URL)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class VerificationError(DownloadError):
    """A downloaded (or already present) file does not match its size, SHA-256 or format."""


@attrs.frozen
class PublishedFile:
    """One split file of a published dataset and what is known about it."""

    dataset: str
    split: str
    url: str
    size: int | None
    """Bytes; None where nobody could download the file to measure it."""
    sha256: str | None
    """Lower-case hex digest; None where unknown."""
    url_verified: bool
    """Whether the URL was seen to serve this file (False: the asset name is a guess)."""

    @property
    def relative_path(self) -> Path:
        return Path(self.dataset) / f"{self.split}.lmdb"


def _release_asset(dataset: str, split: str) -> str:
    # Tag: from the reference README. Asset name `<split>.lmdb`: a guess (unverified).
    return f"{RELEASES}/download/dataset-{dataset}/{split}.lmdb"


# The table the downloads are checked against. Nothing here could be measured (no download was
# possible where it was written): every URL is unverified, every size and hash unknown. The reference
# README says to "download and unzip" the converted datasets, so the real assets may be zip archives
# or split parts (GitHub caps one asset at 2 GiB; COCO train alone is larger): a zip is refused with
# a message saying so rather than saved as an LMDB file.
PUBLISHED_FILES: tuple[PublishedFile, ...] = (
    PublishedFile("voc", "train", _release_asset("voc", "train"), None, None, url_verified=False),
    PublishedFile("voc", "val", _release_asset("voc", "val"), None, None, url_verified=False),
    PublishedFile("coco", "train", _release_asset("coco", "train"), None, None, url_verified=False),
    PublishedFile("coco", "val", _release_asset("coco", "val"), None, None, url_verified=False),
    PublishedFile("clevrtex", "train", _release_asset("clevrtex", "train"), None, None, url_verified=False),
    PublishedFile("clevrtex", "val", _release_asset("clevrtex", "val"), None, None, url_verified=False),
    PublishedFile("movi_d", "train", _release_asset("movi_d", "train"), None, None, url_verified=False),
    PublishedFile("movi_d", "val", _release_asset("movi_d", "val"), None, None, url_verified=False),
)


@attrs.frozen
class DownloadReport:
    """What happened to one file."""

    path: Path
    size: int
    sha256: str
    checked: Checked
    """The strongest check the file passed ("format only": no size or hash was known)."""
    downloaded_bytes: int
    """Bytes fetched by this call (0: the file was already there)."""
    resumed_from: int
    """Bytes of an earlier partial download that were kept."""


# ---------------------------------------------------------------------------------------------
# Pure helpers


def files_of(
    dataset: str, splits: Sequence[str] = SPLITS, table: Sequence[PublishedFile] = PUBLISHED_FILES
) -> list[PublishedFile]:
    """The table rows of ``dataset`` for ``splits``, in split order."""
    if dataset not in DATASETS:
        raise DownloadError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    unknown = [split for split in splits if split not in SPLITS]
    if unknown:
        raise DownloadError(f"unknown split {unknown[0]!r}: choose among {', '.join(SPLITS)}")
    rows = {(row.dataset, row.split): row for row in table}
    return [rows[(dataset, split)] for split in splits]


def mirror_url(base_url: str, entry: PublishedFile) -> str:
    """``<base_url>/<dataset>/<split>.lmdb``: a mirror laid out like the data folder."""
    return f"{base_url.rstrip('/')}/{entry.dataset}/{entry.split}.lmdb"


def partial_path(destination: Path) -> Path:
    """Where ``destination`` is downloaded to until it is complete and checked."""
    return destination.with_name(destination.name + ".partial")


def validator_path(partial: Path) -> Path:
    """The server's ETag (or Last-Modified) of the file ``partial`` is a prefix of, for ``If-Range``."""
    return partial.with_name(partial.name + ".validator")


def parse_content_range(header: str) -> tuple[int, int, int | None]:
    """``"bytes 100-199/1000"`` → (100, 199, 1000); the total is None for ``"/*"``."""
    unit, _, spec = header.strip().partition(" ")
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    try:
        if unit != "bytes":
            raise ValueError(unit)
        return int(first), int(last), None if total == "*" else int(total)
    except ValueError:
        raise DownloadFailedError(f"the server sent an unreadable Content-Range header {header!r}") from None


def looks_like_lmdb(header: bytes) -> bool:
    """Whether the first bytes of a file are an LMDB meta page (64-bit little-endian layout)."""
    return header[LMDB_MAGIC_OFFSET : LMDB_MAGIC_OFFSET + 4] == LMDB_MAGIC


def format_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------
# Checking a file


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, *, name: str, size: int | None, sha256: str | None) -> tuple[str, Checked]:
    """(SHA-256, strongest check passed) of ``path``; raises VerificationError naming ``name``."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise VerificationError(
            f"{name}: {actual_size} bytes where the table expects {size}: the file is corrupt or incomplete"
        )
    with open(path, "rb") as handle:
        header = handle.read(LMDB_MAGIC_OFFSET + 4)
    if not looks_like_lmdb(header):
        what = "a zip archive, not an LMDB file" if zipfile.is_zipfile(path) else "not an LMDB file"
        raise VerificationError(
            f"{name} is {what} (first bytes {header[:8]!r}); the URL in "
            "metaslot/data/download.py is unverified and may name another asset: pass --base-url for a "
            "mirror, or get the file from the release page by hand"
        )
    try:
        check_lmdb_size(path, name)  # a truncated or spliced file: shorter than its pages in use
    except CorruptDataError as error:
        raise VerificationError(f"{name} is damaged: {error}") from None
    digest = sha256_of(path)
    if sha256 is not None and digest != sha256.lower():
        raise VerificationError(f"{name}: SHA-256 {digest} does not match the table's {sha256}")
    return digest, "sha256" if sha256 is not None else "size" if size is not None else "format only"


# ---------------------------------------------------------------------------------------------
# Fetching


class RangeNotSatisfiable(DownloadFailedError):
    """HTTP 416 to a Range request: the partial file already holds ``total`` bytes or more."""

    def __init__(self, message: str, total: int | None) -> None:
        super().__init__(message)
        self.total = total


def open_from(url: str, offset: int, name: str, validator: str | None = None) -> HTTPResponse:
    """GET ``url`` from byte ``offset`` (a Range request when above 0); HTTP and network errors are typed.

    With ``validator`` the range is conditional (``If-Range``): a server whose file changed since the
    partial download began sends the whole new file instead of the rest of it.
    """
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"{name}: {url!r} is not an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
    if offset > 0:
        request.add_header("Range", f"bytes={offset}-")
        if validator:
            request.add_header("If-Range", validator)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset > 0:
            total = (error.headers.get("Content-Range") or "").rpartition("/")[2]
            raise RangeNotSatisfiable(
                f"{name}: bytes from {offset} are past the end", int(total) if total.isdigit() else None
            ) from None
        raise HttpStatusError(f"{name}: HTTP {error.code} {error.reason} from {url}", error.code) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DownloadFailedError(
            f"{name}: cannot reach {url} ({reason}); check the network and run again"
        ) from None


def _start_offset(response: HTTPResponse, offset: int, name: str) -> tuple[int, int | None]:
    """(offset the body starts at, total file size if the server said) for a response to ``open_from``."""
    length = response.headers.get("Content-Length")
    if response.status == 206:
        first, _, total = parse_content_range(response.headers.get("Content-Range", ""))
        if first != offset:
            raise DownloadFailedError(f"{name}: asked for bytes from {offset}, the server sent from {first}")
        if total is None and length is not None:
            total = offset + int(length)
        return offset, total
    if response.status == 200:
        return 0, int(length) if length is not None else None  # no Range support: start over
    raise DownloadFailedError(f"{name}: unexpected HTTP {response.status} from {response.geturl()}")


def fetch(url: str, partial: Path, *, name: str, progress: bool, checkable: bool = True) -> tuple[int, int]:
    """Download ``url`` into ``partial``, continuing a partial file; returns (bytes fetched, bytes kept).

    A partial file is continued when its validator (the server's ETag) says which file it is a prefix
    of, or when the end check can tell (``checkable``: a SHA-256 is known); otherwise it may be the
    start of another file and is fetched afresh. A server that ignores the Range header gets the file
    again from the start. A connection that closes early raises DownloadFailedError and keeps the
    partial file for the next try, unless the server cannot resume (it ignores Range).
    """
    validator_file = validator_path(partial)
    if partial.is_file() and not validator_file.is_file() and not checkable:
        partial.unlink()  # no way to tell whose prefix it is
    offset = partial.stat().st_size if partial.is_file() else 0
    validator = validator_file.read_text().strip() if offset and validator_file.is_file() else None
    try:
        response = open_from(url, offset, name, validator)
    except RangeNotSatisfiable as past_end:
        if past_end.total == offset:
            return 0, offset  # the partial already holds the whole file
        partial.unlink()  # longer than the file: not a prefix of it
        return fetch(url, partial, name=name, progress=progress)
    with response:
        start, total = _start_offset(response, offset, name)
        cannot_resume = offset > 0 and start == 0 or response.headers.get("Accept-Ranges") == "none"
        if start == 0:  # a fresh file: remember which version of it this partial download is
            new_validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
            validator_file.unlink(missing_ok=True)
            if new_validator:
                validator_file.write_text(new_validator + "\n")
        fetched = 0
        with (
            open(partial, "ab" if start > 0 else "wb") as handle,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                disable=not progress,
                file=sys.stderr,
            ) as bar,
        ):
            try:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(chunk)
                    fetched += len(chunk)
                    bar.update(len(chunk))
            except (IncompleteRead, OSError) as error:
                if cannot_resume:
                    raise _cannot_resume(name, url, start + fetched, error) from None
                raise DownloadFailedError(
                    f"{name}: the connection broke after {format_bytes(start + fetched)} ({error}); "
                    f"run the same command again to resume from {partial}"
                ) from None
    if total is not None and start + fetched != total:
        if cannot_resume:
            raise _cannot_resume(name, url, start + fetched, "closed early")
        raise DownloadFailedError(
            f"{name}: the connection closed after {start + fetched} of {total} bytes; run the same "
            f"command again to resume from {partial}"
        )
    return fetched, start


def _cannot_resume(name: str, url: str, received: int, error: object) -> DownloadFailedError:
    return DownloadFailedError(
        f"{name}: the connection broke after {format_bytes(received)} ({error}), and the server ignores Range "
        f"requests, so a download cannot resume: every try starts from zero; fetch {url} with a tool that "
        "retries, or pass --base-url for a mirror"
    )


def download_file(
    url: str,
    destination: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> DownloadReport:
    """Fetch ``url`` to ``destination`` (resuming ``<destination>.partial``), check it, rename it into place.

    An existing ``destination`` is checked and kept (never fetched again). A file that fails a check
    is removed (a partial one) or left alone (an existing one) and VerificationError names it.
    """
    name = str(destination)
    if destination.is_file():
        try:
            digest, checked = verify_file(destination, name=name, size=size, sha256=sha256)
        except VerificationError as error:
            raise VerificationError(f"{error}; delete it and run the command again") from None
        return DownloadReport(destination, destination.stat().st_size, digest, checked, 0, 0)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(destination)
    if size is not None and partial.is_file() and partial.stat().st_size > size:
        partial.unlink()  # longer than the file can be: not a prefix of it
    fetched, kept = fetch(url, partial, name=name, progress=progress, checkable=sha256 is not None)
    try:
        digest, checked = verify_file(partial, name=name, size=size, sha256=sha256)
    except VerificationError as error:
        partial.unlink()
        validator_path(partial).unlink(missing_ok=True)
        raise VerificationError(f"{error}; removed it, run the command again to download it afresh") from None
    os.replace(partial, destination)  # atomic: readers never see a half-written file under this name
    validator_path(partial).unlink(missing_ok=True)
    return DownloadReport(destination, destination.stat().st_size, digest, checked, fetched, kept)


def download_dataset(
    dataset: str,
    root: Path,
    *,
    splits: Sequence[str] = SPLITS,
    base_url: str | None = None,
    progress: bool = True,
    table: Sequence[PublishedFile] = PUBLISHED_FILES,
) -> list[DownloadReport]:
    """Every split file of ``dataset`` under ``root/<dataset>/``, one after the other."""
    reports = []
    for entry in files_of(dataset, splits, table):
        url = mirror_url(base_url, entry) if base_url else entry.url
        try:
            reports.append(
                download_file(
                    url, root / entry.relative_path, size=entry.size, sha256=entry.sha256, progress=progress
                )
            )
        except HttpStatusError as error:
            if base_url or entry.url_verified:
                raise
            raise HttpStatusError(
                f"{error}; this release URL is a guess (`python -m cli.download --list` shows which are "
                "unverified): get the file from the release page by hand, or pass --base-url for a mirror",
                error.status,
            ) from None
    return reports
