"""Remote storage as a source: fsspec URLs, against fsspec's memory:// and a real S3 server (moto) in its own process.

Faults the server cannot be asked for (access denied, a connection dropped
mid-body) come from a small proxy in front of it that answers or cuts
requests for chosen keys, exactly as S3 or a failing network would.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import io
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import fsspec
import numpy as np
import pytest
from conftest import ImageFactory

from vakta import testsignature
from vakta.containers import reader_for
from vakta.findings import Finding
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.pipeline import Scanner, hash_item, hash_tree
from vakta.signals.model import HashOptions
from vakta.sources import remote, source_for, sources
from vakta.sources.filesystem import SOURCE as FILESYSTEM
from vakta.sources.remote import SOURCE as REMOTE

if TYPE_CHECKING:
    from conftest import RunCli

s3fs = pytest.importorskip("s3fs")

BUCKET = "evidence"
FAULTS = "faults"
LARGE = 20 * 1024 * 1024
ODD_KEY = "cases/odd/ünïcødé ☃ %ff ?#+ ::x.png"


def _files() -> dict[str, bytes]:
    """The objects of the evidence bucket by key: nested prefixes, an odd key, an empty and a large object."""
    images = ImageFactory()
    rng = np.random.default_rng(7)
    return {
        "cases/2024/signature.jpg": testsignature.image_bytes(),
        "cases/2024/photos/beach.png": images.encode(images.pattern(11), "PNG"),
        "cases/2024/photos/deep/er/still.jpg": images.encode(images.pattern(12), "JPEG", quality=90),
        ODD_KEY: images.encode(images.pattern(13), "PNG"),
        "cases/empty.bin": b"",
        "cases/large/blob.bin": rng.integers(0, 256, LARGE, dtype=np.uint8).tobytes(),
        "other/outside.png": images.encode(images.pattern(14), "PNG"),
    }


FILES = _files()
IN_CASES = {k: v for k, v in FILES.items() if k.startswith("cases/")}


def _matcher() -> Matcher:
    return Matcher(ListIndex.build(testsignature.entry_rows(), videos=testsignature.video_entries()))


def _scan(targets: list[str], workers: int = 1) -> dict[str, Finding]:
    scanner = Scanner(_matcher(), HashOptions(), workers=workers)
    return {f.signals.path: f for f in scanner.scan(targets)}


# --------------------------------------------------------------------------- the S3 server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"moto_server did not answer on {url} within {seconds} s")


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server in its own process on a free port, holding the evidence bucket."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **AWS_ENV},
    )
    try:
        _wait_until_serving(url, process)
        fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=url, skip_instance_cache=True)
        for bucket in (BUCKET, FAULTS):
            fs.mkdir(bucket)
        for key, data in FILES.items():
            fs.pipe(f"{BUCKET}/{key}", data)
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's endpoint in the standard ``AWS_ENDPOINT_URL`` (as a user would set it), fake credentials."""
    for name, value in {**AWS_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
        monkeypatch.setenv(name, value)
    _forget_connections()
    return s3_server


def _forget_connections() -> None:
    """fsspec reuses a filesystem per set of arguments; the endpoint comes from the environment here."""
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def local_copy(tmp_path: Path) -> Path:
    """The same files on local disk, to compare a local scan with."""
    root = tmp_path / "local"
    for key, data in IN_CASES.items():
        path = root / key.removeprefix("cases/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _by_relative(findings: dict[str, Finding], base: str) -> dict[str, dict[str, Any]]:
    """Findings keyed on the path below ``base``, without the path itself."""
    out = {}
    for path, finding in findings.items():
        record = finding.to_dict()
        record.pop("path")
        out[path.removeprefix(base).lstrip("/")] = record
    return out


# --------------------------------------------------------------------------- a proxy that fails on purpose


_REQUEST = re.compile(rb"(GET|HEAD|PUT|POST|DELETE) (\S+) HTTP/1\.1\r\n")
_DENIED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)
_DENIED_HEAD = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_DENIED_BODY)
)


