"""Alert ingestion of a real ``vakta server run``: throughput, latency, and no alert lost or doubled.

    python bench/console.py [--agents 200] [--alerts 50] [--postgres URL] [--no-sqlite] [--no-fault] [--json]

For each database (a SQLite file, then a fresh database on PostgreSQL) it
starts ``vakta server run`` on a loopback port as its own process, makes an
admin token with the CLI, and enrols ``--agents`` simulated agents, each with
its own one-time enrolment token. Every agent then drains a queue of
``--alerts`` alerts concurrently with the others (asyncio + httpx), in batches
of 1-50 alerts with an idempotency key per alert, as an agent would: a batch
leaves the queue only on a 2xx, any other answer or none means send the same
batch again. One batch in 20 is sent a second time after its 2xx (a reply the
agent never saw): the server must report it all duplicates.

It reports alerts/s accepted (new alerts over the wall time of the ingestion)
and p50/p99 request latency, then lists every alert through the API and
checks by count that each sent key is stored exactly once (none lost, none
doubled, none unknown). SQLite is the baseline the PostgreSQL rate is a ratio
of. The goal, >= 500 alerts/s on PostgreSQL with nothing lost or doubled, is
printed as met or MISSED.

The fault run (PostgreSQL when available, else SQLite) kills the server with
SIGKILL once a third of the alerts are acknowledged, starts it again on the
same port and lets the agents retry. Acknowledged means a 2xx was received:
every acknowledged alert must be stored, and nothing doubled.

PostgreSQL: ``--postgres URL`` (a role that may create databases), else
``$VAKTA_TEST_POSTGRES_URL``, else a throwaway cluster started the way
``.ci/run`` does (needs Debian's postgresql package and root), else skipped
with a message. The benchmark's own database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

GOAL_RATE = 500.0
MAX_BATCH = 50
RETRY_SHARE = 0.05  # batches sent again after their 2xx
VAKTA = [str(Path(sys.executable).with_name("vakta"))]


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    """``vakta server run`` as a child process on a fixed loopback port."""

    url: str
    home: Path
    port: int
    workers: int = 1
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        command = [*VAKTA, "--home", str(self.home), "server", *args, "--database", self.url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"vakta server {args[0]} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self, timeout: float = 60) -> None:
        listen = f"127.0.0.1:{self.port}"
        command = [
            *VAKTA,
            "--home",
            str(self.home),
            "server",
            "run",
            "--listen",
            listen,
            "--database",
            self.url,
            "--workers",
            str(self.workers),
        ]
        with (self.home / "server.log").open("ab") as log:  # its own group: kill -9 reaches every worker
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.process.returncode}, see {self.home}/server.log"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {timeout} s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.process.pid, sig)  # the supervisor and its workers at once, as a crash
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- agents


@dataclass
class Tally:
    """What the agents saw: acknowledged keys, request latencies, answers by kind."""

    acked: set[tuple[str, str]] = field(default_factory=set)
    sent: set[tuple[str, str]] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    new: int = 0
    duplicates: int = 0
    retried_batches: int = 0
    failures: Counter[str] = field(default_factory=Counter)


def make_alert(agent: int, serial: int) -> dict[str, Any]:
    """A benign alert: hashes of a generated key, a plausible path and list provenance."""
    key = f"a{agent}-{serial}-{uuid.uuid4().hex[:8]}"
    user = f"user{serial % 3}"
    return {
        "idempotency_key": key,
        "detected_at": datetime.now(UTC).isoformat(),
        "user": user,
        "path": f"/home/{user}/Downloads/{key}.jpg",
        "storage": random.choice(["internal", "removable", "network", "cloud-sync"]),
        "size": 1234 + serial,
        "type": "image/jpeg",
        "md5": hashlib.md5(key.encode()).hexdigest(),
        "sha256": hashlib.sha256(key.encode()).hexdigest(),
        "matches": [{"list": "bench-list", "entry_id": f"e-{serial}", "category": "1", "signal": "md5"}],
    }


async def post(client: httpx.AsyncClient, secret: str, batch: list[dict[str, Any]], tally: Tally) -> Any:
    """One submission; the answer's JSON on a 2xx, None otherwise (the caller sends it again)."""
    start = time.perf_counter()
    try:
        response = await client.post(
            "/api/v1/alerts", json={"alerts": batch}, headers={"Authorization": f"Bearer {secret}"}
        )
    except httpx.TransportError as exc:
        tally.failures[type(exc).__name__] += 1
        return None
    tally.latencies.append(time.perf_counter() - start)
    if not response.is_success:
        tally.failures[f"HTTP {response.status_code}"] += 1
        return None
    return response.json()


