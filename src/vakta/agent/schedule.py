"""Scheduled full scans of the watched paths: low priority, a CPU budget, the scan cache, progress.

The scan runs in a child process (``python -m vakta.agent.schedule``), not a
thread: niceness is per thread on Linux but per process on macOS and Windows,
and a process of its own is the one thing every system can lower as a whole
without slowing the watcher.  The child lowers its CPU priority (``os.nice``)
and, on Linux, its I/O priority to the idle class (``ioprio_set``: the call is
Linux's; elsewhere the service manager sets it, launchd's ``LowPriorityIO``, a
Windows service priority).  It keeps its average CPU use under
``--scan-cpu-percent`` of one core by sleeping between files
(:class:`CpuBudget`).  Files go through the watcher's pipeline and lists
(:func:`vakta.agent.core.open_lists`) with the scan cache of ``vakta scan
--cache``: a file whose device, inode, size, mtime and ctime are unchanged
costs a stat and a lookup, never a read.

The child takes its job as one JSON line on standard input and answers in JSON
lines on standard output (alerts, progress, the end); the end of its standard
input means "stop" (the agent is stopping, or died).  Alerts go into the
agent's on-disk queue with the watcher's idempotency key, so a file found by
both is one alert at the console.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from vakta.items import Item
from vakta.pipeline import Scanner
from vakta.reporting.identity import agent_folder, write_private

if TYPE_CHECKING:
    from vakta.agent.core import Agent
    from vakta.cache import SignalCache

log = logging.getLogger(__name__)

#: Under ``<home>/agent``: the last full scan, the scan cache, the lock one scan at a time holds.
STATE_FILE = "full-scan.json"
CACHE_FILE = "scan-cache.sqlite"
LOCK_FILE = "full-scan.lock"
#: Seconds between progress messages from the child (heartbeats pick the latest).
PROGRESS_EVERY = 1.0
#: After a failed scan, try again after this long (or the interval, if shorter).
RETRY_SECONDS = 600.0
#: Counters the heartbeat's ``scan_progress`` carries.
COUNTERS = ("files", "bytes", "errors", "matches", "cache_hits")


def now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- priority


#: ``ioprio_set`` system call numbers (the C library has no wrapper).
_IOPRIO_SET = {
    "x86_64": 251, "amd64": 251, "i386": 289, "i686": 289, "aarch64": 30, "arm64": 30,
    "riscv64": 30, "armv7l": 314, "armv6l": 314, "ppc64le": 273, "ppc64": 273, "s390x": 282,
}  # fmt: skip
_IOPRIO_WHO_PROCESS = 1
_IOPRIO_CLASS_IDLE = 3
_IOPRIO_CLASS_SHIFT = 13


def io_idle() -> str | None:
    """Put this process in the idle I/O class (Linux); None when done, else why not."""
    if not sys.platform.startswith("linux"):
        return "I/O priority is set only on Linux (ioprio_set); use the service manager's setting"
    number = _IOPRIO_SET.get(platform.machine().lower())
    if number is None:
        return f"no known ioprio_set call on {platform.machine()}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, _IOPRIO_CLASS_IDLE << _IOPRIO_CLASS_SHIFT) != 0:
        return f"ioprio_set: {os.strerror(ctypes.get_errno())}"
    return None


def lower_priority(niceness: int) -> None:
    """Raise this process's niceness to ``niceness`` (0: leave it) and make its I/O idle where possible."""
    if niceness > 0 and hasattr(os, "nice"):
        try:
            # Read with getpriority: even nice(0) is a setpriority call, which a service's
            # system-call filter may forbid (see packaging/systemd/vakta-agent.service).
            current = os.getpriority(os.PRIO_PROCESS, 0)
            if niceness > current:
                os.nice(niceness - current)
        except OSError as exc:
            log.info("full scan: cannot lower the CPU priority: %s", exc)
    problem = io_idle()
    if problem:
        log.info("full scan: I/O priority unchanged: %s", problem)


# --------------------------------------------------------------------------- CPU budget