@dataclass
class FaultyProxy:
    """Forwards to the S3 server; records requests, answers 403 or drops the connection for chosen keys."""

    upstream: int
    #: Request targets containing one of these are answered "403 AccessDenied".
    deny: set[str] = field(default_factory=set)
    #: GETs whose target contains a key here pass that many response bytes, then the connection drops.
    cut: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def gets(self, key: str) -> int:
        return sum(1 for method, target in self.requests if method == "GET" and key in target)

    def close(self) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream))
        budget: list[int | None] = [None]  # response bytes left before the cut, for the current request
        threading.Thread(target=self._responses, args=(upstream, client, budget), daemon=True).start()
        try:
            while data := client.recv(1 << 16):
                if match := _REQUEST.search(data):
                    method, target = match.group(1).decode(), unquote(match.group(2).decode())
                    self.requests.append((method, target))
                    if any(key in target for key in self.deny):
                        client.sendall(_DENIED_HEAD + (b"" if method == "HEAD" else _DENIED_BODY))
                        break
                    budget[0] = next(
                        (n for k, n in self.cut.items() if k in target and method == "GET"), None
                    )
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _drop(client, upstream)

    @staticmethod
    def _responses(upstream: socket.socket, client: socket.socket, budget: list[int | None]) -> None:
        try:
            while data := upstream.recv(1 << 16):
                left = budget[0]
                if left is not None:
                    data = data[:left]
                    budget[0] = left - len(data)
                client.sendall(data)
                if budget[0] == 0:
                    break
        except OSError:
            pass
        finally:
            _drop(client, upstream)


def _drop(*connections: socket.socket) -> None:
    for conn in connections:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()


@pytest.fixture
def proxy(s3: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultyProxy]:
    """The S3 server behind a :class:`FaultyProxy`, which every new connection goes through."""
    faulty = FaultyProxy(int(s3.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", faulty.url)
    _forget_connections()
    yield faulty
    faulty.close()
    _forget_connections()


def _put(s3: str, objects: dict[str, bytes]) -> Any:
    fs = s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=s3, skip_instance_cache=True)
    for key, data in objects.items():
        fs.pipe(key, data)
    return fs


# --------------------------------------------------------------------------- which source reads what


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/mnt/evidence", "file"),
        ("relative/folder", "file"),
        ("notes::draft.txt", "file"),
        ("file:///mnt/evidence", "file"),
        ("s3://bucket/prefix", "remote"),
        ("S3://bucket", "remote"),
        ("memory://x", "remote"),
        ("gcs://bucket", "remote"),
        ("nosuchprotocol://x", "remote"),
        ("simplecache::s3://bucket", "remote"),
    ],
)
def test_exactly_one_source_handles_each_target(target: str, expected: str) -> None:
    handlers = [s.name for s in (FILESYSTEM, REMOTE) if s.handles(target)]
    assert handlers == [expected]  # so the registry's order can never matter
    assert source_for(target).name == expected
    assert dict(sources)[expected] is (FILESYSTEM if expected == "file" else REMOTE)


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("nosuchprotocol://bucket/x", "unknown storage protocol nosuchprotocol://"),
        ("simplecache::s3://bucket/x", "chained fsspec URLs"),
        ("./odd://name", "file://PATH"),
        ("filecache://bucket/x", "copies what it reads to local disk"),
    ],
)
def test_a_target_no_backend_can_read_is_one_error_item(target: str, says: str) -> None:
    (item,) = REMOTE.items(target)
    assert item.path == target.encode()
    assert item.error is not None and says in item.error
    assert item.opener is None


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_a_missing_backend_package_is_named() -> None:
    (item,) = REMOTE.items("gcs://bucket/x")
    assert item.error is not None and "gcsfs" in item.error and "not installed" in item.error


def test_s3_without_s3fs_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(protocol: str) -> Any:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(remote.fsspec, "get_filesystem_class", missing)
    (item,) = REMOTE.items("s3://bucket/x")
    assert item.error is not None
    assert "s3fs" in item.error and "pip install 'vakta[s3]'" in item.error


# --------------------------------------------------------------------------- memory://


