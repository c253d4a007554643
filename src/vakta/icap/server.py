"""The asyncio ICAP server: OPTIONS and RESPMOD with previews, ``Allow: 204`` and persistent connections.

The event loop only moves bytes; hashing and matching run on a thread pool, so
one large body never stalls other connections.  A body is kept in memory only
up to :attr:`Policy.max_body_bytes`; past that it is passed on unchecked.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from vakta.icap import codings
from vakta.icap.alerts import AlertSink
from vakta.icap.filter import Examiner, Policy, wanted
from vakta.icap.protocol import (
    Bounds,
    ChunkReader,
    ProtocolError,
    Request,
    chunked,
    http_headers,
    read_request,
    response,
)
from vakta.icap.urls import UrlIndex
from vakta.signals.sniff import SNIFF_BYTES

log = logging.getLogger(__name__)

#: Bytes of a body the proxy sends before the service says whether it wants the rest. A
#: body no longer comes whole in the preview (``ieof``) and is answered with a 204: no
#: ``100 Continue`` round trip, nothing echoed. Squid keeps a preview in its 64 KiB body
#: buffer and stalls on one much over 63 KiB (tests/test_icap.py probes around both sizes);
#: 48 KiB leaves it room.
PREVIEW_BYTES = 49152
BLOCK_PAGE = (
    "<!doctype html><html><head><meta charset=utf-8><title>Blocked</title></head>"
    "<body><h1>Blocked</h1><p>This content was blocked by your organisation's web filter.</p></body></html>"
)
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    451: "Unavailable For Legal Reasons",
}

#: The ICAP services, by the last segment of the service URI (``icap://host/respmod``).
SERVICES = ("RESPMOD", "REQMOD")
#: Bodies up to this size are looked up in the body cache in the event loop (the key of
#: 1 MiB takes 0.2 ms here, 0.5 ms without blake3); a hit never goes to the hashing threads,
#: whose hand-over cost more than the lookup itself.
RECALL_BYTES = 1 << 20


@dataclass
class Transaction:
    """One RESPMOD exchange: the request, where its body comes from, and the answer's writer."""

    request: Request
    chunks: ChunkReader
    writer: asyncio.StreamWriter
    kept: bytearray = field(default_factory=bytearray)

    @property
    def part(self) -> str:
        """Which HTTP message the exchange carries: the request (REQMOD) or the response."""
        return "req" if self.request.method == "REQMOD" else "res"

    @property
    def head(self) -> bytes:
        return self.request.req_hdr if self.part == "req" else self.request.res_hdr

    #: ``100 Continue`` was sent: the body after the preview is on its way.
    continued: bool = False
    #: The answer's head was sent before the body was whole (see :meth:`IcapServer._answer_head`).
    answered: bool = False
    #: The body's content codings (``Content-Encoding``), undone before it is hashed.
    coding: tuple[str, ...] = ()
    #: Bytes of ``kept`` counted against the server's budget (:attr:`Policy.max_held_bytes`).
    held: int = 0
    #: Holding more of the body would have passed that budget.
    over_budget: bool = False


