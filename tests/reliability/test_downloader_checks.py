"""The downloader checks what it can (issue 28, item 9).

A truncated or spliced LMDB passed with exit 0 ("checked: format only") although `check_lmdb_size`
detects it; a ``.partial`` without a validator was resumed from another file; a server that ignores
``Range`` gave the same "run it again to resume" error on every try.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from metaslot.data.download import (  # noqa: E402
    DownloadFailedError,
    VerificationError,
    download_file,
    partial_path,
)
from tests.data import test_download
from tests.data.test_download import FileServer, small_lmdb

server = test_download.server  # the local HTTP server fixture of the downloader's own tests


def test_a_truncated_lmdb_is_refused_without_a_size_or_hash(tmp_path: Path, server: FileServer) -> None:
    whole = small_lmdb(tmp_path / "source.lmdb")
    server.files["/f.lmdb"] = whole[: len(whole) // 2]  # the server's copy was cut short
    destination = tmp_path / "f.lmdb"
    with pytest.raises(VerificationError, match="f.lmdb") as caught:
        download_file(server.url("/f.lmdb"), destination, progress=False)
    assert "\n" not in str(caught.value) and not destination.exists()


def test_a_partial_without_a_validator_is_not_resumed_when_no_hash_can_check_it(
    tmp_path: Path, server: FileServer
) -> None:
    wanted = small_lmdb(tmp_path / "wanted.lmdb", entries=40)
    other = small_lmdb(tmp_path / "other.lmdb", entries=60)
    server.files["/f.lmdb"] = wanted
    destination = tmp_path / "f.lmdb"
    partial_path(destination).write_bytes(other[: len(wanted) // 2])  # left by another download
    report = download_file(server.url("/f.lmdb"), destination, progress=False)
    assert destination.read_bytes() == wanted and report.resumed_from == 0


def test_a_server_that_ignores_range_says_resuming_cannot_work(tmp_path: Path, server: FileServer) -> None:
    payload = small_lmdb(tmp_path / "source.lmdb")
    digest = hashlib.sha256(payload).hexdigest()
    server.files["/f.lmdb"] = payload
    server.cut_after = 5000
    destination = tmp_path / "f.lmdb"
    with pytest.raises(DownloadFailedError, match="resume"):
        download_file(server.url("/f.lmdb"), destination, sha256=digest, progress=False)
    server.ignore_range, server.cut_after = True, 5000  # the next try breaks at the same place
    with pytest.raises(DownloadFailedError, match="ignores Range") as caught:
        download_file(server.url("/f.lmdb"), destination, sha256=digest, progress=False)
    assert "run the same command again to resume" not in str(caught.value)