@pytest.fixture
def memory() -> Iterator[Any]:
    fs = fsspec.filesystem("memory")
    fs.pipe("/vakta-test/a/z.png", ImageFactory().encode(ImageFactory().pattern(3), "PNG"))
    fs.pipe("/vakta-test/a/b/sig.jpg", testsignature.image_bytes())
    fs.pipe("/vakta-test/a/empty", b"")
    fs.pipe("/vakta-test/top.txt", b"plain text\n")
    yield fs
    fs.rm("/vakta-test", recursive=True)


def test_memory_urls_sizes_and_depth_first_order(memory: Any) -> None:
    items = list(REMOTE.items("memory://vakta-test/"))
    assert [i.path for i in items] == [
        b"memory://vakta-test/top.txt",
        b"memory://vakta-test/a/empty",
        b"memory://vakta-test/a/z.png",
        b"memory://vakta-test/a/b/sig.jpg",
    ]  # each folder's objects in name order, then its subfolders, as the filesystem source walks
    assert [i.size for i in items] == [
        11,
        0,
        len(memory.cat("/vakta-test/a/z.png")),
        len(testsignature.image_bytes()),
    ]
    assert all(i.opener is not None and not i.error and not i.cacheable for i in items)
    assert all(i.mtime_ns > 0 for i in items)
    with items[-1].open() as stream:
        assert stream.read() == testsignature.image_bytes()


def test_memory_single_object_and_missing_target(memory: Any) -> None:
    (item,) = REMOTE.items("memory://vakta-test/top.txt")
    assert (item.path, item.size) == (b"memory://vakta-test/top.txt", 11)
    (missing,) = REMOTE.items("memory://vakta-test/nothing-here")
    assert missing.path == b"memory://vakta-test/nothing-here"
    assert missing.error is not None and missing.error.startswith(
        "cannot list: no such bucket, folder or object"
    )


def test_memory_items_pickle_for_worker_processes(memory: Any) -> None:
    item = next(i for i in REMOTE.items("memory://vakta-test") if i.path.endswith(b"sig.jpg"))
    copy = pickle.loads(pickle.dumps(item))
    assert copy.path == item.path
    with copy.open() as stream:
        assert hashlib.sha256(stream.read()).hexdigest() == testsignature.records()[0].hashes["sha256"]


def test_memory_scan_matches_the_test_signature_with_the_url_as_path(memory: Any) -> None:
    findings = _scan(["memory://vakta-test"])
    sig = findings["memory://vakta-test/a/b/sig.jpg"]
    assert sig.matched and {m.meta.list_name for m in sig.matches} == {testsignature.LIST_NAME}
    assert sig.signals.location == "memory://vakta-test/a/b/sig.jpg" and sig.signals.inside == []
    assert not any(f.matched for path, f in findings.items() if path != sig.signals.path)
    assert not any(f.failed for f in findings.values())
    assert findings["memory://vakta-test/a/empty"].signals.size == 0


def test_memory_object_deleted_after_listing_is_an_error_on_it(memory: Any) -> None:
    items = list(REMOTE.items("memory://vakta-test"))
    memory.rm("/vakta-test/a/z.png")
    results = {i.path: hash_item(i, HashOptions()) for i in items}
    gone = results[b"memory://vakta-test/a/z.png"]
    assert gone.errors and "no longer exists" in gone.errors[0] and gone.md5 is None
    assert all(not s.errors for p, s in results.items() if p != b"memory://vakta-test/a/z.png")


# --------------------------------------------------------------------------- S3


def test_s3_listing_urls_sizes_and_times(s3: str) -> None:
    items = list(REMOTE.items(f"s3://{BUCKET}/cases/"))
    by_url = {i.path.decode(): i for i in items}
    assert set(by_url) == {f"s3://{BUCKET}/{key}" for key in IN_CASES}  # not other/outside.png
    for key, data in IN_CASES.items():
        item = by_url[f"s3://{BUCKET}/{key}"]
        assert (item.size, item.error, item.cacheable) == (len(data), None, False)
        assert abs(item.mtime_ns / 1e9 - time.time()) < 3600
    assert by_url[f"s3://{BUCKET}/{ODD_KEY}"].display == (f"s3://{BUCKET}/{ODD_KEY}", None)
    opener = items[0].opener
    assert isinstance(opener, functools.partial)
    assert not opener.args[0].dircache  # listings are not kept: a bucket of millions stays small


