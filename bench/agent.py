"""The endpoint agent's cost on a machine: idle CPU, detection latency, slowdown of a large copy.

    python bench/agent.py [--drops 20] [--idle-seconds 60] [--files 1000] [--repeat 8] [--json]

In one run, against a real ``vakta server run`` on a free loopback port (SQLite
console in a temporary folder) and a real ``vakta agent run --only-watch`` in
its own process watching a temporary folder, with the agent's default settings:

- **idle CPU**: the agent's utime + stime (``/proc/<pid>/stat``, all threads)
  over ``--idle-seconds`` with nothing happening in the watched folder, once it
  has started, reported in its first heartbeat and settled for 5 s; as CPU
  seconds per hour and as % of one core;
- **detection latency**: ``--drops`` copies of the harmless test signature
  written one after another into the watched folder; per drop, the time from
  the file's ``close()`` to the agent's ``detected_at`` and to the alert being
  listed by the console API (``GET /api/v1/alerts``, polled every 20 ms);
  p50/p99/max.  The agent's ``--quiet-seconds`` (default 2) is in this figure:
  a file is scanned once it has not changed for that long;
- **copy slowdown**: ``cp -r`` of ``--files`` small benign files (random bytes
  and text, 0.5-8 KiB, in folders of 100) into the watched folder, with the
  agent stopped (half of the copies before it starts, half after it stops) and
  with it running (after each copy the bench waits for the agent to scan the
  files and go idle, and reports how long that took and the CPU it used).  Best
  of ``--repeat`` copies each side, each batch after an untimed warm-up copy.

Everything is benign generated data; the figures are printed against the goals
(idle CPU < 1% of a core, p99 detection < 5 s, copy slowdown < 10%) as met or
MISSED.  It asserts nothing.  The machine's load average is printed: other
sessions sharing the cores inflate every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from vakta import testsignature

VAKTA = Path(sys.executable).with_name("vakta")
TICK = os.sysconf("SC_CLK_TCK")
GOAL_IDLE_PERCENT = 1.0
GOAL_P99_SECONDS = 5.0
GOAL_SLOWDOWN = 0.10


def vakta_command() -> list[str]:
    return [str(VAKTA)] if VAKTA.exists() else [sys.executable, "-m", "vakta"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, all its threads (fields 14 and 15 of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def loadavg() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def wait_until(what: str, check: Any, timeout: float, pause: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(pause)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


class Setup:
    """A console on loopback, an enrolled agent home, a watched folder and the agent process."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.server_home = tmp / "server"
        self.server_home.mkdir()
        self.home = tmp / "agent-home"
        self.watched = tmp / "watched"
        self.watched.mkdir()
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.database = f"sqlite:///{self.server_home / 'console.db'}"
        self.server: subprocess.Popen[bytes] | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.analyst: httpx.Client | None = None

    def vakta(self, home: Path, *args: str) -> str:
        done = subprocess.run(
            [*vakta_command(), "--home", str(home), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise SystemExit(f"vakta {' '.join(args[:3])} failed: {done.stderr[-2000:]}")
        return done.stdout.strip()

    def start_server(self) -> None:
        command = [*vakta_command(), "--home", str(self.server_home), "server", "run"]
        with (self.tmp / "server.log").open("ab") as log:
            self.server = subprocess.Popen(
                [*command, "--listen", f"127.0.0.1:{self.port}", "--database", self.database],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until("the console", self._healthy, 60, 0.1)
        token = self.vakta(
            self.server_home, "server", "token", "create", "--role", "analyst", "--database", self.database
        )
        self.analyst = httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        enrolment = self.vakta(
            self.server_home,
            "server",
            "token",
            "create",
            "--role",
            "agent-enrolment",
            "--database",
            self.database,
        )
        self.vakta(self.home, "agent", "enroll", "--server", self.base_url, "--token", enrolment)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def start_agent(self) -> int:
        command = [*vakta_command(), "--home", str(self.home), "-v", "agent", "run", "--only-watch"]
        with (self.tmp / "agent.log").open("ab") as log:
            self.agent = subprocess.Popen(
                [*command, "--watch", str(self.watched)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(
            "the agent's first heartbeat", lambda: any(a["last_seen_at"] for a in self.agents()), 60, 0.2
        )
        wait_until("the agent to watch", lambda: "watching" in (self.tmp / "agent.log").read_text(), 60, 0.2)
        # Steady state: the full scan the agent runs at start (niced, CPU-budgeted) is over.
        done = self.home / "agent" / "full-scan.json"  # written when a full scan finishes
        wait_until("the first full scan", done.exists, 600, 0.2)
        return self.agent.pid

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            self.agent.wait(60)

    def agents(self) -> list[dict[str, Any]]:
        assert self.analyst is not None
        result: list[dict[str, Any]] = self.analyst.get("/api/v1/agents").json()
        return result

    def alerts(self) -> list[dict[str, Any]]:
        assert self.analyst is not None
        result: list[dict[str, Any]] = self.analyst.get("/api/v1/alerts", params={"limit": 50}).json()
        return result

    def close(self) -> None:
        self.stop_agent()
        if self.analyst is not None:
            self.analyst.close()
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(30)


# --------------------------------------------------------------------------- measurements


def idle_cpu(pid: int, seconds: float) -> dict[str, float]:
    """The agent's CPU over ``seconds`` of nothing happening."""
    time.sleep(5.0)  # let start-up work settle
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
    return {
        "seconds": round(elapsed, 1),
        "cpu_seconds": round(used, 3),
        "cpu_seconds_per_hour": round(used / elapsed * 3600, 2),
        "percent_of_core": round(used / elapsed * 100, 3),
    }


def parse_time(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def detection(setup: Setup, drops: int) -> dict[str, Any]:
    """Per drop of the test signature: close() to detected_at, and to the alert listed by the console."""
    picture = testsignature.image_bytes()
    folder = setup.watched / "drops"
    folder.mkdir()
    time.sleep(1.0)  # the new folder is watched
    to_detected: list[float] = []
    to_visible: list[float] = []
    for n in range(drops):
        path = folder / f"holiday-{n}.jpg"
        with path.open("wb") as fh:
            fh.write(picture)
        closed = time.time()
        alert = wait_until(
            f"the alert of {path.name}",
            lambda wanted=str(path): next((a for a in setup.alerts() if a["path"] == wanted), None),
            30,
            0.02,
        )
        to_visible.append(time.time() - closed)
        to_detected.append(parse_time(alert["detected_at"]) - closed)
        time.sleep(0.5)
    return {
        "drops": drops,
        "to_detected_p50": round(statistics.median(to_detected), 3),
        "to_visible_p50": round(statistics.median(to_visible), 3),
        "to_visible_p99": round(percentile(to_visible, 99), 3),
        "to_visible_max": round(max(to_visible), 3),
    }


def make_files(folder: Path, count: int, seed: int = 7) -> int:
    """``count`` small benign files (random bytes and text, 0.5-8 KiB) in folders of 100. Bytes written."""
    import random

    rng = random.Random(seed)
    total = 0
    for n in range(count):
        sub = folder / f"d{n // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        size = rng.randint(512, 8192)
        if n % 2:
            data = rng.randbytes(size)
            name = f"file-{n:04d}.bin"
        else:
            data = (
                " ".join(rng.choice(("alpha", "beta", "gamma", "delta")) for _ in range(size // 6))
            ).encode()
            name = f"note-{n:04d}.txt"
        (sub / name).write_bytes(data)
        total += len(data)
    return total


def timed_copy(source: Path, target: Path) -> float:
    """One ``cp -r``, after the page cache's dirty pages are written out.

    Without the sync a copy's time depends mostly on how much the earlier ones left to write
    back (here 30 ms with nothing pending, 300-450 ms behind earlier copies), whether or not
    the agent runs.
    """
    os.sync()
    time.sleep(0.2)
    started = time.perf_counter()
    subprocess.run(["cp", "-r", str(source), str(target)], check=True)
    return time.perf_counter() - started


def wait_idle(pid: int, quiet: float = 1.5, timeout: float = 300.0) -> tuple[float, float]:
    """After a copy: (seconds until the agent's CPU last moved, CPU seconds it used) once it is idle again.

    Idle means no CPU for ``quiet`` s after its own quiet period (2 s) has passed.
    """
    started, first = time.monotonic(), cpu_seconds(pid)
    last_cpu, last_move = first, started
    while time.monotonic() - started < timeout:
        time.sleep(0.1)
        now, cpu = time.monotonic(), cpu_seconds(pid)
        if cpu - last_cpu >= 0.01:
            last_cpu, last_move = cpu, now
        if now - max(last_move, started + 2.5) > quiet:
            break
    return last_move - started, last_cpu - first


def copies(
    source: Path, setup: Setup, label: str, repeat: int, pid: int | None
) -> tuple[list[float], list[tuple[float, float]]]:
    """``repeat`` timed copies (after a warm-up) into new folders under the watched one.

    The copy times, and with the agent running, its (busy seconds, CPU seconds) after each.
    """
    times: list[float] = []
    busy: list[tuple[float, float]] = []
    for n in range(repeat + 1):
        took = timed_copy(source, setup.watched / f"{label}-{n}")
        after = wait_idle(pid) if pid is not None else None
        if n:
            times.append(took)
            if after is not None:
                busy.append(after)
    return times, busy


def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"load_before": loadavg()}
    with tempfile.TemporaryDirectory(prefix="vakta-bench-agent-", dir=os.environ.get("BENCH_TMP")) as tmp:
        setup = Setup(Path(tmp))
        try:
            setup.start_server()
            source = Path(tmp) / "source"
            result["copy_bytes"] = make_files(source, args.files)
            without, _ = copies(source, setup, "before", (args.repeat + 1) // 2, None)
            pid = setup.start_agent()
            result["idle"] = idle_cpu(pid, args.idle_seconds)
            result["detection"] = detection(setup, args.drops)
            with_agent, busy = copies(source, setup, "with", args.repeat, pid)
            setup.stop_agent()
            after, _ = copies(source, setup, "after", args.repeat // 2, None)
        finally:
            setup.close()
    base, loaded = min(without + after), min(with_agent)
    result["copy"] = {
        "files": args.files,
        "without_agent_best": round(base, 4),
        "with_agent_best": round(loaded, 4),
        "slowdown": round(loaded / base - 1, 4),
        "without_agent_all": [round(t, 4) for t in without + after],
        "with_agent_all": [round(t, 4) for t in with_agent],
        "agent_busy_after_copy_median": round(statistics.median(b for b, _ in busy), 2),
        "agent_cpu_per_copy_median": round(statistics.median(c for _, c in busy), 3),
    }
    result["load_after"] = loadavg()
    return result


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report(r: dict[str, Any]) -> None:
    idle, det, copy = r["idle"], r["detection"], r["copy"]
    print(f"load average before {r['load_before']}, after {r['load_after']}")
    print(
        f"idle CPU over {idle['seconds']} s: {idle['cpu_seconds']} CPU s = {idle['cpu_seconds_per_hour']} CPU s/hour"
        f" = {idle['percent_of_core']}% of one core (goal < {GOAL_IDLE_PERCENT}%: "
        f"{verdict(idle['percent_of_core'] < GOAL_IDLE_PERCENT)})"
    )
    print(
        f"detection, {det['drops']} drops: close -> detected p50 {det['to_detected_p50']} s; close -> in the console"
        f" API p50 {det['to_visible_p50']} s, p99 {det['to_visible_p99']} s, max {det['to_visible_max']} s"
        f" (goal p99 < {GOAL_P99_SECONDS} s: {verdict(det['to_visible_p99'] < GOAL_P99_SECONDS)})"
    )
    print(
        f"cp -r of {copy['files']} files ({r['copy_bytes'] / 1e6:.1f} MB): best {copy['without_agent_best']} s without"
        f" the agent, {copy['with_agent_best']} s with it: {copy['slowdown'] * 100:+.1f}% (goal < "
        f"{GOAL_SLOWDOWN * 100:.0f}%: {verdict(copy['slowdown'] < GOAL_SLOWDOWN)}); the agent then scanned them in"
        f" {copy['agent_busy_after_copy_median']} s from the copy's end (its quiet period included) using"
        f" {copy['agent_cpu_per_copy_median']} CPU s (medians)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drops", type=int, default=20, help="test-signature drops timed (default 20)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle CPU window (default 60)")
    parser.add_argument("--files", type=int, default=1000, help="small files per copy (default 1000)")
    parser.add_argument("--repeat", type=int, default=8, help="timed copies per side (default 8)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()
