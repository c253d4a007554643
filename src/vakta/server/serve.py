"""Serving the console from several processes on one socket (``vakta server run --workers N``).

One Python process answers on one core (the GIL); a console with many agents
needs more. The parent binds the socket once, then forks the workers, each of
which builds its own app and database pool after the fork (connections never
cross a fork) and accepts on the shared socket, so the kernel spreads the
connections. The parent restarts a worker that dies and stops them all on
SIGTERM or SIGINT. The database keeps everything that must be shared, login
limits included; the matching API's rate limits are a table in shared memory
(:mod:`vakta.server.ratelimit`), made here before the fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from vakta.server.ratelimit import shared_table

log = logging.getLogger(__name__)

#: A worker that dies sooner than this after its start is restarted only after a pause.
_QUICK_DEATH = 5.0
_PAUSE = 2.0
_PR_SET_PDEATHSIG = 1


def serve(build: Callable[[], Any], host: str, port: int, workers: int, **uvicorn_options: Any) -> None:
    """Serve the app ``build`` returns on ``host:port`` with ``workers`` processes (1: this one)."""
    import uvicorn

    if workers <= 1:
        uvicorn.run(build(), host=host, port=port, **uvicorn_options)
        return
    listener = bind(host, port)
    shared_table()  # made before the fork, so every worker takes from the same buckets
    _Supervisor(build, listener, workers, uvicorn_options).run()


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on (IPv6 when ``host`` is an IPv6 address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Supervisor:
    """Forks the workers, restarts the ones that die, and stops them all when told to."""

    def __init__(
        self, build: Callable[[], Any], listener: socket.socket, workers: int, options: dict[str, Any]
    ) -> None:
        self.build = build
        self.listener = listener
        self.workers = workers
        self.options = options
        self.children: dict[int, float] = {}
        self.stopping = False

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        host, port = self.listener.getsockname()[:2]
        log.info("console on %s:%d with %d worker processes", host, port, self.workers)
        for _ in range(self.workers):
            self._spawn()
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries os.wait itself
                continue
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            log.error("worker %d ended (%s): starting another", pid, _describe(status))
            if time.monotonic() - started < _QUICK_DEATH:
                time.sleep(_PAUSE)
            if not self.stopping:
                self._spawn()
        self.listener.close()

    def _spawn(self) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                _end_with_parent()
                code = _work(self.build, self.listener, self.options)
            finally:
                os._exit(code)
        self.children[pid] = time.monotonic()

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _end_with_parent() -> None:
    """On Linux, a worker gets SIGTERM when the supervisor dies (even by ``kill -9``): no orphan keeps the port."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError) as exc:  # pragma: no cover - no prctl in this libc
        log.warning("workers will not end with the supervisor: %s", exc)
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _work(build: Callable[[], Any], listener: socket.socket, options: dict[str, Any]) -> int:
    import uvicorn

    try:
        server = uvicorn.Server(uvicorn.Config(build(), **options))
        server.run(sockets=[listener])
    except Exception:
        log.exception("console worker %d failed", os.getpid())
        return 1
    return 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"
