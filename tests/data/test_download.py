"""Downloads of the published files, against a local HTTP server (127.0.0.1, with Range support).

No test reaches the network: every URL points at the server started here.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import lmdb
import pytest

from metaslot.cli import download as download_cli
from metaslot.data.download import (
    PUBLISHED_FILES,
    DownloadFailedError,
    HttpStatusError,
    PublishedFile,
    VerificationError,
    download_dataset,
    download_file,
    files_of,
    looks_like_lmdb,
    parse_content_range,
    partial_path,
    validator_path,
)


def small_lmdb(path: Path, entries: int = 40) -> bytes:
    """Bytes of a real single-file LMDB (tens of KiB), like the published files but tiny."""
    environment = lmdb.open(str(path), subdir=False, map_size=1 << 22)
    with environment.begin(write=True) as transaction:
        for index in range(entries):
            transaction.put(b"%06d" % index, bytes([index]) * 1000)
    environment.close()
    return path.read_bytes()


@attrs.define
class FileServer:
    """What the handler serves and what it saw; the flags simulate misbehaving servers."""

    files: dict[str, bytes] = attrs.Factory(dict)
    ranges: list[tuple[str, str | None]] = attrs.Factory(list)
    ignore_range: bool = False
    cut_after: int | None = None
    """Close the connection after this many body bytes (an interrupted download), once."""
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def handler_for(state: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *arguments: object) -> None:  # keep the test output quiet
            pass

        def do_GET(self) -> None:
            requested = self.headers.get("Range")
            state.ranges.append((self.path, requested))
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404, "Not Found")
                return
            etag = f'"{sha256(data)[:16]}"'
            if self.headers.get("If-Range") not in (None, etag):
                requested = None  # the file changed since the partial download began: send it whole
            start = 0
            if requested and not state.ignore_range:
                start = int(requested.removeprefix("bytes=").removesuffix("-"))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                body, state.cut_after = body[: state.cut_after], None
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def payload(tmp_path: Path) -> bytes:
    return small_lmdb(tmp_path / "source.lmdb")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Pure helpers


def test_content_range_is_parsed() -> None:
    assert parse_content_range("bytes 100-199/1000") == (100, 199, 1000)
    assert parse_content_range("bytes 0-9/*") == (0, 9, None)
    with pytest.raises(DownloadFailedError, match="Content-Range"):
        parse_content_range("items 1-2/3")


def test_lmdb_header_is_recognised(payload: bytes) -> None:
    assert looks_like_lmdb(payload[:32])
    assert not looks_like_lmdb(b"<!DOCTYPE html><html>" + bytes(20))
    assert not looks_like_lmdb(b"")


def test_table_has_every_split_and_says_what_is_unverified() -> None:
    assert {(row.dataset, row.split) for row in PUBLISHED_FILES} == {
        (dataset, split) for dataset in ("voc", "coco", "clevrtex", "movi_d") for split in ("train", "val")
    }
    # Nothing could be downloaded where the table was written: it must not claim otherwise.
    for row in PUBLISHED_FILES:
        assert row.url.startswith("https://github.com/Genera1Z/VQ-VFM-OCL/releases/download/dataset-")
        assert not row.url_verified and row.size is None and row.sha256 is None
    assert [row.split for row in files_of("coco", ["val"])] == ["val"]


# ---------------------------------------------------------------------------------------------
# One file


def test_download_verifies_and_renames_into_place(tmp_path: Path, server: FileServer, payload: bytes) -> None:
    server.files["/voc/train.lmdb"] = payload
    destination = tmp_path / "data" / "voc" / "train.lmdb"
    report = download_file(
        server.url("/voc/train.lmdb"),
        destination,
        size=len(payload),
        sha256=sha256(payload),
        progress=False,
    )
    assert destination.read_bytes() == payload and not partial_path(destination).exists()
    assert report.checked == "sha256" and report.sha256 == sha256(payload)
    assert (report.downloaded_bytes, report.resumed_from) == (len(payload), 0)
    assert server.ranges == [("/voc/train.lmdb", None)]


def test_truncated_partial_is_resumed_with_a_range_request(
    tmp_path: Path, server: FileServer, payload: bytes
) -> None:
    server.files["/f.lmdb"] = payload
    destination = tmp_path / "f.lmdb"
    half = len(payload) // 2
    partial_path(destination).write_bytes(payload[:half])
    report = download_file(
        server.url("/f.lmdb"), destination, size=len(payload), sha256=sha256(payload), progress=False
    )
    assert destination.read_bytes() == payload
    assert server.ranges == [("/f.lmdb", f"bytes={half}-")]
    assert (report.resumed_from, report.downloaded_bytes) == (half, len(payload) - half)


def test_interrupted_download_keeps_the_partial_and_the_next_run_finishes_it(
    tmp_path: Path, server: FileServer, payload: bytes
) -> None:
    server.files["/f.lmdb"] = payload
    server.cut_after = 5000
    destination = tmp_path / "f.lmdb"
    with pytest.raises(DownloadFailedError, match="resume") as error:
        download_file(server.url("/f.lmdb"), destination, sha256=sha256(payload), progress=False)
    assert "\n" not in str(error.value) and str(destination) in str(error.value)
    assert partial_path(destination).read_bytes() == payload[:5000] and not destination.exists()
    download_file(server.url("/f.lmdb"), destination, sha256=sha256(payload), progress=False)
    assert destination.read_bytes() == payload
    assert server.ranges[-1] == ("/f.lmdb", "bytes=5000-")


def test_file_changed_on_the_server_since_the_partial_is_fetched_whole(
    tmp_path: Path, server: FileServer, payload: bytes
) -> None:
    server.files["/f.lmdb"] = payload
    server.cut_after = 5000
    destination = tmp_path / "f.lmdb"
    with pytest.raises(DownloadFailedError):
        download_file(server.url("/f.lmdb"), destination, progress=False)
    assert validator_path(partial_path(destination)).is_file()
    newer = small_lmdb(tmp_path / "newer.lmdb", entries=50)  # a new upload under the same URL
    server.files["/f.lmdb"] = newer
    report = download_file(server.url("/f.lmdb"), destination, progress=False)
    assert destination.read_bytes() == newer and report.resumed_from == 0  # not old prefix + new tail
    assert not validator_path(partial_path(destination)).exists()


def test_server_without_range_support_starts_over(tmp_path: Path, server: FileServer, payload: bytes) -> None:
    server.files["/f.lmdb"] = payload
    server.ignore_range = True
    destination = tmp_path / "f.lmdb"
    partial_path(destination).write_bytes(b"stale bytes that are not the file's prefix")
    report = download_file(server.url("/f.lmdb"), destination, sha256=sha256(payload), progress=False)
    assert destination.read_bytes() == payload and report.resumed_from == 0


def test_complete_partial_is_checked_without_fetching_again(
    tmp_path: Path, server: FileServer, payload: bytes
) -> None:
    server.files["/f.lmdb"] = payload
    destination = tmp_path / "f.lmdb"
    partial_path(destination).write_bytes(payload)  # the download ended before the rename
    report = download_file(server.url("/f.lmdb"), destination, sha256=sha256(payload), progress=False)
    assert destination.read_bytes() == payload and report.downloaded_bytes == 0
    assert server.ranges == [("/f.lmdb", f"bytes={len(payload)}-")]  # answered 416


def test_bad_hash_is_refused_with_one_line_naming_the_file(
    tmp_path: Path, server: FileServer, payload: bytes
) -> None:
    server.files["/f.lmdb"] = payload
    destination = tmp_path / "voc" / "train.lmdb"
    with pytest.raises(VerificationError) as error:
        download_file(server.url("/f.lmdb"), destination, sha256="0" * 64, progress=False)
    message = str(error.value)
    assert "\n" not in message and str(destination) in message and "SHA-256" in message
    assert not destination.exists() and not partial_path(destination).exists()


def test_wrong_size_is_refused(tmp_path: Path, server: FileServer, payload: bytes) -> None:
    server.files["/f.lmdb"] = payload
    destination = tmp_path / "f.lmdb"
    with pytest.raises(
        VerificationError, match=rf"{len(payload)} bytes where the table expects {len(payload) + 1}"
    ):
        download_file(server.url("/f.lmdb"), destination, size=len(payload) + 1, progress=False)
    assert not destination.exists()


@pytest.mark.parametrize("kind", ["html", "zip"])
def test_a_file_that_is_not_an_lmdb_is_refused_even_without_a_hash(
    tmp_path: Path, server: FileServer, payload: bytes, kind: str
) -> None:
    if kind == "zip":
        with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
            archive.writestr("voc/train.lmdb", payload)
        server.files["/f.lmdb"] = (tmp_path / "a.zip").read_bytes()
    else:
        server.files["/f.lmdb"] = b"<!DOCTYPE html><html><body>Sign in</body></html>"
    destination = tmp_path / "f.lmdb"
    expected = "a zip archive" if kind == "zip" else "not an LMDB file"
    with pytest.raises(VerificationError, match=expected):
        download_file(server.url("/f.lmdb"), destination, progress=False)
    assert not destination.exists()


def test_server_404_is_one_clear_line(tmp_path: Path, server: FileServer) -> None:
    destination = tmp_path / "f.lmdb"
    with pytest.raises(DownloadFailedError) as error:
        download_file(server.url("/missing.lmdb"), destination, progress=False)
    message = str(error.value)
    assert "HTTP 404" in message and server.url("/missing.lmdb") in message and "\n" not in message
    assert not destination.exists() and not partial_path(destination).exists()


@pytest.mark.parametrize("verified", [False, True])
def test_404_on_a_table_url_says_whether_the_url_is_a_guess(
    tmp_path: Path, server: FileServer, verified: bool
) -> None:
    table = [
        attrs.evolve(row, url=server.url(f"/gone/{row.split}"), url_verified=verified)
        for row in PUBLISHED_FILES
    ]
    with pytest.raises(HttpStatusError) as error:
        download_dataset("voc", tmp_path, progress=False, table=table)
    assert error.value.status == 404 and ("is a guess" in str(error.value)) == (not verified)


def test_unreachable_server_is_one_clear_line(tmp_path: Path, server: FileServer) -> None:
    # A port nobody listens on: the server fixture's port once it is closed is not guaranteed free,
    # so bind one, close it, and use it.
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadFailedError, match="cannot reach"):
        download_file(f"http://127.0.0.1:{port}/f.lmdb", tmp_path / "f.lmdb", progress=False)


def test_present_file_is_checked_not_fetched(tmp_path: Path, server: FileServer, payload: bytes) -> None:
    destination = tmp_path / "f.lmdb"
    destination.write_bytes(payload)
    report = download_file(server.url("/f.lmdb"), destination, sha256=sha256(payload), progress=False)
    assert report.downloaded_bytes == 0 and server.ranges == []
    with pytest.raises(VerificationError, match="delete it"):
        download_file(server.url("/f.lmdb"), destination, sha256="1" * 64, progress=False)
    assert destination.read_bytes() == payload  # a file the user had is never removed


# ---------------------------------------------------------------------------------------------
# A dataset, and the command


def test_dataset_download_fills_the_layout_the_readers_expect(
    tmp_path: Path, server: FileServer, payload: bytes
) -> None:
    from metaslot.data.lmdb_io import write_records
    from metaslot.data.published import VOCSpec

    write_records(tmp_path / "train.lmdb", [{"image": b"x", "segment": b"y"}])
    train = (tmp_path / "train.lmdb").read_bytes()
    server.files |= {"/mirror/voc/train.lmdb": train, "/mirror/voc/val.lmdb": payload}
    table = [
        attrs.evolve(row, size=len(train), sha256=sha256(train)) if row.split == "train" else row
        for row in PUBLISHED_FILES
    ]
    reports = download_dataset(
        "voc", tmp_path / "data", base_url=server.url("/mirror/"), progress=False, table=table
    )
    assert [report.checked for report in reports] == ["sha256", "format only"]
    assert (tmp_path / "data" / "voc" / "val.lmdb").read_bytes() == payload
    assert len(VOCSpec(tmp_path / "data").build("train").records) == 1


def test_command_downloads_and_warns_about_unverifiable_files(
    tmp_path: Path, server: FileServer, payload: bytes, capsys: pytest.CaptureFixture
) -> None:
    server.files |= {"/voc/train.lmdb": payload, "/voc/val.lmdb": payload}
    download_cli.main(
        ["voc", "--root", str(tmp_path / "data"), "--base-url", server.url(""), "--no-progress"]
    )
    captured = capsys.readouterr()
    assert (tmp_path / "data" / "voc" / "train.lmdb").read_bytes() == payload
    assert sha256(payload) in captured.out
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2 and all("cannot be verified" in line for line in warnings)


def test_command_404_is_one_line_and_exit_1(
    tmp_path: Path, server: FileServer, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as stopped:
        download_cli.main(["coco", "--root", str(tmp_path), "--base-url", server.url(""), "--no-progress"])
    assert stopped.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("download: error: ") and "HTTP 404" in lines[0], lines
    assert "coco/train.lmdb" in lines[0]


def test_command_lists_the_table_marking_unverified_entries(capsys: pytest.CaptureFixture) -> None:
    download_cli.main(["--list"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(PUBLISHED_FILES)
    assert all("(unverified)" in line and "sha256 unknown" in line for line in lines)


def test_command_help_names_the_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr("sys.argv", ["/repo/cli/download.py"])
    with pytest.raises(SystemExit) as stopped:
        download_cli.main(["--help"])
    assert stopped.value.code == 0
    assert "usage: python -m cli.download " in capsys.readouterr().out


def test_unknown_dataset_is_a_parser_error(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        download_cli.main(["imagenet"])
    assert stopped.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_published_file_path_is_the_reader_layout() -> None:
    row = PublishedFile("movi_d", "val", "https://example.invalid/x", None, None, url_verified=False)
    assert row.relative_path == Path("movi_d") / "val.lmdb"