class CpuBudget:
    """Keeps a process's average CPU use under ``percent`` of one core by sleeping between items.

    CPU time (``time.process_time``: every thread of the process) is compared
    with wall time since the start; when the CPU used needs more wall time than
    has passed, :meth:`pace` sleeps the difference.  Time spent idle (waiting
    for the disk) is credited only up to ``max_credit`` seconds, so a slow
    stretch does not buy a long burst at full speed afterwards.  One item is
    never cut short: a large file costs its CPU at once and is paid for after.
    """

    def __init__(
        self,
        percent: float,
        sleep: Callable[[float], object] = time.sleep,
        cpu: Callable[[], float] = time.process_time,
        wall: Callable[[], float] = time.monotonic,
        max_credit: float = 2.0,
    ) -> None:
        self.share = min(max(percent, 1.0), 100.0) / 100.0
        self._sleep, self._cpu, self._wall = sleep, cpu, wall
        self.max_credit = max_credit
        self._cpu0, self._wall0 = cpu(), wall()
        self.slept = 0.0

    def pace(self) -> float:
        """Sleep as long as the budget needs now; the seconds slept."""
        if self.share >= 1.0:
            return 0.0
        owed = (self._cpu() - self._cpu0) / self.share - (self._wall() - self._wall0)
        if owed > 0:
            self._sleep(owed)
            self.slept += owed
            return owed
        if -owed > self.max_credit:
            self._wall0 += -owed - self.max_credit
        return 0.0


# --------------------------------------------------------------------------- the scan (child side)


@dataclass
class Job:
    """What the child is asked to do (sent as JSON: the child is a fresh interpreter)."""

    home: str
    agent_id: str
    hostname: str
    paths: list[str]
    cpu_percent: float = 25.0
    nice: int = 19
    limits: dict[str, Any] = field(default_factory=dict)
    log_level: int = logging.WARNING


@dataclass
class PacedScanner(Scanner):
    """The pipeline's scanner, asking ``gate`` before each file is hashed (False: stop), and
    leaving out what is under ``exclude`` (the agent's own state changes while it would be read)."""

    gate: Callable[[], bool] | None = None
    exclude: bytes | None = None

    def items(self, targets: Iterable[str]) -> Iterator[Item]:
        for item in super().items(targets):
            if self.exclude is not None and item.path.startswith(self.exclude):
                continue
            if self.gate is not None and not self.gate():
                return
            yield item


class FullScan:
    """One full scan, in whichever process runs it (the child; a test in process).

    ``emit`` gets ``{"alert": body, "key": key}`` for each match, ``{"progress":
    counters}`` about once a second and ``{"done": counters, "outcome": ...}``
    at the end.
    """

    def __init__(self, job: Job, emit: Callable[[dict[str, Any]], None], stop: threading.Event) -> None:
        self.job = job
        self.emit = emit
        self.stop = stop
        self.budget = CpuBudget(job.cpu_percent, sleep=stop.wait)  # started again once the lists are open

    def _gate(self) -> bool:
        self.budget.pace()
        return not self.stop.is_set()

    def run(self) -> dict[str, Any]:
        from vakta.agent.core import alert_for, open_lists
        from vakta.containers import Limits
        from vakta.notify.storage import StorageProbe
        from vakta.reporting.identity import Identity

        home = Path(self.job.home)
        cache = open_scan_cache(home)
        store, base, _ = open_lists(home, Limits(**self.job.limits), cache)
        # The budget covers the scan itself: opening the lists is a start-up cost, as the interpreter's.
        self.budget = CpuBudget(self.job.cpu_percent, sleep=self.stop.wait)
        started, cpu0 = time.monotonic(), time.process_time()
        own = os.fsencode(os.path.join(os.path.abspath(home), ""))
        scanner = PacedScanner(**vars(base), gate=self._gate, exclude=own)
        identity = Identity("", self.job.agent_id, "", self.job.hostname)
        probe, last = StorageProbe(), time.monotonic()
        paths = [p for p in self.job.paths if os.path.isdir(p)]
        try:
            for finding in scanner.scan(paths):
                if finding.signals.errors:
                    log.info("%s: %s", finding.signals.location, "; ".join(finding.signals.errors))
                if finding.matches:
                    key, body = alert_for(identity, probe, finding)
                    self.emit({"alert": body, "key": key})
                if time.monotonic() - last >= PROGRESS_EVERY:
                    self.emit({"progress": counters(scanner)})
                    last = time.monotonic()
        finally:
            cache.close()
            store.close()
        return {
            "done": counters(scanner),
            "outcome": "stopped" if self.stop.is_set() else "completed",
            "cpu_seconds": round(time.process_time() - cpu0, 3),
            "wall_seconds": round(time.monotonic() - started, 3),
            "slept_seconds": round(self.budget.slept, 3),
        }


