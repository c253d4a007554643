"""ICAP messages (RFC 3507): reading requests from a stream and writing responses.

Every read is bounded in bytes and time, so a hostile or broken client costs at
most :class:`Bounds`: anything that does not parse is a :class:`ProtocolError`,
which the server answers with 400 and a closed connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

ISTAG = '"vakta-1"'
CRLF = b"\r\n"
#: Encapsulated section names, in the order RFC 3507 section 4.4.1 allows them.
HEADER_SECTIONS = ("req-hdr", "res-hdr")
BODY_SECTIONS = ("req-body", "res-body", "null-body", "opt-body")
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CHUNK_SIZE = re.compile(rb"^([0-9A-Fa-f]{1,16})[ \t]*(;[ \t]*ieof[ \t]*)?(;[^\r\n]*)?$")


class ProtocolError(Exception):
    """The client sent something that is not ICAP (or too much of it): answered with 400."""


@dataclass(frozen=True)
class Bounds:
    """What one message may cost before the connection is dropped."""

    max_line: int = 8192
    max_header_bytes: int = 64 << 10
    max_headers: int = 100
    #: Time for the ICAP and encapsulated HTTP headers of one message (slow senders stop here).
    header_seconds: float = 10.0
    #: Time a persistent connection may sit idle between messages.
    idle_seconds: float = 60.0
    #: Time to wait for each piece of a body.
    body_read_seconds: float = 30.0
    #: Bytes read ahead from a connection before reading pauses (lines are still held to
    #: ``max_line``): a large window keeps a body's chunks from pausing the socket each time.
    read_buffer: int = 256 << 10


@dataclass
class Request:
    """One ICAP request: its line, ICAP headers and the encapsulated HTTP header blocks."""

    method: str
    uri: str
    headers: dict[str, str]
    req_hdr: bytes = b""
    res_hdr: bytes = b""
    #: The encapsulated body kind (``req-body``/``res-body``), or None when there is none.
    body: str | None = None
    preview: int | None = None
    sections: list[tuple[str, int]] = field(default_factory=list)

    @property
    def allows_204(self) -> bool:
        return "204" in {v.strip() for v in self.headers.get("allow", "").split(",")}

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


@contextmanager
def _protocol_errors() -> Iterator[None]:
    """A timeout, a short read or an overlong line, as the ProtocolError it is."""
    try:
        yield
    except TimeoutError:
        raise ProtocolError("timed out") from None
    except asyncio.IncompleteReadError:
        raise ProtocolError("connection closed in the middle of a message") from None
    except asyncio.LimitOverrunError:
        raise ProtocolError("line too long") from None


async def _with_deadline(coro: Coroutine[Any, Any, T], seconds: float) -> T:
    """``coro`` within ``seconds``, its failures as ProtocolErrors.

    ``asyncio.timeout`` runs ``coro`` in the calling task; ``wait_for`` would start a task for it.
    """
    with _protocol_errors():
        async with asyncio.timeout(seconds):
            return await coro


class StallTimer:
    """Times the calling task out once ``seconds`` pass without a :meth:`touch`.

    One ``asyncio.timeout`` for many reads, its deadline moved lazily: a touch only
    notes the time, and a check at the old deadline sets the next one. (A timeout
    per chunk cost several microseconds a chunk: about 8% of the service's profile
    samples behind Squid.)
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout(None)
        self._last = self._loop.time()
        self._check_at: asyncio.TimerHandle | None = None

    def touch(self) -> None:
        self._last = self._loop.time()

    async def __aenter__(self) -> StallTimer:
        await self._timeout.__aenter__()
        self.touch()
        self._check_at = self._loop.call_at(self._last + self.seconds, self._check)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._check_at is not None:
            self._check_at.cancel()
        await self._timeout.__aexit__(*exc)

    def _check(self) -> None:
        due = self._last + self.seconds
        if self._loop.time() >= due:
            self._timeout.reschedule(due)  # in the past: the timeout fires at once
        else:
            self._check_at = self._loop.call_at(due, self._check)


async def read_line(reader: asyncio.StreamReader, bounds: Bounds) -> bytes:
    """One CRLF-terminated line, without its ending; ProtocolError past ``max_line``."""
    line = await reader.readuntil(b"\n")
    if len(line) > bounds.max_line:
        raise ProtocolError("line too long")
    return line.rstrip(b"\r\n")


def _parse_head(block: bytes, bounds: Bounds) -> tuple[bytes, dict[str, str]]:
    """A request's head (its line, header lines and the empty line) as the line and lower-cased headers."""
    if len(block) > bounds.max_header_bytes:
        raise ProtocolError("headers too large")
    first, *lines = block[:-4].split(CRLF)
    if len(lines) > bounds.max_headers:
        raise ProtocolError("headers too large")
    headers: dict[str, str] = {}
    for line in lines:
        if len(line) > bounds.max_line:
            raise ProtocolError("line too long")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name) or b"\n" in value:
            raise ProtocolError("malformed header line")
        headers[name.decode("ascii").lower()] = value.strip().decode("latin-1")
    if len(first) > bounds.max_line:
        raise ProtocolError("line too long")
    return first, headers


async def read_request(reader: asyncio.StreamReader, bounds: Bounds) -> Request | None:
    """The next request's line, headers and HTTP heads; None when the client closed (or idled) between messages.

    The head is read as one block (one read, not one a line): this runs for every
    request a busy proxy sends.
    """
    try:
        async with asyncio.timeout(bounds.idle_seconds):
            start = await reader.readexactly(1)
    except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
        return None
    return await _with_deadline(_read_rest(reader, start, bounds), bounds.header_seconds)


