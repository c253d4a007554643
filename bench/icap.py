"""What `vakta icap` costs behind Squid: added latency and requests/s, against Squid alone.

    python bench/icap.py [--entries 1000000] [--clients 8] [--seconds 20] [--rounds 3] [--json]

One run, one machine, all on loopback:

- an origin web server (threaded, HTTP/1.1 keep-alive) serving, from memory, HTML pages
  (2-60 KB) and benign images: Pillow-generated PNG and JPEG pictures from 20 KB up to 2 MB
  and photos of ``../shared/corpus/originals`` up to 2 MB;
- a ``vakta icap`` subprocess with a fresh home holding the built-in test list and a
  ``--entries`` list (default 1,000,000) of random benign PDQ hashes and MD5 digests,
  imported with ``vakta lists import`` as CSV, so matching costs what a national list costs;
- two Squids configured alike (no cache), one without ICAP (the baseline) and one with
  Vakta as its RESPMOD and REQMOD service (preview on, ``bypass=off``).

Latency: every URL is fetched ``--rounds`` times, one request at a time, through each Squid
(interleaved, so both see the same machine load); p50/p99 per class (pages, images) and the
added latency (ICAP minus baseline, per percentile).  Throughput: ``--clients`` threads with
keep-alive connections fetch URLs in a fixed shuffled order for ``--seconds`` through each
Squid, in ``--slices`` turns that alternate between them; requests/s and the ratio.  Every response body is compared with the origin's
(nothing benign altered); mismatches and non-200 answers are counted and printed per proxy,
and so are requests sent once more because the proxy had closed the reused keep-alive
connection meanwhile (browsers retry those the same way).

Goals (printed met/MISSED, nothing asserted): added p99 < 25 ms for images up to 2 MB, and
>= 70% of the baseline's requests/s.  The machine's two cores are shared: the load generator,
the origin, Squid and Vakta all run on them, so the throughput figure is the whole system's.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "originals"
SQUID = shutil.which("squid") or "/usr/sbin/squid"
MAX_IMAGE = 2 << 20
TIMEOUT = 40.0  # per request: above the ICAP server's 30 s body-read limit, so its failures surface as 5xx
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
"""
ICAP_CONF = """\
icap_enable on
icap_preview_enable on
icap_send_client_ip on
icap_send_client_username on
icap_service vakta respmod_precache icap://127.0.0.1:{icap_port}/{respmod} bypass=off
adaptation_access vakta allow all
icap_service vakta_req reqmod_precache icap://127.0.0.1:{icap_port}/{reqmod} bypass=off
adaptation_access vakta_req allow all
"""


# --- content -----------------------------------------------------------------------