def counters(scanner: Scanner) -> dict[str, int]:
    """The heartbeat's counters: files (members included), bytes, errors, matched files, cache hits."""
    s = scanner.stats
    return {"files": s.files, "bytes": s.bytes, "errors": s.errors, "matches": s.matched_files,
            "cache_hits": s.cache_hits}  # fmt: skip


def open_scan_cache(home: Path, best_effort: bool = False) -> SignalCache:
    """The agent's scan cache, shared by its full scans and its watcher (see :class:`SignalCache`)."""
    from vakta.cache import SignalCache
    from vakta.signals.model import HashOptions

    path = agent_folder(home) / CACHE_FILE
    _private(path)  # the cache's -wal and -shm files take its mode
    return SignalCache(path, HashOptions().fingerprint(), best_effort)


def _private(path: Path) -> None:
    """Create ``path`` mode 0600 if it is missing, as every file of the agent's state."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600))


def _exclusive(path: Path) -> IO[bytes] | None:
    """A lock held while the returned file stays open (one full scan per home); None if taken."""
    _private(path)
    handle = open(path, "a+b")  # noqa: SIM115 - held for the life of the scan
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def child_main() -> int:
    """The child process: read the job, lower the priority, scan, report; stop when stdin ends."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else printed goes to the log, never into the channel
    job = Job(**json.loads(sys.stdin.readline()))
    logging.basicConfig(level=job.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    stop = threading.Event()
    threading.Thread(target=_stop_at_eof, args=(stop,), daemon=True).start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    def emit(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message, separators=(",", ":")) + "\n")
        channel.flush()

    lower_priority(job.nice)
    lock = _exclusive(agent_folder(Path(job.home)) / LOCK_FILE)
    try:
        if lock is None:
            emit({"done": {}, "outcome": "failed", "error": "another full scan is running"})
            return 0
        emit(FullScan(job, emit, stop).run())
    except BrokenPipeError:
        return 0  # the agent is gone
    except Exception as exc:
        log.exception("full scan failed")
        emit({"done": {}, "outcome": "failed", "error": f"{type(exc).__name__}: {exc}"})
    finally:
        if lock is not None:
            lock.close()
    return 0


def _stop_at_eof(stop: threading.Event) -> None:
    sys.stdin.read()
    stop.set()


# --------------------------------------------------------------------------- the schedule (agent side)