async def agent_loop(
    client: httpx.AsyncClient, agent_id: str, secret: str, queue: list[dict[str, Any]], tally: Tally
) -> None:
    """Drain the queue in batches of 1-50; a batch leaves it only on a 2xx."""
    rng = random.Random(agent_id)
    while queue:
        batch = queue[: rng.randint(1, MAX_BATCH)]
        tally.sent.update((agent_id, a["idempotency_key"]) for a in batch)
        answer = await post(client, secret, batch, tally)
        if answer is None:
            await asyncio.sleep(0.2 + rng.random() * 0.3)
            continue
        tally.new += answer["new"]
        tally.duplicates += answer["duplicates"]
        tally.acked.update((agent_id, a["idempotency_key"]) for a in batch)
        del queue[: len(batch)]
        if rng.random() < RETRY_SHARE:
            tally.retried_batches += 1
            await resend(client, agent_id, secret, batch, tally)


async def resend(
    client: httpx.AsyncClient, agent_id: str, secret: str, batch: list[dict[str, Any]], tally: Tally
) -> None:
    """Send an acknowledged batch again until a 2xx; every alert of it must come back a duplicate."""
    while (answer := await post(client, secret, batch, tally)) is None:
        await asyncio.sleep(0.2)
    tally.new += answer["new"]
    tally.duplicates += answer["duplicates"]
    if answer["new"]:
        tally.failures["retried batch stored again"] += answer["new"]


async def enrol_all(base: str, admin: str, count: int) -> list[tuple[str, str]]:
    """``count`` agents, each enrolled with its own one-time token: (agent id, secret)."""
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        auth = {"Authorization": f"Bearer {admin}"}

        async def one(i: int) -> tuple[str, str]:
            made = await client.post("/api/v1/tokens", json={"role": "agent-enrolment"}, headers=auth)
            made.raise_for_status()
            body = {"hostname": f"bench-host-{i}", "os": "linux", "version": "bench"}
            headers = {"Authorization": f"Bearer {made.json()['token']}"}
            enrolled = await client.post("/api/v1/agents/enrol", json=body, headers=headers)
            enrolled.raise_for_status()
            return enrolled.json()["agent_id"], enrolled.json()["secret"]

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def ingest(
    server: Server, agents: list[tuple[str, str]], per_agent: int, kill_at: float | None
) -> tuple[Tally, float]:
    """All agents at once; with ``kill_at`` the server is SIGKILLed at that share acknowledged, then restarted."""
    tally = Tally()
    queues = {aid: [make_alert(i, n) for n in range(per_agent)] for i, (aid, _) in enumerate(agents)}
    limits = httpx.Limits(max_connections=len(agents), max_keepalive_connections=len(agents))
    async with httpx.AsyncClient(base_url=server.base, timeout=60, limits=limits) as client:
        start = time.perf_counter()
        loops = [agent_loop(client, aid, secret, queues[aid], tally) for aid, secret in agents]
        tasks = [asyncio.ensure_future(loop) for loop in loops]
        if kill_at is not None:
            await crash_and_restart(server, tally, kill_at * len(agents) * per_agent)
        await asyncio.gather(*tasks)
        return tally, time.perf_counter() - start


async def crash_and_restart(server: Server, tally: Tally, after: float) -> None:
    while len(tally.acked) < after:
        await asyncio.sleep(0.01)
    server.stop(signal.SIGKILL)
    print(f"  killed the server (-9) with {len(tally.acked)} alerts acknowledged", file=sys.stderr)
    await asyncio.to_thread(server.start)
    print("  restarted it; agents retry", file=sys.stderr)


# --------------------------------------------------------------------------- checking


def stored_keys(base: str, admin: str) -> Counter[tuple[str, str]]:
    """Every stored alert's (agent, idempotency key), counted, listed through the API."""
    seen: Counter[tuple[str, str]] = Counter()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}, timeout=120) as client:
        offset = 0
        while True:
            page = client.get("/api/v1/alerts", params={"limit": 1000, "offset": offset})
            page.raise_for_status()
            rows = page.json()
            seen.update((row["agent_id"], row["idempotency_key"]) for row in rows)
            if len(rows) < 1000:
                return seen
            offset += len(rows)


def verdict(tally: Tally, stored: Counter[tuple[str, str]]) -> dict[str, int]:
    return {
        "sent": len(tally.sent),
        "stored": sum(stored.values()),
        "lost": len(tally.sent - stored.keys()),
        "acknowledged_lost": len(tally.acked - stored.keys()),
        "duplicated": sum(n - 1 for n in stored.values() if n > 1),
        "unknown": len(stored.keys() - tally.sent),
    }


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0.0