def test_s3_items_open_in_a_fresh_process(s3: str) -> None:
    (item,) = REMOTE.items(f"s3://{BUCKET}/cases/2024/signature.jpg")
    child = "import hashlib, pickle, sys; print(hashlib.sha256(pickle.load(sys.stdin.buffer).open().read()).hexdigest())"
    done = subprocess.run(
        [sys.executable, "-c", child], input=pickle.dumps(item), capture_output=True, timeout=60, check=True
    )
    assert done.stdout.decode().strip() == hashlib.sha256(testsignature.image_bytes()).hexdigest()


def test_s3_scan_finds_the_signature_and_equals_a_local_scan(s3: str, local_copy: Path) -> None:
    url = f"s3://{BUCKET}/cases"
    remote_findings = _scan([url])
    local_findings = _scan([str(local_copy)])
    sig = remote_findings[f"{url}/2024/signature.jpg"]
    assert sig.matched and sig.signals.location == f"{url}/2024/signature.jpg"
    assert {m.signal for m in sig.matches} >= {"md5", "sha1", "sha256", "pdq"}
    remote_records = _by_relative(remote_findings, url)
    assert remote_records == _by_relative(local_findings, str(local_copy))
    assert len(remote_records) == len(IN_CASES)
    large = remote_records["large/blob.bin"]
    assert (large["size"], large["sha256"]) == (
        LARGE,
        hashlib.sha256(FILES["cases/large/blob.bin"]).hexdigest(),
    )
    assert remote_records["empty.bin"]["size"] == 0


def test_s3_scan_with_two_worker_processes(s3: str) -> None:
    findings = _scan([f"s3://{BUCKET}/cases"], workers=2)
    assert set(findings) == {f"s3://{BUCKET}/{key}" for key in IN_CASES}
    assert findings[f"s3://{BUCKET}/cases/2024/signature.jpg"].matched
    assert not any(f.failed for f in findings.values())


def test_s3_missing_bucket_and_prefix_are_errors_on_the_target(s3: str) -> None:
    findings = _scan(
        ["s3://no-such-bucket/x", f"s3://{BUCKET}/no/such/prefix", f"s3://{BUCKET}/cases/2024/signature.jpg"]
    )
    assert "no such bucket" in findings["s3://no-such-bucket/x"].signals.errors[0]
    assert "no such bucket, folder or object" in findings[f"s3://{BUCKET}/no/such/prefix"].signals.errors[0]
    assert findings[f"s3://{BUCKET}/cases/2024/signature.jpg"].matched  # the scan went on


def test_s3_streams_seek_as_a_zip_reader_needs(s3: str) -> None:
    members = {"a.txt": b"alpha" * 1000, "sig.jpg": testsignature.image_bytes()}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    _put(s3, {f"{FAULTS}/archive.zip": buffer.getvalue()})
    (item,) = REMOTE.items(f"s3://{FAULTS}/archive.zip")
    with item.open() as stream, zipfile.ZipFile(stream) as archive:  # reads the end, then each member
        assert {name: archive.read(name) for name in archive.namelist()} == members
    (signals,) = hash_tree(item, HashOptions())
    assert signals.sha256 == hashlib.sha256(buffer.getvalue()).hexdigest()


def test_s3_archive_members_are_found_with_their_location_chain(s3: str) -> None:
    if reader_for("application/zip") is None:
        pytest.skip("no ZIP reader registered")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("inner/sig.jpg", testsignature.image_bytes())
        archive.writestr("inner/notes.txt", b"nothing here\n")
    _put(s3, {f"{FAULTS}/zipped/case.zip": buffer.getvalue()})
    url = f"s3://{FAULTS}/zipped/case.zip"
    findings = list(Scanner(_matcher(), HashOptions()).scan([f"s3://{FAULTS}/zipped"]))
    assert [f.signals.path for f in findings] == [url] * 3
    (member,) = (f for f in findings if f.signals.inside and f.signals.inside[-1].endswith("sig.jpg"))
    assert member.matched and member.signals.location == f"{url} > {' > '.join(member.signals.inside)}"
    assert member.signals.parent_md5 == hashlib.md5(buffer.getvalue()).hexdigest()
    assert not any(f.failed for f in findings)