class Schedule:
    """When full scans run, and what the agent makes of the child's messages."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.state_path = agent_folder(agent.home) / STATE_FILE
        state = load_state(self.state_path)
        agent.health.last_scan_at = state.get("finished_at")
        agent.health.scan_progress = progress_of(state.get("progress"), "idle")
        self.process: subprocess.Popen[str] | None = None

    def loop(self) -> None:
        """Run a full scan when the last is older than the interval, then every interval, until stop."""
        every = self.agent.settings.full_scan_every
        if every <= 0:
            log.info("scheduled full scans are off")
            return
        while not self.agent.stopped():
            last = self.agent.health.last_scan_at
            wait = 0.0 if last is None else (last + timedelta(seconds=every) - now()).total_seconds()
            if wait > 0:
                self.agent.stopped(min(wait, 3600.0))
                continue
            if self.run_once() != "completed":
                self.agent.stopped(min(every, RETRY_SECONDS))

    def run_once(self) -> str:
        """One full scan in a child process; its outcome (completed, stopped, failed)."""
        agent, settings = self.agent, self.agent.settings
        paths = [str(p) for p in settings.paths]
        log.warning("full scan of %s started", ", ".join(paths) or "(nothing)")
        job = Job(str(agent.home), agent.identity.agent_id, agent.identity.hostname, paths,
                  settings.scan_cpu_percent, settings.scan_nice, asdict(settings.limits),
                  logging.getLogger("vakta").getEffectiveLevel())  # fmt: skip
        started = now()
        agent.health.scan_progress = {"state": "running", "started_at": started.isoformat(),
                                      "finished_at": None, **dict.fromkeys(COUNTERS, 0)}  # fmt: skip
        command = [sys.executable, "-m", "vakta.agent.schedule"]
        process = self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, encoding="utf-8"
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(asdict(job)) + "\n")
        process.stdin.flush()
        stopper = threading.Thread(target=self._stop_child, args=(process,), daemon=True)
        stopper.start()
        end: dict[str, Any] = {"outcome": "failed", "error": "the scan process ended early"}
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue  # cut short by the child's death: its end is reported below
            if "alert" in message:
                agent.queue_alert(str(message["key"]), message["alert"])
            elif "progress" in message:
                agent.health.scan_progress.update(message["progress"])
            elif "done" in message:
                end = message
        code = process.wait()
        return self._finished(started, end, code)

    def _stop_child(self, process: subprocess.Popen[str]) -> None:
        """Close the child's stdin when the agent stops (it ends after its current file), then make sure."""
        while process.poll() is None:
            if self.agent.stopped(0.5):
                try:
                    assert process.stdin is not None
                    process.stdin.close()
                    process.wait(20)
                except (OSError, subprocess.TimeoutExpired):
                    process.kill()
                return

    def _finished(self, started: datetime, end: dict[str, Any], code: int) -> str:
        outcome = str(end.get("outcome", "failed"))
        finished = now()
        progress = {"state": "idle", "started_at": started.isoformat(), "finished_at": finished.isoformat(),
                    **{k: int(end.get("done", {}).get(k, 0)) for k in COUNTERS}, "outcome": outcome}  # fmt: skip
        health = self.agent.health
        health.scan_progress = progress
        if outcome == "completed":
            health.last_scan_at = finished
            save_state(self.state_path, finished, progress)
            log.warning("full scan finished: %d files (%d from the cache), %d matched, %d errors; "
                        "%.1f s CPU in %.1f s", progress["files"], progress["cache_hits"],
                        progress["matches"], progress["errors"], end.get("cpu_seconds", 0),
                        end.get("wall_seconds", 0))  # fmt: skip
        else:
            level = logging.WARNING if outcome == "stopped" else logging.ERROR
            log.log(level, "full scan %s (exit %d) %s", outcome, code, end.get("error", ""))
        return outcome


def progress_of(saved: Any, state: str) -> dict[str, Any]:
    """The heartbeat's ``scan_progress`` from a saved one (the counters of the last scan)."""
    progress: dict[str, Any] = {"state": state}
    if isinstance(saved, dict):
        for key in ("started_at", "finished_at", "outcome"):
            if isinstance(saved.get(key), str):
                progress[key] = saved[key]
        for key in COUNTERS:
            if isinstance(saved.get(key), int):
                progress[key] = saved[key]
    return progress


def load_state(path: Path) -> dict[str, Any]:
    """The last completed full scan (``finished_at`` as a datetime, ``progress``); {} if none or damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        finished = datetime.fromisoformat(data["finished_at"])
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: ignored (%s): the next full scan starts now", path, exc)
        return {}
    if finished.tzinfo is None or finished > now() + timedelta(days=1):
        return {}  # a clock set wrong must not put the next scan off for ever
    return {"finished_at": finished, "progress": data.get("progress")}


def save_state(path: Path, finished: datetime, progress: dict[str, Any]) -> None:
    data = {"finished_at": finished.isoformat(), "progress": progress}
    try:
        write_private(path, json.dumps(data).encode())
    except OSError as exc:
        log.error("cannot record the full scan in %s: %s", path, exc)


if __name__ == "__main__":
    sys.exit(child_main())
