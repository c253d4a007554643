"""The ICAP service: RFC 3507 over a raw socket (previews, 204, chunked bodies, persistent
connections, hostile input), the decisions on bodies, and a real Squid in front of ``vakta icap``."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import http.client
import io
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import brotli
import pytest
import zstandard
from PIL import Image

from vakta import testsignature
from vakta.findings import Finding
from vakta.icap import codings, urls
from vakta.icap.alerts import AlertSink
from vakta.icap.cli import parse_listen
from vakta.icap.filter import Examiner, Policy, wanted, web_limits
from vakta.icap.protocol import Bounds, ProtocolError, chunked, parse_encapsulated
from vakta.icap.server import BLOCK_PAGE, PREVIEW_BYTES, IcapServer
from vakta.icap.urls import UrlIndex
from vakta.lists.store import EntryRow
from vakta.matching.index import ListIndex
from vakta.matching.matcher import Matcher
from vakta.notify.dispatch import Dispatcher
from vakta.signals.model import HashOptions, Signals

if TYPE_CHECKING:
    from conftest import ImageFactory, RunCli

HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
GET = b"GET http://example.test/%s HTTP/1.1\r\nHost: example.test\r\n\r\n"


def _matcher() -> Matcher:
    return Matcher(ListIndex.build(testsignature.entry_rows(), videos=testsignature.video_entries()))


def _examiner() -> Examiner:
    return Examiner(_matcher(), HashOptions(), None, web_limits(10.0))


def _big_signature() -> bytes:
    """The test signature upscaled to a PNG well over 64 KiB: matched by PDQ."""
    with Image.open(io.BytesIO(testsignature.image_bytes())) as im:
        out = io.BytesIO()
        im.convert("RGB").resize((im.width * 3, im.height * 3)).save(out, "PNG")
    assert out.tell() > 200_000
    return out.getvalue()


def _resized_signature() -> bytes:
    image = Image.open(io.BytesIO(testsignature.image_bytes())).convert("RGB")
    out = io.BytesIO()
    image.resize((image.width * 2 // 3, image.height * 2 // 3)).save(out, "JPEG", quality=80)
    return out.getvalue()


def _zip(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", "hello")
        archive.writestr(name, data)
    return out.getvalue()


@dataclass
class Running:
    server: IcapServer
    port: int
    alert_log: Path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start an :class:`IcapServer` on a loopback port, on its own event loop thread."""
    started: list[tuple[asyncio.AbstractEventLoop, threading.Thread, IcapServer, asyncio.Server]] = []

    def start(
        policy: Policy | None = None, bounds: Bounds | None = None, urls: UrlIndex | None = None
    ) -> Running:
        log_path = tmp_path / f"alerts-{len(started)}.jsonl"
        server = IcapServer(_examiner(), AlertSink(log_path), policy, bounds, urls=urls)
        loop = asyncio.new_event_loop()
        listener = loop.run_until_complete(server.start("127.0.0.1", 0))
        port = listener.sockets[0].getsockname()[1]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        started.append((loop, thread, server, listener))
        return Running(server, port, log_path)

    yield start
    for loop, thread, server, listener in started:
        asyncio.run_coroutine_threadsafe(_shut_down(listener, server), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        server.close()


async def _shut_down(listener: asyncio.Server, server: IcapServer) -> None:
    listener.close()
    await server.disconnect()


class Client:
    """A raw ICAP client on one (persistent) connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise EOFError(f"closed before {marker!r}: {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise EOFError("closed early")
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def response(self) -> tuple[int, dict[str, str], bytes, bytes | None]:
        """Status, ICAP headers, encapsulated HTTP head and the de-chunked body (None if none)."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        sections = parse_encapsulated(headers.get("encapsulated", "")) if status != 100 else []
        http_head = b""
        if len(sections) > 1:
            http_head = self.read_exactly(sections[-1][1])
        body = None
        if sections and sections[-1][0] == "res-body":
            body = b""
            while (size := int(self.read_until(b"\r\n").strip(), 16)) > 0:
                body += self.read_exactly(size)
                assert self.read_exactly(2) == b"\r\n"
            assert self.read_exactly(2) == b"\r\n"
        return status, headers, http_head, body

    def closed(self) -> bool:
        """The server closed the connection (after whatever it sent last)."""
        try:
            return not self._fill()
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def respmod(
    port: int,
    body: bytes,
    ctype: bytes = b"image/jpeg",
    *,
    name: bytes = b"x",
    allow_204: bool = True,
    preview: int | None = None,
    extra: bytes = b"",
    http_extra: bytes = b"",
) -> bytes:
    """A RESPMOD request; with ``preview``, only the preview part of the body (the caller sends the rest)."""
    req = GET % name
    res = (HTTP_OK % (ctype, len(body)))[:-2] + http_extra + b"\r\n"
    headers = b"RESPMOD icap://127.0.0.1:%d/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n" % port
    headers += b"Allow: 204\r\n" if allow_204 else b""
    headers += extra
    headers += b"Encapsulated: req-hdr=0, res-hdr=%d, res-body=%d\r\n" % (len(req), len(req) + len(res))
    if preview is None:
        return headers + b"\r\n" + req + res + chunked(body)
    headers += b"Preview: %d\r\n\r\n" % preview
    part = body[:preview]
    ending = b"0; ieof\r\n\r\n" if len(body) <= preview else b"0\r\n\r\n"
    return headers + req + res + (b"%x\r\n%s\r\n" % (len(part), part) if part else b"") + ending


def test_options_advertise_preview_and_204(serve: Callable[..., Running]) -> None:
    running = serve()
    client = Client(running.port)
    client.send(b"OPTIONS icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    status, headers, _, body = client.response()
    assert status == 200 and body is None
    assert headers["methods"] == "RESPMOD" and headers["allow"] == "204" and int(headers["preview"]) > 0
    assert headers["istag"]


def test_signature_blocked_benign_passed_on_one_connection(
    serve: Callable[..., Running], images: ImageFactory
) -> None:
    running = serve()
    client = Client(running.port)
    benign = images.encode(images.pattern(3), "JPEG")
    client.send(respmod(running.port, benign, name=b"benign.jpg"))
    assert client.response()[0] == 204
    client.send(
        respmod(
            running.port,
            testsignature.image_bytes(),
            name=b"sig.jpg",
            extra=b"X-Client-IP: 10.1.2.3\r\nX-Authenticated-User: alice\r\n",
        )
    )
    status, _, http_head, body = client.response()
    assert status == 200 and http_head.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert body == BLOCK_PAGE.encode()
    client.send(respmod(running.port, _resized_signature(), name=b"small.jpg"))
    assert client.response()[2].startswith(b"HTTP/1.1 403")
    assert running.server.counts["blocked"] == 2 and running.server.counts["passed"] == 1
    alerts = [json.loads(line) for line in running.alert_log.read_text().splitlines()]
    assert [a["path"] for a in alerts] == ["http://example.test/sig.jpg", "http://example.test/small.jpg"]
    first = alerts[0]
    assert (first["host"], first["user"], first["storage"]) == ("10.1.2.3", "alice", "network")
    assert first["md5"] == testsignature.records()[0].hashes["md5"]
    assert {m["list"] for m in first["matches"]} == {testsignature.LIST_NAME}
    assert {m["signal"] for m in alerts[1]["matches"]} == {"pdq"}
    assert "data" not in first and testsignature.image_bytes()[:64].hex() not in json.dumps(alerts)


def test_without_allow_204_the_response_comes_back_unchanged(
    serve: Callable[..., Running], images: ImageFactory
) -> None:
    running = serve()
    client = Client(running.port)
    benign = images.encode(images.noise(5, (300, 200)), "PNG")
    client.send(respmod(running.port, benign, b"image/png", allow_204=False))
    status, _, http_head, body = client.response()
    assert status == 200 and body == benign
    assert http_head == HTTP_OK % (b"image/png", len(benign))
    page = b"<html>" + b"x" * 100_000 + b"</html>"
    client.send(respmod(running.port, page, b"text/html", allow_204=False))
    assert client.response()[3] == page


def test_preview_page_answered_before_the_rest(serve: Callable[..., Running]) -> None:
    running = serve()
    client = Client(running.port)
    page = b"<html><body>" + b"hello " * 5000 + b"</body></html>"
    client.send(respmod(running.port, page, b"text/html", preview=1024))
    assert client.response()[0] == 204  # the proxy keeps the rest: nothing more is sent
    client.send(respmod(running.port, b"<p>short</p>", b"text/html", preview=1024))  # whole body, ieof
    assert client.response()[0] == 204


def test_preview_image_continues_then_blocks(serve: Callable[..., Running]) -> None:
    running = serve()
    client = Client(running.port)
    image = testsignature.image_bytes()
    client.send(respmod(running.port, image, preview=512))
    assert client.response()[0] == 100
    client.send(chunked(image[512:]))
    status, _, http_head, body = client.response()
    assert status == 200 and http_head.startswith(b"HTTP/1.1 403") and body == BLOCK_PAGE.encode()


def test_archive_member_blocked_with_its_location(serve: Callable[..., Running]) -> None:
    running = serve()
    client = Client(running.port)
    client.send(respmod(running.port, _zip("pics/a.jpg", testsignature.image_bytes()), b"application/zip"))
    assert client.response()[2].startswith(b"HTTP/1.1 403")
    (alert,) = [json.loads(line) for line in running.alert_log.read_text().splitlines()]
    assert alert["inside"] == ["pics/a.jpg"]
    assert alert["location"] == "http://example.test/x > pics/a.jpg"


def test_body_cache_hashes_a_body_once_and_matches_it_against_the_lists_in_force(
    images: ImageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vakta.icap import filter as icap_filter
    from vakta.icap.bodycache import BodyCache

    hashed: list[str] = []
    real = icap_filter.hash_tree

    def counting(item: Any, *args: Any) -> Any:
        hashed.append(item.display[0])
        return real(item, *args)

    monkeypatch.setattr(icap_filter, "hash_tree", counting)
    cache = BodyCache(2)
    signature, benign = testsignature.image_bytes(), images.encode(images.pattern(3), "PNG")
    examine = Examiner(_matcher(), HashOptions(), None, web_limits(10.0), cache)
    first = examine(signature, "http://a.example/sig.jpg")
    again = examine(signature, "http://b.example/copy.jpg")
    assert hashed == ["http://a.example/sig.jpg"] and (cache.hits, cache.misses) == (1, 1)
    assert [f.signals.path for f in again] == ["http://b.example/copy.jpg"]
    assert again[0].matched and again[0].signals.md5 == first[0].signals.md5
    assert first[0].signals.path == "http://a.example/sig.jpg"  # the cached copy was not renamed
    # The benign body is remembered too; a list naming it afterwards matches it at once.
    assert not examine(benign, "http://a.example/b.png")[0].matched
    listed = EntryRow("new", "md5", hashlib.md5(benign).digest(), "e1", "1", None, "text", "t")
    updated = Examiner(
        Matcher(ListIndex.build([*testsignature.entry_rows(), listed])),
        HashOptions(),
        None,
        web_limits(10.0),
        cache,
    )
    assert updated(benign, "http://c.example/b.png")[0].matched
    assert len(hashed) == 2
    # Least recently used out: a third body pushes out the signature (2 entries).
    examine(images.encode(images.pattern(4), "PNG"), "http://a.example/c.png")
    examine(signature, "http://a.example/sig.jpg")
    assert len(hashed) == 4


def test_body_cache_keeps_the_matches_of_the_lists_in_force(images: ImageFactory) -> None:
    """A body seen again is not matched again while the same lists are in force, and is when they change."""
    from vakta.icap.bodycache import BodyCache

    matcher = _matcher()
    matched: list[str | None] = []
    real = matcher.match

    def counting(signals: Signals) -> Any:
        matched.append(signals.path)
        return real(signals)

    matcher.match = counting  # type: ignore[method-assign]
    cache = BodyCache()
    examine = Examiner(matcher, HashOptions(), None, web_limits(10.0), cache)
    signature = testsignature.image_bytes()
    first = examine(signature, "http://a.example/sig.jpg")
    again = examine(signature, "http://b.example/sig.jpg")
    assert matched == ["http://a.example/sig.jpg"]
    assert again[0].matched and again[0].matches == first[0].matches
    assert again[0].matches is not first[0].matches  # a copy: the cached list stays as found
    other = Examiner(_matcher(), HashOptions(), None, web_limits(10.0), cache)
    assert other(signature, "http://c.example/sig.jpg")[0].matched
    assert examine(signature, "http://d.example/sig.jpg")[0].matched
    assert matched == [
        "http://a.example/sig.jpg",
        "http://d.example/sig.jpg",
    ]  # the other lists' answer was not used


def test_recall_answers_a_remembered_body_without_hashing_it(images: ImageFactory) -> None:
    """The server's in-loop lookup: findings for a body seen under the same lists, else None and the key."""
    from vakta.icap.bodycache import BodyCache

    cache = BodyCache()
    examine = Examiner(_matcher(), HashOptions(), None, web_limits(10.0), cache)
    signature = testsignature.image_bytes()
    key, nothing = examine.recall(signature, "http://a.example/sig.jpg")
    assert nothing is None and key == cache.key(signature) and len(key) == 32
    first = examine(signature, "http://a.example/sig.jpg", key)
    _, again = examine.recall(signature, "http://b.example/again.jpg")
    assert again is not None and [f.signals.path for f in again] == ["http://b.example/again.jpg"]
    assert again[0].matched and again[0].matches == first[0].matches
    assert again[0].signals.md5 == first[0].signals.md5 and again[0].signals.pdq == first[0].signals.pdq
    other = Examiner(_matcher(), HashOptions(), None, web_limits(10.0), cache)
    assert other.recall(signature, "http://c.example/x.jpg")[1] is None  # other lists: match on the pool
    benign = images.encode(images.pattern(5), "PNG")
    key, _ = examine.recall(benign, "http://a.example/b.png")
    assert not examine(benign, "http://a.example/b.png", key)[0].matched
    hits = cache.hits
    assert examine.recall(benign, "http://b.example/b.png") == (key, [])  # seen clean: nothing to name
    assert cache.hits == hits + 1
    assert other.recall(benign, "http://c.example/b.png")[1] is None


def test_warm_up_checks_the_test_picture() -> None:
    """The service's start: the test picture matches the built-in list, and no other."""
    assert _examiner().warm_up()
    assert not Examiner(Matcher(ListIndex.build([])), HashOptions(), None, web_limits(10.0)).warm_up()


def test_body_cache_keeps_no_signals_with_errors() -> None:
    from vakta.icap.bodycache import BodyCache

    cache = BodyCache()
    examine = Examiner(_matcher(), HashOptions(), None, web_limits(10.0), cache)
    broken = b"\x89PNG\r\n\x1a\n" + b"\0" * 100  # a PNG signature and nothing decodable
    assert examine(broken, "http://a.example/x.png")[0].signals.errors
    assert cache.get(cache.key(broken), "x") is None


def test_examiner_uses_the_scan_pipeline() -> None:
    findings = _examiner()(_zip("b.jpg", testsignature.image_bytes()), "http://h/a.zip")
    assert [f.signals.location for f in findings] == [
        "http://h/a.zip",
        "http://h/a.zip > readme.txt",
        "http://h/a.zip > b.jpg",
    ]
    assert [f.matched for f in findings] == [False, False, True]
    assert findings[2].signals.parent_md5 == findings[0].signals.md5


def test_wanted_by_declared_type_or_content(images: ImageFactory) -> None:
    png = images.encode(images.gradient(), "PNG")
    assert wanted("image/webp", b"") and wanted("application/zip; x=y", b"")
    assert wanted("application/octet-stream", png) and wanted(None, _zip("a", b"b"))
    assert not wanted("text/html", b"<html>") and not wanted(None, b"plain text")
    gzipped_page = gzip.compress(b"<html>" * 100)
    assert wanted(None, gzipped_page) and not wanted("text/html", gzipped_page, codings.parse("gzip"))
    assert wanted("image/png", png, codings.parse("gzip")) and wanted(None, png, codings.parse("identity"))


def test_codings_undo_what_servers_apply() -> None:
    data = bytes(range(256)) * 400
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    coded = {
        "gzip": gzip.compress(data),
        "x-gzip": gzip.compress(data[:100]) + gzip.compress(data[100:]) + b"\0" * 8,  # two members, padding
        "deflate": zlib.compress(data),
        "br": brotli.compress(data),
        "zstd": zstandard.ZstdCompressor().compress(data),
    }
    for name, body in coded.items():
        assert codings.decode(body, (name,), len(data)) == data, name
    assert (
        codings.decode(raw.compress(data) + raw.flush(), ("deflate",), len(data)) == data
    )  # raw, as some send it
    assert codings.parse("GZIP, Br") == ("gzip", "br") and codings.parse(" identity ") == ()
    assert codings.decode(brotli.compress(gzip.compress(data)), codings.parse("gzip, br"), len(data)) == data
    jpeg = testsignature.image_bytes()
    assert codings.head(gzip.compress(jpeg)[:3000], ("gzip",), 64) == jpeg[:64]  # a preview: the start only
    assert codings.head(b"not gzip at all", ("gzip",), 64) is None
    assert codings.head(gzip.compress(jpeg), ("compress",), 64) is None


def test_coding_errors_are_values_and_bombs_stop_at_the_limit() -> None:
    zeros = b"\0" * (64 << 20)
    bombs = {
        "gzip": gzip.compress(zeros),
        "br": brotli.compress(zeros),
        "zstd": zstandard.ZstdCompressor().compress(zeros),
        "deflate": zlib.compress(zeros),
    }
    for name, bomb in bombs.items():
        assert len(bomb) < 1 << 20
        with pytest.raises(codings.CodingError, match="more than"):
            codings.decode(bomb, (name,), 1 << 20)
    whole = gzip.compress(bytes(range(256)) * 400)
    for bad, why in ((whole[:-20], "ends before"), (b"\x1f\x8b garbage", "gzip")):
        with pytest.raises(codings.CodingError, match=why):
            codings.decode(bad, ("gzip",), 1 << 20)
    with pytest.raises(codings.CodingError, match="not supported"):
        codings.decode(whole, ("compress",), 1 << 20)
    with pytest.raises(codings.CodingError, match="br"):
        codings.decode(brotli.compress(b"x" * 1000)[:-3], ("br",), 1 << 20)
    with pytest.raises(codings.CodingError, match="zstd: the data ends inside a zstd frame"):
        codings.decode(zstandard.ZstdCompressor().compress(os.urandom(5000))[:-10], ("zstd",), 1 << 20)


def test_a_coded_body_is_checked_as_the_browser_shows_it(
    serve: Callable[..., Running], images: ImageFactory
) -> None:
    """Compressing a listed picture (and calling it a page) does not get it past the filter."""
    running = serve()
    client = Client(running.port)
    signature = testsignature.image_bytes()
    sent = {
        b"gzip": gzip.compress(signature),
        b"br": brotli.compress(signature),
        b"gzip, br": brotli.compress(gzip.compress(signature)),
    }
    for coding, body in sent.items():
        header = b"Content-Encoding: %s\r\n" % coding
        client.send(respmod(running.port, body, b"text/html", name=b"sig", http_extra=header))
        assert client.response()[2].startswith(b"HTTP/1.1 403"), coding
        # In a preview too: sniffed from the decoded start, then fetched whole.
        client.send(respmod(running.port, body, b"text/html", name=b"sig", http_extra=header, preview=1024))
        assert client.response()[0] == 100
        rest = body[1024:]
        client.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
        assert client.response()[2].startswith(b"HTTP/1.1 403"), coding
    benign = gzip.compress(images.encode(images.pattern(4), "JPEG"))
    client.send(respmod(running.port, benign, b"image/jpeg", http_extra=b"Content-Encoding: gzip\r\n"))
    assert client.response()[0] == 204
    client.send(
        respmod(running.port, signature[:1000], b"image/jpeg", http_extra=b"Content-Encoding: gzip\r\n")
    )
    assert client.response()[0] == 204  # not gzip after all: an error on that body, which passes
    assert running.server.counts["blocked"] == 6 and running.server.counts["passed"] == 2


def test_oversize_passes_and_is_counted_or_blocked(serve: Callable[..., Running]) -> None:
    image = testsignature.image_bytes()
    passing = serve(Policy(max_body_bytes=len(image) // 2))
    client = Client(passing.port)
    client.send(respmod(passing.port, image))
    assert client.response()[0] == 204
    client.send(respmod(passing.port, image, allow_204=False))
    assert client.response()[3] == image
    assert passing.server.counts["unchecked"] == 2 and not passing.server.counts["blocked"]
    blocking = serve(Policy(max_body_bytes=1000, block_unchecked=True, block_status=451))
    client = Client(blocking.port)
    client.send(respmod(blocking.port, image, preview=100))
    assert client.response()[0] == 100
    client.send(chunked(image[100:]))
    assert client.response()[2].startswith(b"HTTP/1.1 451 ")


def test_bodies_held_at_once_are_bounded(serve: Callable[..., Running]) -> None:
    """A body that would pass the memory for all bodies held at once passes unchecked (or is blocked)."""
    image = testsignature.image_bytes()
    for policy, answer in (
        (Policy(max_held_bytes=len(image) * 3 // 2), 204),
        (Policy(max_held_bytes=len(image) * 3 // 2, block_unchecked=True), 200),
    ):
        running = serve(policy)
        first, second = Client(running.port), Client(running.port)
        head = respmod(running.port, image, name=b"first.jpg")[: -len(chunked(image))]
        part = len(image) * 3 // 4
        first.send(head + b"%x\r\n%s\r\n" % (part, image[:part]))  # most of a body, held while it arrives
        deadline = time.monotonic() + 5
        while running.server.held < len(image) // 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        second.send(respmod(running.port, image, name=b"second.jpg"))
        status, _, head, _ = second.response()
        assert status == answer and (status == 204 or head.startswith(b"HTTP/1.1 403"))
        first.send(chunked(image[part:]))
        assert first.response()[2].startswith(b"HTTP/1.1 403")  # checked: it was held
        deadline = time.monotonic() + 5  # given back once the exchange has ended (just after its answer)
        while running.server.held and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.server.counts["unchecked"] == 1 and running.server.held == 0


def _png_bomb() -> bytes:
    """A tiny PNG that claims 100,000 x 100,000 pixels (its data would be 1.25 GB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 12_501 * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_decompression_bomb_image_passes_with_an_error(serve: Callable[..., Running]) -> None:
    running = serve()
    client = Client(running.port)
    started = time.monotonic()
    client.send(respmod(running.port, _png_bomb(), b"image/png"))
    assert client.response()[0] == 204
    assert time.monotonic() - started < 5
    (finding,) = _examiner()(_png_bomb(), "http://h/bomb.png")
    assert finding.signals.errors and not finding.matched
    client.send(respmod(running.port, testsignature.image_bytes()))  # the connection still serves
    assert client.response()[2].startswith(b"HTTP/1.1 403")


def test_a_failing_check_passes_the_body_and_the_connection_goes_on(serve: Callable[..., Running]) -> None:
    running = serve()

    def broken(body: bytes, url: str) -> list[Finding]:
        raise RuntimeError("hasher crashed")

    running.server.examine = broken
    client = Client(running.port)
    client.send(respmod(running.port, testsignature.image_bytes()))
    assert client.response()[0] == 204
    client.send(b"OPTIONS icap://h/respmod ICAP/1.0\r\n\r\n")
    assert client.response()[0] == 200
    assert running.server.counts["unchecked"] == 1


BAD_REQUESTS = {
    "garbage": b"HELLO\r\n\r\n",
    "not icap": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad header": b"OPTIONS icap://h/respmod ICAP/1.0\r\nno colon here\r\n\r\n",
    "bad encapsulated": b"RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-body=5, res-hdr=0\r\n\r\n",
    "huge header": b"OPTIONS icap://h/respmod ICAP/1.0\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
    "many headers": b"OPTIONS icap://h/respmod ICAP/1.0\r\n" + b"X: y\r\n" * 500 + b"\r\n",
    "head past offset": b"RESPMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: res-hdr=0, res-body=10\r\n\r\n"
    + b"HTTP/1.1 200 OK\r\n\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_requests_get_400_and_a_closed_connection(serve: Callable[..., Running], name: str) -> None:
    running = serve()
    client = Client(running.port)
    client.send(BAD_REQUESTS[name])
    assert client.response()[0] == 400
    assert client.closed()


def test_lying_chunk_sizes(serve: Callable[..., Running]) -> None:
    running = serve()
    too_long = respmod(running.port, b"")[: -len(b"0\r\n\r\n")] + b"a\r\n" + b"x" * 30 + b"\r\n0\r\n\r\n"
    bad_hex = respmod(running.port, b"")[: -len(b"0\r\n\r\n")] + b"zz\r\nxx\r\n0\r\n\r\n"
    for data in (too_long, bad_hex):
        client = Client(running.port)
        client.send(data)
        assert client.response()[0] == 400 and client.closed()


def test_slow_and_endless_senders_cost_bounded_time(serve: Callable[..., Running]) -> None:
    running = serve(bounds=Bounds(header_seconds=0.5, body_read_seconds=0.5, idle_seconds=2))
    slow = Client(running.port)
    slow.send(b"OPTIONS icap://h/respmod ICAP/1.0\r\nHost")  # and never the rest
    endless = Client(running.port)
    endless.send(
        respmod(running.port, b"")[: -len(b"0\r\n\r\n")] + b"1000\r\n" + b"x" * 100
    )  # a chunk never ending
    other = Client(running.port)
    other.send(b"OPTIONS icap://h/respmod ICAP/1.0\r\n\r\n")
    assert other.response()[0] == 200  # served while the others hang
    started = time.monotonic()
    assert slow.response()[0] == 400 and endless.response()[0] == 400
    assert time.monotonic() - started < 3


def test_the_body_deadline_is_per_piece_and_moves_with_each_chunk(serve: Callable[..., Running]) -> None:
    """A body arriving slowly but steadily is read to its end; one that stops is cut off."""
    running = serve(bounds=Bounds(body_read_seconds=0.5))
    head = respmod(running.port, b"")[: -len(b"0\r\n\r\n")]
    steady, stalled = Client(running.port), Client(running.port)
    steady.send(head)
    stalled.send(head + b"a\r\n0123456789\r\n")
    for _ in range(5):  # 1.5 s in all, three times the deadline, a piece every 0.3 s
        time.sleep(0.3)
        steady.send(b"a\r\n0123456789\r\n")
    steady.send(b"0\r\n\r\n")
    assert steady.response()[0] == 204  # not a picture after all: passed
    assert stalled.response()[0] == 400 and stalled.closed()


def test_unknown_service_and_method(serve: Callable[..., Running]) -> None:
    running = serve()
    client = Client(running.port)
    client.send(b"OPTIONS icap://h/other ICAP/1.0\r\n\r\n")
    assert client.response()[0] == 404
    client.send(
        b"REQMOD icap://h/respmod ICAP/1.0\r\nEncapsulated: req-hdr=0, null-body=%d\r\n\r\n" % len(GET % b"x")
        + GET % b"x"
    )
    assert client.response()[0] == 405


def test_parse_helpers() -> None:
    assert parse_listen("0.0.0.0:1344") == ("0.0.0.0", 1344) and parse_listen("[::1]:99") == ("::1", 99)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_listen("localhost")
    assert parse_encapsulated("req-hdr=0, res-hdr=45, res-body=100") == [
        ("req-hdr", 0),
        ("res-hdr", 45),
        ("res-body", 100),
    ]
    for bad in ("req-hdr=0, res-body=10, res-hdr=20", "res-hdr=3, null-body=5", "foo=0", "res-hdr=0"):
        with pytest.raises(ProtocolError):
            parse_encapsulated(bad)


# --------------------------------------------------------------------------- URL lists and REQMOD


@pytest.mark.parametrize(
    "spelling",
    [
        "http://bad.example/dir/page.html",
        "HTTP://BAD.EXAMPLE:80/dir/page.html",
        "http://bad.example./dir/page.html#top",
        "bad.example/dir/%70age.html",
        "http://user:pw@Bad.Example/dir/./x/../page.html",
        "https://bad.example:443/dir/page.html",
    ],
)
def test_normalize_spellings(spelling: str) -> None:
    assert urls.normalize(spelling) == "bad.example/dir/page.html"


def test_normalize_keeps_what_matters() -> None:
    assert urls.normalize("http://a.example:8080/") == "a.example:8080/"
    assert urls.normalize("http://a.example/a b?q=1 2") == "a.example/a%20b?q=1%202"
    assert urls.normalize("http://bücher.example/") == "xn--bcher-kva.example/"
    with pytest.raises(urls.InvalidUrlError):
        urls.normalize("http:///nohost")


def test_lookup_by_url_prefix_host_and_digest() -> None:
    def row(kind: str, expression: str) -> EntryRow:
        return EntryRow("l", kind, urls.stored_value(kind, expression), expression, None, None, "url", "t")

    index = urls.UrlIndex(
        [
            row("url", "host.example/"),
            row("url", "site.example/private/"),
            row("url-md5", "hashed.example/a.jpg"),
        ]
    )
    assert [h.expression for h in index.lookup("http://www.HOST.example/anything?x")] == ["host.example/"]
    assert index.lookup("http://site.example/private/deep/x.jpg")[0].expression == "site.example/private/"
    assert not index.lookup("http://site.example/public/x.jpg") and not index.lookup(
        "http://site.example/private"
    )
    assert index.lookup("http://HASHED.example./%61.jpg?") and not index.lookup("http://hashed.example/b.jpg")
    assert not index.lookup("not a url at all:99999")


def _reqmod(port: int, url: bytes, *, allow_204: bool = True, extra: bytes = b"") -> bytes:
    req = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % url
    head = b"REQMOD icap://127.0.0.1/reqmod ICAP/1.0\r\nHost: 127.0.0.1\r\n" + (
        b"Allow: 204\r\n" if allow_204 else b""
    )
    return head + extra + b"Encapsulated: req-hdr=0, null-body=%d\r\n\r\n" % len(req) + req


def test_reqmod_blocks_listed_urls_and_passes_others(serve: Callable[..., Running]) -> None:
    rows = [EntryRow("urls", "url", b"bad.example/", "e1", "cat", None, "url", "2026-11-30")]
    running = serve(urls=urls.UrlIndex(rows))
    client = Client(running.port)
    client.send(b"OPTIONS icap://127.0.0.1/reqmod ICAP/1.0\r\n\r\n")
    status, headers, _, _ = client.response()
    assert status == 200 and headers["methods"] == "REQMOD" and headers["preview"] == "0"
    client.send(_reqmod(running.port, b"http://ok.example/", allow_204=True))
    assert client.response()[0] == 204
    client.send(_reqmod(running.port, b"http://ok.example/a", allow_204=False))
    status, _, http_head, body = client.response()
    assert status == 200 and http_head.startswith(b"GET http://ok.example/a HTTP/1.1") and body is None
    client.send(_reqmod(running.port, b"http://WWW.Bad.Example./x", extra=b"X-Client-IP: 10.0.0.9\r\n"))
    status, _, http_head, body = client.response()
    assert http_head.startswith(b"HTTP/1.1 403") and body == BLOCK_PAGE.encode()
    (alert,) = [json.loads(line) for line in running.alert_log.read_text().splitlines()]
    assert (alert["host"], alert["path"], alert["type"]) == ("10.0.0.9", "http://WWW.Bad.Example./x", "url")
    assert alert["matches"][0]["list"] == "urls" and alert["matches"][0]["signal"] == "url"
    assert alert["sha256"] == hashlib.sha256(b"bad.example/").hexdigest()


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_alerts_go_to_the_notifiers_when_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAKTA_TEST_HOOK_SECRET", "s3cret")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        reports: list[str] = []
        sink = AlertSink(
            None,
            Dispatcher(
                [f"http://127.0.0.1:{httpd.server_address[1]}/hook?secret-env=VAKTA_TEST_HOOK_SECRET"],
                reports.append,
            ),
        )
        row = EntryRow("urls", "url", b"bad.example/", "e1", None, None, "url", "2026-11-30")
        sink.url_listed("http://bad.example/x", [urls.UrlHit("bad.example/", row)], "10.0.0.1", "bob")
        sink.matched(_examiner()(testsignature.image_bytes(), "http://h/a.jpg"), None, None)
        sink.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [(a["path"], a["host"], a["user"], a["storage"]) for a in _Hook.received] == [
        ("http://bad.example/x", "10.0.0.1", "bob", "network"),
        ("http://h/a.jpg", "unknown", None, "network"),
    ]
    assert any("1 sent" in r or "2 sent" in r for r in reports)


def test_url_lists_import_and_rpz(tmp_path: Path, run_cli: RunCli) -> None:
    plain = tmp_path / "urls.txt"
    plain.write_text("# a comment\nhttp://Bad.Example/\nhttp://other.example/dir/x.jpg\nhttp:///broken\n")
    done = run_cli("lists", "import", plain, "--name", "urls", "--kind", "url")
    assert done.exit_code == 0 and "1 invalid" in done.stderr
    hashed = tmp_path / "md5.txt"
    hashed.write_text(hashlib.md5(b"hashed.example/a.jpg").hexdigest() + "\nnot-hex\n")
    assert run_cli("lists", "import", hashed, "--name", "hashed", "--kind", "url-md5").exit_code == 0
    zone = run_cli("lists", "export", "urls", "--format", "rpz")
    assert zone.exit_code == 0 and "bad.example CNAME .\n*.bad.example CNAME .\n" in zone.stdout
    assert "other.example" not in zone.stdout  # a path entry is not its whole host
    assert run_cli("lists", "export", "hashed", "--format", "rpz").exit_code == 2


# --------------------------------------------------------------------------- a real Squid in front

SQUID = shutil.which("squid") or next((p for p in ("/usr/sbin/squid",) if Path(p).exists()), None)
SQUID_CONF = """\
http_port 127.0.0.1:{http_port}
http_access allow localhost
http_access deny all
cache deny all
cache_mem 4 MB
pid_filename {dir}/squid.pid
cache_log {dir}/cache.log
access_log none
coredump_dir {dir}
shutdown_lifetime 0 seconds
icap_enable on
icap_preview_enable on
icap_send_client_ip on
icap_send_client_username on
icap_service vakta respmod_precache icap://127.0.0.1:{icap_port}/respmod bypass={bypass}
adaptation_access vakta allow all
icap_service vakta_req reqmod_precache icap://127.0.0.1:{icap_port}/reqmod bypass={bypass}
adaptation_access vakta_req allow all
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    pytest.fail(f"{what} did not start: {text}")


@pytest.fixture
def squid_dir() -> Iterator[Path]:
    """A folder Squid can write to after it drops root for the ``proxy`` user."""
    path = Path(tempfile.mkdtemp(prefix="vakta-squid-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_squid(squid_dir: Path) -> Iterator[Callable[[int, str], int]]:
    """Start ``squid -N`` with Vakta at ``icap_port`` as its RESPMOD service; returns its HTTP port."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(icap_port: int, bypass: str) -> int:
        folder = squid_dir / f"squid{len(processes)}"
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)
        http_port = _free_port()
        conf = folder / "squid.conf"
        conf.write_text(
            SQUID_CONF.format(http_port=http_port, dir=folder, icap_port=icap_port, bypass=bypass)
        )
        process = subprocess.Popen(
            [str(SQUID), "-N", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes.append(process)
        _wait_for_port(http_port, process, "squid", folder / "cache.log")
        return http_port

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def web(tmp_path: Path, images: ImageFactory) -> Iterator[tuple[int, dict[str, bytes]]]:
    """A local web server with the test signature, a resized copy, a benign image, a page and a large download."""
    root = tmp_path / "www"
    root.mkdir()
    files = {
        "sig.jpg": testsignature.image_bytes(),
        "resized.jpg": _resized_signature(),
        "benign.png": images.encode(images.pattern(11), "PNG"),
        # Over Squid's 64 KiB buffer: Squid then sends no ``Allow: 204`` and waits for an answer.
        "photo.png": images.encode(images.noise(12, (400, 300)), "PNG"),
        "big-sig.png": _big_signature(),
        "page.html": b"<!doctype html><title>t</title><p>" + b"Hello, web. " * 2000,
        "large.bin": bytes(range(256)) * (24 << 12),  # 24 MiB
        "sig.gz-coded": gzip.compress(testsignature.image_bytes()),
    }
    # Declared pictures (not decodable: they pass with an error) around the preview size and
    # Squid's 64 KiB buffer: whole in the preview, just past it, and past the buffer.
    for size in (PREVIEW_BYTES - 1, PREVIEW_BYTES, PREVIEW_BYTES + 1, 65535, 65536, 65537):
        files[f"edge-{size}.png"] = random.Random(size).randbytes(size)
    (root / "listed").mkdir()
    (root / "listed" / "a.html").write_bytes(b"<p>listed</p>")
    for name, data in files.items():
        (root / name).write_bytes(data)
    handler = partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1]), files
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        if self.path.endswith(".gz-coded"):  # sent compressed, as a server may send a picture
            self.send_header("Content-Encoding", "gzip")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _fetch(proxy_port: int, url: str, timeout: float = 30) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    )
    try:
        with opener.open(url, timeout=timeout) as reply:
            return int(reply.status), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.skipif(
    SQUID is None, reason="Squid is not installed (Debian package `squid`; .ci/run installs it)"
)
def test_through_squid(
    home: Path,
    tmp_path: Path,
    run_cli: RunCli,
    web: tuple[int, dict[str, bytes]],
    start_squid: Callable[[int, str], int],
) -> None:
    web_port, files = web
    listed = tmp_path / "urls.txt"
    listed.write_text(f"http://localhost:{web_port}/listed/\n")
    assert run_cli("lists", "import", listed, "--name", "urls", "--kind", "url").exit_code == 0
    icap_port = _free_port()
    alerts = tmp_path / "alerts.jsonl"
    log = tmp_path / "vakta-icap.log"
    command = [
        sys.executable,
        "-m",
        "vakta",
        "icap",
        "--listen",
        f"127.0.0.1:{icap_port}",
        "--alert-log",
        str(alerts),
    ]
    with log.open("wb") as out:
        vakta = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(icap_port, vakta, "vakta icap", log)
        proxy = start_squid(icap_port, "off")
        base = f"http://127.0.0.1:{web_port}"
        for name in ("sig.jpg", "resized.jpg", "sig.gz-coded"):
            status, body = _fetch(proxy, f"{base}/{name}")
            assert (status, body) == (403, BLOCK_PAGE.encode()), name
        for name in ("benign.png", "page.html", "large.bin"):
            status, body = _fetch(proxy, f"{base}/{name}")
            assert status == 200 and body == files[name], name
        for name in (n for n in files if n.startswith("edge-")):  # a stalled preview would time out
            assert _fetch(proxy, f"{base}/{name}", timeout=10) == (200, files[name]), name
        # Over 64 KiB Squid offers no 204 and waits for the answer's head: several fetches, as a
        # head sent too early (with the 100 Continue) stalled about one in three.
        for _ in range(6):
            assert _fetch(proxy, f"{base}/photo.png", timeout=10) == (200, files["photo.png"])
        # A match found after the head went out breaks the exchange off: not one byte reaches the client.
        try:
            status, body = _fetch(proxy, f"{base}/big-sig.png", timeout=10)
        except http.client.IncompleteRead as exc:
            body = exc.partial
        assert len(body) < 1024 and files["big-sig.png"][:64] not in body
        spellings = [
            "localhost:{}/listed/a.html",
            "LOCALHOST:{}/listed/%61.html",
            "localhost.:{}/listed/a.html",
        ]
        for spelling in spellings:
            assert _fetch(proxy, "http://" + spelling.format(web_port)) == (403, BLOCK_PAGE.encode()), (
                spelling
            )
        assert _fetch(proxy, f"{base}/listed/a.html") == (200, b"<p>listed</p>")  # another host
        assert [json.loads(line)["path"] for line in alerts.read_text().splitlines()][:2] == [
            f"{base}/sig.jpg",
            f"{base}/resized.jpg",
        ]
        assert json.loads(alerts.read_text().splitlines()[0])["host"] == "127.0.0.1"
    finally:
        vakta.terminate()
        vakta.wait(10)
    assert "blocked 4," in log.read_text() and "blocked urls 3" in log.read_text()
    assert "self-test: the built-in test picture matched\n" in log.read_text()
    assert _fetch(proxy, f"{base}/page.html")[0] >= 500  # bypass=off: no filter, no web
    bypassing = start_squid(icap_port, "on")
    assert _fetch(bypassing, f"{base}/page.html") == (200, files["page.html"])
    assert _fetch(bypassing, f"{base}/benign.png") == (200, files["benign.png"])
