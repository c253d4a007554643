"""Token buckets shared by every worker process of one console (the matching API's rate limits).

``vakta server run --workers N`` forks N processes onto one socket; buckets kept
in each process's memory let a client spread over them take N times its limit.
So the buckets live in one shared memory table, made before the fork and
inherited by every worker: a fixed array of slots (key, tokens, last refill)
in a memory-mapped anonymous file, guarded by a POSIX record lock on that file
(the kernel drops it when its holder dies, so a killed worker cannot leave the
others locked out) plus a thread lock inside each process (record locks do not
exclude threads of one process). A take is a few microseconds: no database
round trip per API call.

Keys are hashed to 64 bits (BLAKE2b, the same in every process, unlike
``hash()``) and placed by open addressing over a short run of slots. When all
of a run is taken, the key idle longest gives up its slot; a bucket idle for
``burst / rate`` seconds is full again anyway, so only a table far smaller than
the number of active clients makes a limit lenient, never strict.

Workers on other machines behind a load balancer each have their own table.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
import time
import weakref
from typing import BinaryIO

#: key (0: empty), tokens, last refill (``time.monotonic``, the same clock in every process).
_SLOT = struct.Struct("<Qdd")
#: Slots probed for a key before the longest idle one is taken over.
_RUN = 16
DEFAULT_SLOTS = 16384


class SharedBuckets:
    """Per-key token buckets in memory shared with every process forked after it is made."""

    def __init__(self, slots: int = DEFAULT_SLOTS) -> None:
        if slots < _RUN:
            raise ValueError(f"a bucket table needs at least {_RUN} slots")
        self._slots = slots
        self._file = _anonymous_file(slots * _SLOT.size)
        self._map = mmap.mmap(self._file.fileno(), slots * _SLOT.size)
        self._thread_lock = threading.Lock()
        _TABLES.add(self)

    def take(self, key: str, cost: float, rate: float, burst: float) -> float:
        """0 when ``key`` may spend ``cost`` tokens now (they are spent), else the seconds to wait.

        The bucket holds at most ``burst`` tokens and refills at ``rate`` a second.
        """
        code = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1
        with _Held(self._thread_lock, self._file.fileno()):
            now = time.monotonic()
            slot, (found, tokens, last) = self._slot_of(code)
            tokens = burst if found != code else min(burst, tokens + (now - last) * rate)
            allowed = tokens >= cost
            _SLOT.pack_into(self._map, slot * _SLOT.size, code, tokens - cost if allowed else tokens, now)
        return 0.0 if allowed else (min(cost, burst) - tokens) / rate

    def _slot_of(self, code: int) -> tuple[int, tuple[int, float, float]]:
        """The slot holding ``code``, else an empty one, else the longest idle of its run."""
        first = code % self._slots
        oldest: tuple[float, int, tuple[int, float, float]] | None = None
        for i in range(_RUN):
            slot = (first + i) % self._slots
            entry = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if entry[0] in (code, 0):
                return slot, entry
            if oldest is None or entry[2] < oldest[0]:
                oldest = (entry[2], slot, entry)
        assert oldest is not None
        return oldest[1], oldest[2]

    def _new_thread_lock(self) -> None:
        """A forked child starts with its own unheld thread lock (a fork copies a held one held)."""
        self._thread_lock = threading.Lock()


#: Every table of this process, to give each a fresh thread lock in a forked child.
_TABLES: weakref.WeakSet[SharedBuckets] = weakref.WeakSet()


def _after_fork() -> None:
    for table in list(_TABLES):
        table._new_thread_lock()


os.register_at_fork(after_in_child=_after_fork)

_SHARED: SharedBuckets | None = None
_SHARED_LOCK = threading.Lock()


def shared_table() -> SharedBuckets:
    """This console's table: made on first use, which ``vakta server run`` makes before forking its workers."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = SharedBuckets()
        return _SHARED


class _Held:
    """The thread lock, then the record lock on the shared file; released in reverse order."""

    def __init__(self, lock: threading.Lock, fd: int) -> None:
        self._lock = lock
        self._fd = fd

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


def _anonymous_file(size: int) -> BinaryIO:
    """A file with no name (memfd on Linux, else an unlinked temporary file) of ``size`` zero bytes."""
    if hasattr(os, "memfd_create"):
        handle: BinaryIO = os.fdopen(os.memfd_create("vakta-rate-limits"), "r+b")
    else:  # pragma: no cover - macOS
        handle = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the table's life
    handle.truncate(size)
    return handle
