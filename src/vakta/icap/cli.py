"""Running the ICAP service from ``vakta icap``: address parsing, assembly and the server's life cycle."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vakta.icap.alerts import AlertSink
from vakta.icap.bodycache import DEFAULT_ENTRIES, BodyCache
from vakta.icap.console import ConsoleReporter
from vakta.icap.filter import Examiner, Policy, web_limits
from vakta.icap.server import IcapServer
from vakta.icap.urls import UrlIndex
from vakta.matching.knowngood import KnownGood
from vakta.matching.matcher import Matcher
from vakta.notify.dispatch import Dispatcher
from vakta.signals.model import HashOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """The command's options: per-body limits, what to do past them, the block status, hashing threads."""

    max_body_bytes: int
    max_seconds: float
    block_unchecked: bool
    block_status: int
    workers: int
    #: PDQ's edited-copy query variants too (upscaled, tone, banner, border): more recall, more latency.
    extra_queries: bool = False
    #: Bodies whose signals are remembered by content (0: none).
    cache_entries: int = DEFAULT_ENTRIES
    #: Bytes of bodies held at once over all connections.
    max_held_bytes: int = 1 << 30


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:1344`` for IPv6); ValueError with the reason otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen needs HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build(
    matcher: Matcher,
    known_good: KnownGood | None,
    urls: UrlIndex,
    settings: Settings,
    alerts_to: Dispatcher | Path,
    console: ConsoleReporter | None = None,
) -> IcapServer:
    """The server for these lists and settings; alerts go to the console and the notifiers, or else to a JSONL file."""
    policy = Policy(
        settings.max_body_bytes,
        settings.max_seconds,
        settings.block_unchecked,
        settings.block_status,
        settings.max_held_bytes,
    )
    cache = BodyCache(settings.cache_entries) if settings.cache_entries else None
    options = HashOptions(extra_queries=settings.extra_queries)
    examine = Examiner(
        matcher, options, known_good, web_limits(settings.max_seconds), cache, settings.max_body_bytes
    )
    if isinstance(alerts_to, Path):
        sink = AlertSink(None if console else alerts_to, None, console)
    else:
        sink = AlertSink(None, alerts_to, console)
    return IcapServer(examine, sink, policy, workers=settings.workers, urls=urls)


def serve(
    address: tuple[str, int],
    matcher: Matcher,
    known_good: KnownGood | None,
    urls: UrlIndex,
    settings: Settings,
    alerts_to: Dispatcher | Path,
    console: ConsoleReporter | None = None,
) -> None:
    """Serve until interrupted (SIGINT/SIGTERM), then log what was done."""
    server = build(matcher, known_good, urls, settings, alerts_to, console)
    log.warning("%d URL list entries", len(urls))
    _run_loop(_serve(server, *address))
    log.warning("icap: %s", ", ".join(f"{k} {v}" for k, v in sorted(server.counts.items())) or "no requests")
    cache = server.examine.cache if isinstance(server.examine, Examiner) else None
    if cache is not None:
        log.warning("body cache: %d hits, %d misses", cache.hits, cache.misses)


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the service on uvloop where it is installed (the ``icap`` extra; not on Windows), else on asyncio's loop.

    Receiving and echoing bodies is most of the service's CPU behind a busy proxy,
    and uvloop's transports do it in C.
    """
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed: serving on asyncio's own event loop")
        asyncio.run(main)
        return
    uvloop.run(main)


async def _serve(server: IcapServer, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(server.pool, server.examine.warm_up):
        log.warning("self-test: the built-in test picture matched")
    else:
        log.warning(
            "self-test: the built-in test picture matched no list in force (expected only with --no-test-list)"
        )
    # The lists just loaded are millions of objects the collector would otherwise walk on
    # every full collection: 34 ms, the GIL held, with a 1,000,000-entry list. They stay.
    gc.freeze()
    listener = await server.start(host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    log.warning("ICAP service on icap://%s:%d/respmod and /reqmod", host, port)
    try:
        async with listener:
            await stop.wait()
            listener.close()
            await server.disconnect()
    finally:
        server.close()