def _picture(rng: np.random.Generator, side: int, fmt: str, noise: int) -> bytes:
    """A benign picture: gradients plus noise (noise sets the encoded size)."""
    y, x = np.mgrid[0:side, 0:side]
    base = np.stack([x * 255 // side, y * 255 // side, (x + y) * 127 // side], axis=-1)
    pixels = np.clip(base + rng.integers(-noise, noise + 1, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return out.getvalue()


def _page(rng: np.random.Generator, kb: int) -> bytes:
    words = ["vakta", "proxy", "filter", "page", "news", "weather", "link", "table", "list", "text"]
    paragraph = " ".join(rng.choice(words, 60))
    body = "".join(f"<p>{i}: {paragraph}</p>\n" for i in range(kb * 1024 // (len(paragraph) + 12)))
    return f"<!doctype html><html><head><title>page</title></head><body>{body}</body></html>".encode()


def content(photos: int, seed: int = 3) -> dict[str, tuple[str, bytes]]:
    """URL path -> (content type, body): pages, generated pictures and corpus photos up to 2 MB."""
    rng = np.random.default_rng(seed)
    files: dict[str, tuple[str, bytes]] = {}
    for i, kb in enumerate((2, 5, 10, 20, 30, 45, 60, 15)):
        files[f"/page/{i}.html"] = ("text/html; charset=utf-8", _page(rng, kb))
    shapes = [(160, "JPEG", 20), (400, "JPEG", 30), (800, "JPEG", 40), (1200, "JPEG", 60), (1600, "JPEG", 60)]
    shapes += [(256, "PNG", 10), (512, "PNG", 20), (700, "PNG", 60)]
    for i, (side, fmt, noise) in enumerate(shapes):
        data = _picture(rng, side, fmt, noise)
        if len(data) <= MAX_IMAGE:
            files[f"/img/gen{i}.{fmt.lower()}"] = (f"image/{fmt.lower()}", data)
    chosen = (
        sorted(p for p in CORPUS.glob("*.jpg") if p.stat().st_size <= MAX_IMAGE) if CORPUS.is_dir() else []
    )
    random.Random(seed).shuffle(chosen)
    for path in chosen[:photos]:
        files[f"/img/{path.name}"] = ("image/jpeg", path.read_bytes())
    return files


class _Origin(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are separate writes: no 40 ms delayed-ACK stall
    files: ClassVar[dict[str, tuple[str, bytes]]] = {}

    def do_GET(self) -> None:
        kind, body = self.files.get(self.path.split("?")[0], ("text/plain", b""))
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


# --- processes ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


@contextmanager
def _serving(command: list[str], port: int, what: str, log: Any = subprocess.DEVNULL) -> Iterator[None]:
    """A server process for the length of the block, once it listens on ``port``."""
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, what)
        yield
    finally:
        process.terminate()
        process.wait(20)


def make_list(home: Path, entries: int, seed: int = 11) -> float:
    """Import ``entries`` random PDQ + MD5 rows as one CSV list; returns the import's seconds."""
    rng = np.random.default_rng(seed)
    csv = home / "big.csv"
    with csv.open("w") as fh:
        fh.write("md5,pdq\n")
        for start in range(0, entries, 100_000):
            n = min(100_000, entries - start)
            md5 = rng.integers(0, 256, (n, 16), dtype=np.uint8)
            pdq = rng.integers(0, 256, (n, 32), dtype=np.uint8)
            fh.writelines(f"{m.tobytes().hex()},{p.tobytes().hex()}\n" for m, p in zip(md5, pdq, strict=True))
    started = time.perf_counter()
    command = [
        sys.executable,
        "-m",
        "vakta",
        "--home",
        str(home),
        "lists",
        "import",
        str(csv),
        "--name",
        "big",
    ]
    subprocess.run([*command, "--format", "csv"], check=True, stdout=subprocess.DEVNULL)
    csv.unlink()
    return time.perf_counter() - started


@contextmanager
def vakta_icap(home: Path, workers: int) -> Iterator[int]:
    port = _free_port()
    log = (home / "icap.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "vakta",
        "-v",
        "--home",
        str(home),
        "icap",
        "--listen",
        f"127.0.0.1:{port}",
    ]
    with log, _serving([*command, "--workers", str(workers)], port, "vakta icap", log):
        yield port


C_ICAP = shutil.which("c-icap") or "/usr/bin/c-icap"
C_ICAP_SERVICES = Path("/usr/lib/x86_64-linux-gnu/c_icap")
C_ICAP_CONF = """\
PidFile {dir}/c-icap.pid
CommandsSocket {dir}/c-icap.ctl
Timeout 300
MaxKeepAliveRequests 0
KeepAliveTimeout 600
StartServers 1
MaxServers 1
MinSpareThreads 4
MaxSpareThreads 20
ThreadsPerChild 20
MaxRequestsPerChild 0
Port 127.0.0.1:{port}
TmpDir {dir}
MaxMemObject 4194304
DebugLevel 0
Pipelining on
ModulesDir {services}
ServicesDir {services}
ServerLog {dir}/server.log
AccessLog /dev/null
Service echo srv_echo.so
"""


@contextmanager
def c_icap(folder: Path) -> Iterator[int]:
    """c-icap (the C ICAP server) with its echo service: an ICAP service that checks nothing.

    Squid through it costs what the ICAP exchanges alone cost, the floor for any service.
    """
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    port = _free_port()
    conf = C_ICAP_CONF.format(port=port, dir=folder, services=C_ICAP_SERVICES)
    (folder / "c-icap.conf").write_text(conf)
    with _serving([C_ICAP, "-N", "-f", str(folder / "c-icap.conf")], port, "c-icap"):
        yield port


@contextmanager
def squid(
    folder: Path, icap_port: int | None, services: tuple[str, str] = ("respmod", "reqmod")
) -> Iterator[int]:
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    port = _free_port()
    conf = SQUID_CONF.format(http_port=port, dir=folder)
    if icap_port is not None:
        conf += ICAP_CONF.format(icap_port=icap_port, respmod=services[0], reqmod=services[1])
    (folder / "squid.conf").write_text(conf)
    with _serving([SQUID, "-N", "-f", str(folder / "squid.conf")], port, "squid"):
        yield port


# --- load ---------------------------------------------------------------------------


#: A reused keep-alive connection the proxy closed meanwhile: what browsers and urllib3 retry once.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Client:
    """One keep-alive connection to a proxy; fetches absolute URLs and checks bodies.

    A GET that fails on a reused connection before any answer (the proxy closed it
    meanwhile) is sent once more on a new one, as browsers do; ``retried`` counts those.
    """

    def __init__(self, proxy: int, origin: str, files: dict[str, tuple[str, bytes]]) -> None:
        self.proxy, self.origin, self.files = proxy, origin, files
        self.conn = self._connect()
        self.reused = False
        self.bad: list[str] = []
        self.retried = 0

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.proxy, timeout=TIMEOUT)

    def _get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", self.origin + path)
        reply = self.conn.getresponse()
        return reply.status, reply.read()

    def fetch(self, path: str) -> float:
        started = time.perf_counter()
        try:
            try:
                status, body = self._get(path)
            except STALE:
                if not self.reused:
                    raise
                self.retried += 1
                self.conn.close()
                self.conn = self._connect()
                status, body = self._get(path)
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn, self.reused = self._connect(), False
            self.bad.append(f"{path}: {type(exc).__name__}")
            return time.perf_counter() - started
        self.reused = True
        seconds = time.perf_counter() - started
        if status != 200 or body != self.files[path][1]:
            self.bad.append(f"{path}: status {status}, {len(body)} bytes")
        return seconds


def latency(
    proxies: dict[str, int], origin: str, files: dict[str, tuple[str, bytes]], rounds: int
) -> dict[str, Any]:
    """One request at a time, each URL ``rounds`` times per proxy, the proxies interleaved."""
    clients = {name: Client(port, origin, files) for name, port in proxies.items()}
    times: dict[str, dict[str, list[float]]] = {name: {"page": [], "image": []} for name in proxies}
    slowest: dict[str, list[tuple[float, str, int]]] = {name: [] for name in proxies}
    paths = list(files)
    for name in proxies:  # warm-up: connections made, ICAP OPTIONS fetched
        for path in paths[:3]:
            clients[name].fetch(path)
        clients[name].bad.clear()
    for round_ in range(rounds):
        random.shuffle(paths)
        for path in paths:
            kind = "page" if path.startswith("/page/") else "image"
            for name, client in clients.items():
                seconds = client.fetch(path)
                times[name][kind].append(seconds)
                slowest[name] = sorted([*slowest[name], (seconds * 1000, path, round_ + 1)], reverse=True)[:4]
    return {
        "times": times,
        "slowest": slowest,
        "bad": {name: c.bad for name, c in clients.items()},
        "retried": {name: c.retried for name, c in clients.items()},
    }


def throughput(
    proxy: int, origin: str, files: dict[str, tuple[str, bytes]], clients: int, seconds: float
) -> dict[str, Any]:
    """``clients`` threads, keep-alive, fetching a shuffled URL sequence for ``seconds``."""
    stop = time.perf_counter() + seconds
    done: list[int] = [0] * clients
    volume: list[int] = [0] * clients
    bad: list[str] = []
    retried: list[int] = [0] * clients

    def run(i: int) -> None:
        client = Client(proxy, origin, files)
        order = list(files)
        random.Random(i).shuffle(order)
        n = 0
        while time.perf_counter() < stop:
            path = order[n % len(order)]
            client.fetch(path)
            volume[i] += len(files[path][1])
            n += 1
        done[i] = n
        retried[i] = client.retried
        bad.extend(client.bad)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {
        "requests_per_s": sum(done) / wall,
        "mb_per_s": sum(volume) / wall / 1e6,
        "bad": bad,
        "retried": sum(retried),
        "wall": wall,
    }


def _cpu_seconds(marker: str) -> float:
    """User + system CPU of the processes whose command line holds ``marker`` (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() not in (entry / "cmdline").read_bytes():
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _cpu_snapshot(parts: dict[str, str]) -> dict[str, float]:
    """CPU seconds so far of each part (by command-line marker) and of this process (client, origin)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"client+origin": own.ru_utime + own.ru_stime} | {
        part: _cpu_seconds(m) for part, m in parts.items()
    }


def alternated(
    proxies: dict[str, int],
    origin: str,
    files: dict[str, tuple[str, bytes]],
    clients: int,
    seconds: float,
    slices: int,
    parts: dict[str, dict[str, str]],
) -> dict[str, dict[str, Any]]:
    """:func:`throughput` per proxy over ``seconds`` in all, taken in ``slices`` turns that alternate.

    Whatever else the machine does meanwhile (and it drifts over a minute) then
    falls on both proxies alike, instead of on whichever ran in that stretch.
    ``parts[proxy]`` names the processes behind a proxy (part -> command-line marker);
    the CPU each used during that proxy's turns is returned per request.
    """
    totals: dict[str, dict[str, Any]] = {
        name: {"requests": 0.0, "bytes": 0.0, "wall": 0.0, "bad": [], "retried": 0, "slices": [], "cpu": {}}
        for name in proxies
    }
    for _ in range(slices):
        for name, port in proxies.items():
            before = _cpu_snapshot(parts[name])
            part = throughput(port, origin, files, clients, seconds / slices)
            after = _cpu_snapshot(parts[name])
            total = totals[name]
            for key, spent in after.items():
                total["cpu"][key] = total["cpu"].get(key, 0.0) + spent - before[key]
            total["requests"] += part["requests_per_s"] * part["wall"]
            total["bytes"] += part["mb_per_s"] * part["wall"]
            total["wall"] += part["wall"]
            total["bad"] += part["bad"]
            total["retried"] += part["retried"]
            total["slices"].append(round(part["requests_per_s"], 1))
            print(f"  [{name}: {part['requests_per_s']:.1f} req/s]", file=sys.stderr)
    return {
        name: {
            "requests_per_s": t["requests"] / t["wall"],
            "mb_per_s": t["bytes"] / t["wall"],
            "bad": t["bad"],
            "retried": t["retried"],
            "slices": t["slices"],
            "cpu_ms_per_request": {key: 1000 * spent / t["requests"] for key, spent in t["cpu"].items()},
        }
        for name, t in totals.items()
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


# --- main ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000, help="random PDQ+MD5 list entries")
    parser.add_argument("--photos", type=int, default=40, help="corpus photos (<= 2 MB) served")
    parser.add_argument("--rounds", type=int, default=3, help="latency passes over every URL")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive clients")
    parser.add_argument("--seconds", type=float, default=20.0, help="throughput time per proxy, in all")
    parser.add_argument(
        "--slices", type=int, default=4, help="turns the proxies take, alternating, in that time"
    )
    parser.add_argument("--workers", type=int, default=2, help="vakta icap --workers")
    parser.add_argument(
        "--c-icap",
        action="store_true",
        help="also Squid with c-icap's echo service (C, checks nothing): the cost of ICAP itself",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.c_icap and not (Path(C_ICAP).exists() and (C_ICAP_SERVICES / "srv_echo.so").exists()):
        raise SystemExit(
            f"--c-icap needs c-icap and its echo service ({C_ICAP_SERVICES}): apt-get install c-icap"
        )
    files = content(args.photos)
    _Origin.files = files
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{httpd.server_address[1]}"
    tmp = Path(tempfile.mkdtemp(prefix="vakta-bench-icap-"))
    tmp.chmod(0o777)
    result: dict[str, Any] = {"entries": args.entries, "urls": len(files), "load_before": os.getloadavg()[0]}
    try:
        home = tmp / "home"
        home.mkdir()
        result["import_s"] = make_list(home, args.entries)
        print(f"  [imported {args.entries:,} PDQ+MD5 entries in {result['import_s']:.1f} s]", file=sys.stderr)
        with (
            vakta_icap(home, args.workers) as icap_port,
            squid(tmp / "plain", None) as plain,
            squid(tmp / "icap", icap_port) as filtered,
            ExitStack() as extra,
        ):
            proxies = {"squid": plain, "squid+vakta": filtered}
            if args.c_icap:
                echo_port = extra.enter_context(c_icap(tmp / "c-icap"))
                proxies["squid+c-icap"] = extra.enter_context(
                    squid(tmp / "echo", echo_port, ("echo", "echo"))
                )
            lat = latency(proxies, origin, files, args.rounds)
            result["latency"] = {
                name: {
                    kind: {
                        "n": len(v),
                        "p50": _pct(v, 50),
                        "p99": _pct(v, 99),
                        "mean": statistics.mean(v) * 1000,
                    }
                    for kind, v in kinds.items()
                }
                for name, kinds in lat["times"].items()
            }
            result["bad"] = lat["bad"]
            result["slowest"] = lat["slowest"]
            result["retried"] = lat["retried"]
            parts = {
                "squid": {"squid": str(tmp / "plain")},
                "squid+vakta": {"squid": str(tmp / "icap"), "vakta icap": str(home)},
                "squid+c-icap": {"squid": str(tmp / "echo"), "c-icap": str(tmp / "c-icap")},
            }
            result["throughput"] = alternated(
                proxies, origin, files, args.clients, args.seconds, args.slices, parts
            )
        result["icap_log"] = (home / "icap.log").read_text(errors="replace").splitlines()[-3:]
    finally:
        httpd.shutdown()
        if os.environ.get("BENCH_KEEP"):
            print(f"  [kept {tmp}]", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["load_after"] = os.getloadavg()[0]
    result["sizes"] = {
        "page_kb": [len(b) / 1024 for p, (_, b) in files.items() if p.startswith("/page/")],
        "image_kb": [len(b) / 1024 for p, (_, b) in files.items() if p.startswith("/img/")],
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    _report(result)


def _report(r: dict[str, Any]) -> None:
    sizes = r["sizes"]
    print(
        f"{r['urls']} URLs: {len(sizes['page_kb'])} pages ({min(sizes['page_kb']):.0f}-{max(sizes['page_kb']):.0f} KB), "
        f"{len(sizes['image_kb'])} images ({min(sizes['image_kb']):.0f}-{max(sizes['image_kb']):.0f} KB); "
        f"list of {r['entries']:,} PDQ+MD5 entries plus the test list"
    )
    print(f"load average before/after: {r['load_before']:.2f} / {r['load_after']:.2f} (2 cores)")
    lat, tp = r["latency"], r["throughput"]
    filtered = [name for name in lat if name != "squid"]
    print(f"{'latency (ms, one at a time)':32}{'p50':>8}{'p99':>8}{'added p50':>11}{'p99':>8}")
    for kind in ("page", "image"):
        a = lat["squid"][kind]
        print(f"{kind + 's (' + str(a['n']) + ' requests)':32}")
        print(f"{'  squid':32}{a['p50']:>8.1f}{a['p99']:>8.1f}")
        for name in filtered:
            b = lat[name][kind]
            print(
                f"{'  ' + name:32}{b['p50']:>8.1f}{b['p99']:>8.1f}"
                f"{b['p50'] - a['p50']:>11.1f}{b['p99'] - a['p99']:>8.1f}"
            )
    for name in lat:
        print(
            f"slowest through {name}: "
            + ", ".join(f"{path} (round {n}) {ms:.1f} ms" for ms, path, n in r["slowest"][name])
        )
    base = tp["squid"]["requests_per_s"]
    print(f"throughput: squid {base:.1f} req/s ({tp['squid']['mb_per_s']:.1f} MB/s)")
    for name in filtered:
        print(
            f"  {name} {tp[name]['requests_per_s']:.1f} req/s ({tp[name]['mb_per_s']:.1f} MB/s), "
            f"ratio {tp[name]['requests_per_s'] / base:.2f}"
        )
    print("  CPU per request (ms), all processes in that proxy's turns:")
    for name in tp:
        cpu = tp[name]["cpu_ms_per_request"]
        print(
            f"    {name}: {sum(cpu.values()):.2f} = "
            + " + ".join(f"{part} {ms:.2f}" for part, ms in cpu.items())
        )
    print("  by turn: " + "; ".join(f"{name} {', '.join(str(x) for x in tp[name]['slices'])}" for name in tp))
    mine = tp["squid+vakta"]["requests_per_s"]
    added = lat["squid+vakta"]["image"]["p99"] - lat["squid"]["image"]["p99"]
    print(f"goal added p99 for images < 25 ms: {added:.1f} ms {'met' if added < 25 else 'MISSED'}")
    print(
        f"goal >= 70% of Squid's requests/s: {100 * mine / base:.0f}% {'met' if mine / base >= 0.7 else 'MISSED'}"
    )
    for name in lat:
        bad = [*r["bad"][name], *tp[name]["bad"]]
        retried = r["retried"][name] + tp[name]["retried"]
        print(
            f"{name}: answers not 200 or different from the origin's: {len(bad)}"
            + (f" (first: {bad[:5]})" if bad else "")
            + f"; closed keep-alive connections, the request sent again: {retried}"
        )
    print("vakta icap: " + " | ".join(r["icap_log"]))


if __name__ == "__main__":
    main()