class IcapServer:
    """Serves ICAP on one address; ``counts`` says what happened (blocked, passed, unchecked, bad requests)."""

    def __init__(
        self,
        examine: Examiner,
        alerts: AlertSink,
        policy: Policy | None = None,
        bounds: Bounds | None = None,
        workers: int = 2,
        urls: UrlIndex | None = None,
    ) -> None:
        self.examine = examine
        self.urls = urls or UrlIndex(())
        self.alerts = alerts
        self.policy = policy or Policy()
        self.bounds = bounds or Bounds()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="vakta-icap")
        self.counts: Counter[str] = Counter()
        #: Bytes of bodies held now, over all connections.
        self.held = 0
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> asyncio.Server:
        return await asyncio.start_server(self.handle, host, port, limit=self.bounds.read_buffer)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.alerts.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: requests one after another until the client closes or breaks the protocol."""
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            while (request := await read_request(reader, self.bounds)) is not None:
                self.counts["requests"] += 1
                await self._serve(
                    request, ChunkReader(reader, self.bounds, done=request.body is None), writer
                )
                await writer.drain()
                if not request.keep_alive:
                    break
        except ProtocolError as exc:
            self.counts["bad requests"] += 1
            log.info("bad ICAP request from %s: %s", writer.get_extra_info("peername"), exc)
            if not writer.is_closing():  # uvloop raises on a write to a connection the client closed
                writer.write(response(400, "Bad Request", [("Connection", "close")]))
        except ConnectionError as exc:
            log.debug("connection lost: %s", exc)
        finally:
            self._connections.pop(task, None) if task is not None else None
            await _close(writer)

    async def disconnect(self, seconds: float = 5.0) -> None:
        """End every open connection (after stopping listening) and wait for their handlers."""
        for writer in self._connections.values():
            writer.transport.abort()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=seconds)

    async def _serve(self, request: Request, chunks: ChunkReader, writer: asyncio.StreamWriter) -> None:
        service = urlsplit(request.uri).path.rstrip("/").rsplit("/", 1)[-1].upper()
        if service not in SERVICES:
            await _drain(chunks)
            writer.write(response(404, "ICAP Service Not Found"))
        elif request.method == "OPTIONS":
            writer.write(self._options(service))
        elif request.method != service:
            await _drain(chunks)
            writer.write(response(405, "Method Not Allowed"))
        elif service == "RESPMOD":
            t = Transaction(request, chunks, writer)
            try:
                await self._respmod(t)
            finally:
                self.held -= t.held
        else:
            await self._reqmod(Transaction(request, chunks, writer))

    def _options(self, service: str) -> bytes:
        headers = [
            ("Methods", service),
            ("Service", "Vakta known-material filter"),
            ("Allow", "204"),
            # REQMOD decides on the URL alone: no request body is wanted before the answer.
            ("Preview", str(PREVIEW_BYTES if service == "RESPMOD" else 0)),
            ("Transfer-Preview", "*"),
            ("Options-TTL", "3600"),
        ]
        return response(200, "OK", headers)

    async def _reqmod(self, t: Transaction) -> None:
        if t.request.body and t.request.preview is not None and await self._gather(t, t.request.preview):
            raise ProtocolError("preview longer than announced")
        url = _request_url(t.request.req_hdr)
        hits = self.urls.lookup(url)
        if not hits:
            self.counts["passed"] += 1
            return await self._pass_rest(t, None)
        self.counts["blocked urls"] += 1
        log.warning("blocked a request to a listed URL (list %s)", hits[0].entry.list_name)
        if not _rest_with_proxy(t):
            await _drain(t.chunks)
        headers = t.request.headers
        await asyncio.get_running_loop().run_in_executor(
            None,
            self.alerts.url_listed,
            url,
            hits,
            headers.get("x-client-ip"),
            headers.get("x-authenticated-user"),
        )
        self._block(t)

    async def _respmod(self, t: Transaction) -> None:
        if t.request.body is None:
            return self._pass(t)
        _, res = http_headers(t.request.res_hdr)
        if t.request.preview is None:
            await self._gather(t, SNIFF_BYTES)  # enough to tell the type
        elif await self._gather(t, t.request.preview):
            raise ProtocolError("preview longer than announced")
        t.coding = codings.parse(res.get("content-encoding"))
        if not wanted(res.get("content-type"), t.kept, t.coding):
            self.counts["passed"] += 1
            return await self._pass_rest(t, None)
        if _rest_with_proxy(t):
            t.writer.write(b"ICAP/1.0 100 Continue\r\n\r\n")
            await t.writer.drain()
            t.continued = True
            t.chunks.again()
        if not t.request.allows_204 and not t.chunks.done:
            if t.continued:
                # Only once the proxy acts on the 100 Continue (the rest arrives) may the head go
                # out: Squid loses an answer head that reaches it in the same read as the
                # 100 Continue, and both sides then wait on each other until a timeout.
                await self._gather(t, len(t.kept))
            if not t.chunks.done:
                await self._answer_head(t)
        if await self._gather(t, self.policy.max_body_bytes, held=True):
            why = "over the memory for bodies held at once" if t.over_budget else "larger than the body limit"
            return await self._pass_rest(t, why)
        await self._decide(t)

    async def _gather(self, t: Transaction, limit: int, held: bool = False) -> bool:
        """Read chunks into ``kept`` until the (preview's) end; True when ``limit`` was passed first.

        With ``held``, what is kept counts against the bytes all connections may hold, and
        True also means that would have passed that budget (``t.over_budget``).
        """
        if held and not self._hold(t):  # what the preview brought
            return True
        async with t.chunks.watched():
            while len(t.kept) <= limit:
                chunk = await t.chunks.next()
                if chunk is None:
                    return False
                t.kept += chunk
                if held and not self._hold(t):
                    return True
        return True

    def _hold(self, t: Transaction) -> bool:
        """Count ``t.kept`` as held; False (nothing more counted) when that would pass the budget."""
        more = len(t.kept) - t.held
        if self.held + more > self.policy.max_held_bytes:
            t.over_budget = True
            return False
        self.held += more
        t.held += more
        return True

    async def _decide(self, t: Transaction) -> None:
        url = _request_url(t.request.req_hdr)
        loop = asyncio.get_running_loop()
        try:
            key, findings = self.examine.recall(t.kept, url) if len(t.kept) <= RECALL_BYTES else (None, None)
            if findings is None:
                findings = await asyncio.wait_for(
                    loop.run_in_executor(self.pool, self.examine, bytes(t.kept), url, key, t.coding),
                    self.policy.max_seconds,
                )
        except TimeoutError:
            return self._unchecked(t, "timed out")
        except Exception as exc:  # one body's failure is never the connection's
            log.exception("checking %s failed", url)
            return self._unchecked(t, f"failed: {type(exc).__name__}")
        matched = [f for f in findings if f.matched]
        errors = [e for f in findings for e in f.signals.errors]
        if errors:
            log.info("%s: %s", url, "; ".join(errors))
        if not matched:
            self.counts["passed"] += 1
            return self._pass(t)
        self.counts["blocked"] += 1
        log.warning(
            "blocked %s: matched %s",
            url,
            ", ".join(sorted({m.meta.list_name for f in matched for m in f.matches})),
        )
        headers = t.request.headers
        await loop.run_in_executor(
            None,
            self.alerts.matched,
            matched,
            headers.get("x-client-ip"),
            headers.get("x-authenticated-user"),
        )
        self._block(t)

    def _unchecked(self, t: Transaction, why: str) -> None:
        self.counts["unchecked"] += 1
        log.info("body of %s not checked: %s", _request_url(t.request.req_hdr), why)
        if self.policy.block_unchecked:
            self.counts["blocked"] += 1
            return self._block(t)
        self._pass(t)

    async def _answer_head(self, t: Transaction) -> None:
        """Send the answer's head before reading the rest of a body the proxy will not let us 204.

        A proxy that offers no ``Allow: 204`` (Squid, for a body over its 64 KiB
        buffer) sends no more of the body until the answer starts.  The HTTP
        head goes back at once, unchanged; the body follows once checked, or,
        on a match, nothing of it does: the exchange is broken off before its
        first byte (the client sees a cut-off transfer), never a byte of the matched file.
        """
        answer = response(200, "OK", res_hdr=t.head, body=b"", part=t.part)
        t.writer.write(answer[: -len(chunked(b""))])
        await t.writer.drain()
        t.answered = True

    def _block(self, t: Transaction) -> None:
        if t.answered:
            # The head went out already: break the exchange off before any of the body, so the
            # proxy aborts the response at once (ending the body cleanly leaves clients waiting).
            t.writer.transport.abort()
            return
        page = BLOCK_PAGE.encode()
        status = self.policy.block_status
        head = (
            f"HTTP/1.1 {status} {html.escape(_REASONS.get(status, 'Blocked'))}\r\n"
            "Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(page)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        )
        t.writer.write(response(200, "OK", res_hdr=head.encode("latin-1"), body=page))

    def _pass(self, t: Transaction) -> None:
        """The response unchanged: 204 when the proxy allows it, else the whole of it echoed back."""
        if t.answered:
            _write_chunk(t.writer, t.kept, last=True)
            return
        if t.request.allows_204 or _rest_with_proxy(t):
            t.writer.write(response(204, "No Content"))
        else:
            body = bytes(t.kept) if t.request.body else None
            t.writer.write(response(200, "OK", res_hdr=t.head, body=body, part=t.part))

    async def _pass_rest(self, t: Transaction, unchecked: str | None) -> None:
        """Pass a body not (or not wholly) read: at once after a preview, else drained or streamed back."""
        if unchecked:
            self.counts["unchecked"] += 1
            log.info("body of %s not checked: %s", _request_url(t.request.req_hdr), unchecked)
            if self.policy.block_unchecked:
                if not _rest_with_proxy(t):
                    await _drain(t.chunks)
                self.counts["blocked"] += 1
                return self._block(t)
        if _rest_with_proxy(t) or t.chunks.done:
            return self._pass(t)
        if t.request.allows_204:
            await _drain(t.chunks)
            return self._pass(t)
        await self._echo(t)

    async def _echo(self, t: Transaction) -> None:
        """Send the response back as it comes, holding no more than one chunk (no ``Allow: 204``)."""
        if not t.answered:
            head = response(200, "OK", res_hdr=t.head, body=b"", part=t.part)
            t.writer.write(head[: -len(chunked(b""))])
        _write_chunk(t.writer, t.kept)
        async with t.chunks.watched():
            while (chunk := await t.chunks.next()) is not None:
                _write_chunk(t.writer, chunk)
                await t.writer.drain()
        t.writer.write(b"0\r\n\r\n")


def _write_chunk(
    writer: asyncio.StreamWriter, data: bytes | bytearray | memoryview, last: bool = False
) -> None:
    """One chunk of a body (and the zero chunk after it when ``last``), in one vectored write.

    The data goes to the transport without a copy of ours (a body can be MBs).
    """
    parts: list[bytes | memoryview] = [b"%x\r\n" % len(data), memoryview(data), b"\r\n"] if data else []
    if last:
        parts.append(b"0\r\n\r\n")
    writer.writelines(parts)


def _rest_with_proxy(t: Transaction) -> bool:
    """A preview ended and the proxy still holds the rest of the body (so 204 is always allowed)."""
    return t.request.body is not None and t.request.preview is not None and not (t.continued or t.chunks.ieof)


async def _drain(chunks: ChunkReader) -> None:
    async with chunks.watched():
        while await chunks.next() is not None:
            pass


async def _close(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


def _request_url(req_hdr: bytes) -> str:
    """The URL of the encapsulated HTTP request (absolute, as proxies send it, or built from ``Host``)."""
    if not req_hdr:
        return "unknown"
    first, headers = http_headers(req_hdr)
    parts = first.split(" ")
    target = parts[1] if len(parts) == 3 else ""
    if parts[0].upper() == "CONNECT":
        return f"https://{target}"
    if target.startswith("/"):
        return f"http://{headers.get('host', 'unknown')}{target}"
    return target or "unknown"