def run_one(label: str, url: str, args: argparse.Namespace, work: Path, fault: bool) -> dict[str, Any]:
    home = work / label
    home.mkdir()
    server = Server(url, home, free_port(), args.workers)
    server.start()
    try:
        admin = server.cli("token", "create", "--role", "admin")
        agents = asyncio.run(enrol_all(server.base, admin, args.agents))
        kill_at = 1 / 3 if fault else None
        tally, seconds = asyncio.run(ingest(server, agents, args.alerts, kill_at))
        checked = verdict(tally, stored_keys(server.base, admin))
    finally:
        server.stop()
    ms = [x * 1000 for x in tally.latencies]
    return {
        "database": label,
        "agents": len(agents),
        "requests": len(ms),
        "retried_batches": tally.retried_batches,
        "alerts_per_s": tally.new / seconds,
        "seconds": seconds,
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "new": tally.new,
        "duplicates_reported": tally.duplicates,
        "failures": dict(tally.failures),
        **checked,
    }


# --------------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def postgres_admin(given: str | None, work: Path) -> Iterator[str | None]:
    """An admin URL: given, from the environment, or a throwaway cluster; None when there is none."""
    url = given or os.environ.get("VAKTA_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins or os.geteuid() != 0:
        yield None
        return
    with throwaway_cluster(bins[-1].parent, work / "pg") as started:
        yield started


@contextlib.contextmanager
def throwaway_cluster(pgbin: Path, pgdir: Path) -> Iterator[str]:
    """A PostgreSQL cluster on a free loopback port, as ``.ci/run`` starts it, stopped on exit."""
    pgdir.mkdir()
    (pgdir / "pw").write_text("vakta\n")
    shutil.chown(pgdir, "postgres")
    shutil.chown(pgdir / "pw", "postgres")
    port = free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"]
    initdb = [str(pgbin / "initdb"), "-D", str(pgdir / "data"), "-U", "vakta", f"--pwfile={pgdir / 'pw'}"]
    subprocess.run([*as_postgres, *initdb, "-A", "scram-sha-256"], check=True, capture_output=True)
    ctl = [*as_postgres, str(pgbin / "pg_ctl"), "-D", str(pgdir / "data"), "-l", str(pgdir / "log")]
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {pgdir} -c max_connections=200"
    subprocess.run([*ctl, "-w", "-o", options, "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://vakta:vakta@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "stop"], check=False, capture_output=True)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database for one run, dropped afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"vakta_bench_{uuid.uuid4().hex[:10]}"
    admin = make_url(admin_url).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- main


def runs(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    results = []
    if args.sqlite:
        results.append(run_one("sqlite", f"sqlite:///{work / 'console.db'}", args, work, False))
    with postgres_admin(args.postgres, work) as admin_url:
        if admin_url is None:
            print("PostgreSQL skipped: no --postgres URL, no VAKTA_TEST_POSTGRES_URL, no initdb as root")
        else:
            with postgres_database(admin_url) as url:
                results.append(run_one("postgresql", url, args, work, False))
        if args.fault:
            results.append(fault_run(args, work, admin_url))
    return results


def fault_run(args: argparse.Namespace, work: Path, admin_url: str | None) -> dict[str, Any]:
    if admin_url is None:
        return run_one("fault-sqlite", f"sqlite:///{work / 'fault.db'}", args, work, True)
    with postgres_database(admin_url) as url:
        return run_one("fault-postgresql", url, args, work, True)


def report(results: list[dict[str, Any]]) -> None:
    base = next((r["alerts_per_s"] for r in results if r["database"] == "sqlite"), None)
    print(
        f"{'run':<18}{'alerts/s':>10}{'vs sqlite':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'sent':>8}{'lost':>6}{'ack lost':>9}{'doubled':>8}{'retried':>8}"
    )
    for r in results:
        ratio = f"{r['alerts_per_s'] / base:.2f}x" if base else "-"
        print(
            f"{r['database']:<18}{r['alerts_per_s']:>10,.0f}{ratio:>10}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['sent']:>8}{r['lost']:>6}{r['acknowledged_lost']:>9}{r['duplicated']:>8}{r['retried_batches']:>8}"
        )
        if r["failures"]:
            print(f"  failed requests (retried): {r['failures']}")
    for r in results:
        clean = r["lost"] == r["acknowledged_lost"] == r["duplicated"] == r["unknown"] == 0
        clean = clean and "retried batch stored again" not in r["failures"]
        if r["database"] == "postgresql":
            met = clean and r["alerts_per_s"] >= GOAL_RATE
            print(
                f"goal >= {GOAL_RATE:.0f} alerts/s on PostgreSQL, none lost or doubled: {'met' if met else 'MISSED'}"
            )
        else:
            print(f"{r['database']}: none lost or doubled: {'met' if clean else 'MISSED'}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--alerts", type=int, default=50, help="alerts queued on each agent")
    ap.add_argument(
        "--postgres", help="postgresql://user:pass@host:port/db of a role that may create databases"
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="server processes (vakta server run --workers; default one per core, as docs/server.md advises)",
    )
    ap.add_argument("--no-sqlite", dest="sqlite", action="store_false")
    ap.add_argument("--no-fault", dest="fault", action="store_false", help="skip the kill -9 run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vakta-console-bench-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # a throwaway cluster's postgres user reaches its folder inside
        results = runs(args, work)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