async def _read_rest(reader: asyncio.StreamReader, start: bytes, bounds: Bounds) -> Request:
    first, headers = _parse_head(start + await reader.readuntil(b"\r\n\r\n"), bounds)
    request = _parse_request_line(first, headers)
    if request.sections:
        await _read_sections(reader, request, bounds)
    return request


def _parse_request_line(first: bytes, headers: dict[str, str]) -> Request:
    parts = first.split(b" ")
    if len(parts) != 3 or parts[2] != b"ICAP/1.0" or not _TOKEN.match(parts[0]):
        raise ProtocolError("malformed request line")
    request = Request(parts[0].decode("ascii"), parts[1].decode("latin-1"), headers)
    request.sections = parse_encapsulated(headers.get("encapsulated", ""))
    if "preview" in headers:
        text = headers["preview"].strip()
        if not text.isdigit() or len(text) > 9:
            raise ProtocolError("malformed Preview header")
        request.preview = int(text)
    return request


def parse_encapsulated(value: str) -> list[tuple[str, int]]:
    """``req-hdr=0, res-hdr=120, res-body=300`` as names and offsets, checked for order and shape."""
    if not value.strip():
        return []
    sections: list[tuple[str, int]] = []
    for part in value.split(","):
        name, sep, offset = part.strip().partition("=")
        if not sep or name not in HEADER_SECTIONS + BODY_SECTIONS or not offset.isdigit() or len(offset) > 9:
            raise ProtocolError("malformed Encapsulated header")
        sections.append((name, int(offset)))
    offsets = [o for _, o in sections]
    if offsets[0] != 0 or offsets != sorted(set(offsets)):
        raise ProtocolError("Encapsulated offsets out of order")
    if any(n in BODY_SECTIONS for n, _ in sections[:-1]) or sections[-1][0] not in BODY_SECTIONS:
        raise ProtocolError("Encapsulated must end with exactly one body section")
    return sections


async def _read_sections(reader: asyncio.StreamReader, request: Request, bounds: Bounds) -> None:
    *heads, (body, end) = request.sections
    if end > bounds.max_header_bytes:
        raise ProtocolError("encapsulated headers too large")
    data = await reader.readexactly(end)
    for (name, start), (_, stop) in zip(heads, [*heads[1:], (body, end)], strict=True):
        block = data[start:stop]
        if not block.endswith(b"\r\n\r\n"):
            raise ProtocolError(f"{name} does not end where Encapsulated says")
        setattr(request, name.replace("-", "_"), block)
    request.body = body if body in ("req-body", "res-body") else None


@dataclass
class ChunkReader:
    """The chunks of an encapsulated body (RFC 3507 section 4.5), ``ieof`` noted at its end."""

    reader: asyncio.StreamReader
    bounds: Bounds
    ieof: bool = False
    done: bool = False
    _timer: StallTimer | None = None

    @asynccontextmanager
    async def watched(self) -> AsyncIterator[None]:
        """One deadline for the :meth:`next` calls inside, moved on by each (``body_read_seconds`` a piece, as alone)."""
        with _protocol_errors():
            async with StallTimer(self.bounds.body_read_seconds) as timer:
                self._timer = timer
                try:
                    yield
                finally:
                    self._timer = None

    async def next(self) -> memoryview | None:
        """The next chunk's data (a view: no copy of it is made), or None at the end of the body (or of the preview)."""
        if self.done:
            return None
        assert self._timer is not None, "ChunkReader.next is called inside watched()"
        self._timer.touch()
        with _protocol_errors():
            return await self._next()

    async def _next(self) -> memoryview | None:
        line = await read_line(self.reader, self.bounds)
        found = _CHUNK_SIZE.match(line.strip())
        if not found:
            raise ProtocolError("malformed chunk size")
        size = int(found.group(1), 16)
        if size == 0:
            if await read_line(self.reader, self.bounds) != b"":
                raise ProtocolError("chunked body does not end with an empty line")
            self.ieof, self.done = found.group(2) is not None, True
            return None
        data = await self.reader.readexactly(size + 2)  # with its CRLF: one read, one copy
        if data[-2:] != CRLF:
            raise ProtocolError("chunk longer than its size says")
        return memoryview(data)[:-2]

    def again(self) -> None:
        """After a preview and ``100 Continue``: the rest of the body follows."""
        if not self.ieof:
            self.done = False


def chunked(data: bytes, size: int = 64 << 10) -> bytes:
    """``data`` as an ICAP chunked body, ending with the zero chunk."""
    parts = [
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def response(
    status: int,
    reason: str,
    headers: Iterable[tuple[str, str]] = (),
    *,
    res_hdr: bytes | None = None,
    body: bytes | None = None,
    part: str = "res",
) -> bytes:
    """An ICAP response, with an encapsulated HTTP head (``part``: ``res`` or ``req``) and chunked body when given."""
    lines = [f"ICAP/1.0 {status} {reason}", f"ISTag: {ISTAG}", *(f"{k}: {v}" for k, v in headers)]
    if res_hdr is None:
        lines.append("Encapsulated: null-body=0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    kind = f"{part}-body" if body is not None else "null-body"
    lines.append(f"Encapsulated: {part}-hdr=0, {kind}={len(res_hdr)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + res_hdr + (chunked(body) if body is not None else b"")


def http_headers(block: bytes) -> tuple[str, dict[str, str]]:
    """An encapsulated HTTP head as its first line and lower-cased headers (last one wins)."""
    lines = block.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers
