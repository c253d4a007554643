"""What the agent watches: default folders per OS, file events, debounce, newly mounted volumes.

Events come from ``watchdog`` (inotify on Linux, FSEvents on macOS,
ReadDirectoryChangesW on Windows).  A file is scanned once it has had no event
for the quiet period, so a download written in pieces is hashed once.  New
mounts are found by polling the mount table (``/proc/self/mountinfo``, read
with :mod:`vakta.notify.storage`): Linux only, because that file is Linux's;
on macOS and Windows new volumes appear as folders under ``/Volumes`` or as
drive letters, which the default paths there cover.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from vakta.notify.storage import parse_mountinfo

log = logging.getLogger(__name__)

#: Removable media and other volumes are mounted under these on Linux.
LINUX_MOUNT_ROOTS = ("/media", "/run/media", "/mnt")


def default_paths(platform: str = sys.platform, home_root: Path | None = None) -> list[Path]:
    """The folders watched unless ``--only-watch`` is given: home folders (Downloads and cloud-sync
    folders are inside them) and where removable media appear."""
    if platform.startswith("linux"):
        return [home_root or Path("/home"), Path("/root"), *map(Path, LINUX_MOUNT_ROOTS)]
    if platform == "darwin":
        return [home_root or Path("/Users"), Path("/Volumes")]
    if platform == "win32":
        users = home_root or Path(os.environ.get("SYSTEMDRIVE", "C:") + "\\Users")
        return [users, *_windows_drives()]
    return [home_root or Path.home()]


def _windows_drives() -> list[Path]:
    """Drive letters other than the system drive: USB sticks, network and mapped drives."""
    system = os.environ.get("SYSTEMDRIVE", "C:").upper()
    return [
        Path(f"{c}:\\") for c in "DEFGHIJKLMNOPQRSTUVWXYZ" if f"{c}:" != system and Path(f"{c}:\\").exists()
    ]


class Debouncer:
    """Paths waiting to be quiet for ``quiet`` seconds; each change restarts its wait."""

    def __init__(self, quiet: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.quiet = quiet
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()

    def touch(self, path: str) -> None:
        # No wake-up: nothing is due before ``quiet`` seconds pass, and waking the
        # scanning thread on each of the thousands of events a copy makes had it
        # contend with the event reader for the GIL and a core while the user copied.
        with self._lock:
            self._last[path] = self._clock()

    def forget(self, path: str) -> None:
        with self._lock:
            self._last.pop(path, None)

    def due(self) -> list[str]:
        """Paths quiet long enough, removed from the waiting set, oldest first."""
        cutoff = self._clock() - self.quiet
        with self._lock:
            ready = sorted((t, p) for p, t in self._last.items() if t <= cutoff)
            for _, path in ready:
                del self._last[path]
        return [p for _, p in ready]

    def wake(self) -> None:
        """End the current :meth:`wait` early (stopping, or other work to do)."""
        self._changed.set()

    def wait(self, timeout: float) -> None:
        """Sleep until :meth:`wake` or ``timeout`` passes (the scanning loop's tick)."""
        self._changed.wait(timeout)
        self._changed.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._last)


#: The only events the agent asks for. Without a filter inotify also reports every open and
#: read-only close (the agent's own reads while scanning included) and a folder event per
#: change, all of which the agent would only drop: CPU spent for nothing.
WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileClosedEvent,
    FileMovedEvent,
    FileDeletedEvent,
]


class ChangeHandler(FileSystemEventHandler):
    """Feeds created, modified, closed and moved-in files to the debouncer; deleted ones leave it."""

    def __init__(self, debouncer: Debouncer) -> None:
        self.debouncer = debouncer

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        kind = event.event_type
        if kind in ("created", "modified", "closed"):
            self.debouncer.touch(_text(event.src_path))
        elif kind == "moved":
            self.debouncer.forget(_text(event.src_path))
            self.debouncer.touch(_text(event.dest_path))
        elif kind == "deleted":
            self.debouncer.forget(_text(event.src_path))


#: How long the inotify reader lets a burst of events gather before it reads them. Read one by
#: one, the events of a user's ``cp -r`` of 1,000 small files cost the agent twice the CPU
#: and the copy itself about 20% more (two Python threads handing each event over while the
#: copy runs); read in batches they cost neither. Detection waits for ``quiet`` seconds
#: anyway, so 20 ms more is not seen.
GATHER_SECONDS = 0.02


def make_observer(gather: float = GATHER_SECONDS) -> BaseObserver:
    """watchdog's observer for this platform; on Linux one whose inotify reader reads in batches."""
    if not sys.platform.startswith("linux") or gather <= 0:
        return Observer()
    try:
        return _gathering_inotify_observer(gather)
    except (ImportError, AttributeError, TypeError) as exc:  # another watchdog layout
        log.info("inotify events are read one by one (%s)", exc)
        return Observer()


def _gathering_inotify_observer(gather: float) -> BaseObserver:
    """An ``InotifyObserver`` built as watchdog builds it, around a reader that waits ``gather``
    seconds after a read that returned events, so the rest of a burst arrives in a few reads."""
    from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver
    from watchdog.observers.inotify_c import InotifyFD

    class GatheringInotifyFD(InotifyFD):
        reads = 0

        def read_events(self, **kwargs: Any) -> Any:
            events = super().read_events(**kwargs)
            if events:
                self.reads += 1
                time.sleep(gather)
            return events

    class GatheringInotifyObserver(InotifyObserver):
        def __init__(self) -> None:
            reader = GatheringInotifyFD()
            reader.start()
            BaseObserver.__init__(self, InotifyEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=reader)
            self._inotify_fd = reader

    return GatheringInotifyObserver()


def _text(path: str | bytes) -> str:
    return os.fsdecode(path)


def read_mount_points(mountinfo: Path = Path("/proc/self/mountinfo")) -> set[str]:
    """Mount points now (empty where there is no mount table to read: not Linux)."""
    try:
        text = mountinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return {m.point for m in parse_mountinfo(text)}


def new_mounts(before: set[str], after: set[str], roots: Iterable[Path]) -> list[str]:
    """Mount points that appeared at or under one of ``roots`` (what the agent must start watching)."""
    prefixes = [str(r).rstrip("/") for r in roots]
    return sorted(
        point for point in after - before if any(point == p or point.startswith(p + "/") for p in prefixes)
    )