def test_s3_large_object_is_read_in_few_requests_and_a_zip_end_stays_cached(
    s3: str, proxy: FaultyProxy
) -> None:
    (item,) = REMOTE.items(f"s3://{BUCKET}/cases/large/blob.bin")
    signals = hash_item(item, HashOptions())
    assert signals.sha256 == hashlib.sha256(FILES["cases/large/blob.bin"]).hexdigest()
    blocks = -(-LARGE // remote.BLOCK_SIZE)
    assert proxy.gets("large/blob.bin") == blocks  # one ranged GET per block, each block once
    before = proxy.gets("large/blob.bin")
    with item.open() as stream:
        stream.seek(-22, io.SEEK_END)
        tail = stream.read()
        stream.seek(-remote.BLOCK_SIZE // 2, io.SEEK_END)
        stream.read(1024)
        stream.seek(0)
        stream.read(1024)
        stream.seek(-22, io.SEEK_END)
        assert stream.read() == tail == FILES["cases/large/blob.bin"][-22:]
    assert proxy.gets("large/blob.bin") - before == 2  # the last block and the first: nothing twice


def test_s3_access_denied_on_a_folder_and_an_object_the_rest_goes_on(
    s3: str, proxy: FaultyProxy, deadline: Callable[[int], Any]
) -> None:
    images = ImageFactory()
    _put(
        s3,
        {
            f"{FAULTS}/mixed/ok.png": images.encode(images.pattern(21), "PNG"),
            f"{FAULTS}/mixed/secret.jpg": testsignature.image_bytes(),
            f"{FAULTS}/mixed/denied/hidden.png": images.encode(images.pattern(22), "PNG"),
            f"{FAULTS}/mixed/zz/sig.jpg": testsignature.image_bytes(),
        },
    )
    proxy.deny = {"secret.jpg", "prefix=mixed/denied/"}
    with deadline(60):
        findings = _scan([f"s3://{FAULTS}/mixed"])
    base = f"s3://{FAULTS}/mixed"
    assert set(findings) == {f"{base}/ok.png", f"{base}/secret.jpg", f"{base}/denied", f"{base}/zz/sig.jpg"}
    denied_folder = findings[f"{base}/denied"].signals.errors
    assert denied_folder and denied_folder[0].startswith("cannot list: access denied")
    secret = findings[f"{base}/secret.jpg"].signals
    assert secret.errors and "access denied" in secret.errors[0] and secret.md5 is None
    assert findings[f"{base}/zz/sig.jpg"].matched
    assert not findings[f"{base}/ok.png"].failed


def test_s3_connection_dropped_mid_read_is_an_error_on_that_object(
    s3: str, proxy: FaultyProxy, deadline: Callable[[int], Any]
) -> None:
    rng = np.random.default_rng(3)
    flaky = rng.integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    _put(s3, {f"{FAULTS}/net/a-flaky.bin": flaky, f"{FAULTS}/net/b-sig.jpg": testsignature.image_bytes()})
    proxy.cut = {"a-flaky.bin": 1 << 20}
    started = time.monotonic()
    with deadline(60):
        findings = _scan([f"s3://{FAULTS}/net"])
    flaky_signals = findings[f"s3://{FAULTS}/net/a-flaky.bin"].signals
    assert flaky_signals.errors and "network or storage failure" in flaky_signals.errors[0], (
        flaky_signals.errors
    )
    assert flaky_signals.md5 is None
    assert proxy.gets("a-flaky.bin") >= 2  # the backend retried before giving up
    assert findings[f"s3://{FAULTS}/net/b-sig.jpg"].matched
    assert time.monotonic() - started < 30


def test_s3_object_deleted_after_listing_is_an_error_on_it(s3: str) -> None:
    fs = _put(
        s3,
        {
            f"{FAULTS}/gone/vanishing.png": b"\x89PNG soon gone",
            f"{FAULTS}/gone/stays.jpg": testsignature.image_bytes(),
        },
    )
    items = list(REMOTE.items(f"s3://{FAULTS}/gone"))
    fs.rm(f"{FAULTS}/gone/vanishing.png")
    results = {i.path.decode(): hash_item(i, HashOptions()) for i in items}
    gone = results[f"s3://{FAULTS}/gone/vanishing.png"]
    assert gone.errors and gone.errors[0].startswith("cannot read: no longer exists"), gone.errors
    assert not results[f"s3://{FAULTS}/gone/stays.jpg"].errors


def test_s3_object_replaced_while_it_is_read_is_an_error(s3: str) -> None:
    rng = np.random.default_rng(5)
    first = rng.integers(0, 256, 2 * remote.BLOCK_SIZE, dtype=np.uint8).tobytes()
    fs = _put(s3, {f"{FAULTS}/race/object.bin": first})
    (item,) = REMOTE.items(f"s3://{FAULTS}/race/object.bin")
    with item.open() as stream:
        assert stream.read(1024) == first[:1024]
        fs.pipe(f"{FAULTS}/race/object.bin", first[::-1])
        with pytest.raises(OSError, match="changed while it was being read"):
            stream.read()  # the next block would come from another object: refused, never mixed


# --------------------------------------------------------------------------- the command line


def test_cli_scan_s3_matches_with_url_paths_and_equals_a_local_scan(
    s3: str, local_copy: Path, run_vakta: RunCli
) -> None:
    url = f"s3://{BUCKET}/cases"
    local = run_vakta("scan", local_copy, "--all", "--workers", 1)
    assert local.exit_code == 1, local.stderr
    local_records = {r.pop("path").removeprefix(str(local_copy)).lstrip("/"): r for r in local.records()}
    for workers in (1, 2):
        result = run_vakta("scan", url, "--all", "--workers", workers)
        assert result.exit_code == 1, result.stderr  # a match
        records = {r["path"]: r for r in result.records()}
        sig = records[f"{url}/2024/signature.jpg"]
        assert {m["list"] for m in sig["matches"]} == {testsignature.LIST_NAME}
        assert f"{url}/{ODD_KEY.removeprefix('cases/')}" in records
        remote_records = {p.removeprefix(url).lstrip("/"): r for p, r in records.items()}
        for record in remote_records.values():
            record.pop("path")
        assert remote_records == local_records


def test_cli_scan_reports_unreadable_targets_and_goes_on(s3: str, run_vakta: RunCli) -> None:
    result = run_vakta(
        "scan", "nosuchprotocol://x/y", "s3://no-such-bucket/x", f"s3://{BUCKET}/cases/2024/photos", "--all"
    )
    assert result.exit_code == 2, result.stderr  # read errors, no match
    records = {r["path"]: r for r in result.records()}
    assert "unknown storage protocol" in records["nosuchprotocol://x/y"]["errors"][0]
    assert "no such bucket" in records["s3://no-such-bucket/x"]["errors"][0]
    assert not records[f"s3://{BUCKET}/cases/2024/photos/beach.png"]["errors"]
    assert not records[f"s3://{BUCKET}/cases/2024/photos/deep/er/still.jpg"]["errors"]


def test_cli_storage_options_from_fsspec_variables(
    s3: str, run_vakta: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", s3)
    result = run_vakta("scan", f"s3://{BUCKET}/cases/2024/photos", "--all")
    assert result.exit_code == 0, result.stderr
    assert len(result.records()) == 2 and not any(r["errors"] for r in result.records())
    # Unreachable storage, with botocore's retries cut down through the same mechanism: quick, one error.
    monkeypatch.setenv("FSSPEC_S3_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("FSSPEC_S3", '{"config_kwargs": {"retries": {"max_attempts": 1}}}')
    started = time.monotonic()
    result = run_vakta("scan", f"s3://{BUCKET}/cases", timeout=30)
    assert result.exit_code == 2, result.stderr
    (record,) = result.records()
    assert record["path"] == f"s3://{BUCKET}/cases"
    assert record["errors"][0].startswith("cannot list: network or storage failure: EndpointConnectionError")
    assert time.monotonic() - started < 15
