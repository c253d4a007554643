"""Hashing speed and agreement: Vakta's PDQ against the reference, and `vakta scan` scaling.

    python bench/hashing.py [CORPUS_DIR] [--repeat N] [--no-scan] [--wait-quiet S] [--json]

CORPUS_DIR defaults to ``../shared/corpus/originals`` beside the project (benign photos only).

What is measured, in one process and one run, on the same files:

1. **Baseline**: ``threatexchange``'s ``pdq_from_file(path)``: Pillow decodes the whole
   image at full size, ``pdqhash`` (Meta's C++ reference) hashes it.  This is what a
   Python user gets today (``pip install vakta[bench]`` brings it in).
2. **vakta (digests + PDQ)**: ``compute_signals`` on the open file, the path ``vakta hash``
   takes: one read, MD5/SHA-1/SHA-256 on the way, then ``decode_luma`` (JPEGs decoded at
   1/2-1/8 scale where that cannot move the hash) and the numpy PDQ with all eight
   dihedral hashes.  Extra query variants (border-trimmed, upscaled) are off, as in
   ``vakta hash``.
3. **vakta (PDQ only)**: read the file, then the PDQ hasher alone (``decode_luma`` and
   ``pdq.dihedral_hashes``, as ``vakta.signals.pdq_hasher`` does), to show what the
   digests cost.

Each file is timed on its own; a method's time for a file is the best of ``--repeat``
passes (the machine has two cores and may be shared, so the minimum is the least noisy
estimate), and images/s is the file count over the sum of those times.  The methods are
interleaved pass by pass so that a burst of load elsewhere hits all of them alike.  Vakta's
cached sampling matrices are cleared before each pass, as in a freshly started scan.
Images per CPU-second (``time.process_time``: all threads of this process) are reported
next to images/s: CPU time is less disturbed by other processes than wall time, and a
CPU figure well below the wall one means extra threads (BLAS) were spinning.

The ratio vakta/baseline is given over the whole corpus and over the photos of 8 MP or
more (dimensions read from the header, without decoding), where the reduced JPEG decode
should pay off most.  The PDQ bit distance between Vakta's hash and the reference's is
summarised over the same two sets (p99 with numpy's linear interpolation); it says whether the shortcuts (reduced decode, JPEG
luma instead of RGB-derived luma, float32 matrix products) stay within a bit or so.

A per-stage breakdown re-runs Vakta's path stage by stage with the real functions (read,
digests, ``decode_luma``, sampling matrices, ``dihedral_hashes``), checks that it yields
the same hash, and splits ``decode_luma`` (header parse, Pillow's reduced decode, luma
conversion) and the matrix products further, so it shows where the time goes rather
than guessing.  The same is done for the baseline
(decode to an array, ``pdqhash.compute``).

Finally the real CLI, ``vakta scan --format summary --no-test-list --home <tmp>``, runs on
the corpus with ``--workers 1`` and ``--workers 2`` (best of ``--repeat`` each, after every
file was read once to warm the page cache) and the 2-vs-1 speed-up is reported.  The scan
keeps its default extra query variants (border-trimmed, upscaled), so it does more work per
image than 1-3 and its files/s are not comparable with theirs.

The machine may be shared (the project's machines have two cores and other sessions run
on them), so every timed phase is printed with the CPU other processes used meanwhile
(from ``/proc/stat``), the scan section with this machine's own 2-vs-1 process scaling on
plain Python arithmetic measured at the same time (2.0 = two free cores), and
``--wait-quiet S`` waits up to S seconds before each timed pass for the others to idle.

Goals are printed next to the figures and marked met or missed.  Nothing is asserted:
timings on a shared two-core machine are not fit for a pass/fail test.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vakta.signals import imaging, pdq
from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals
from vakta.signals.pdq_hasher import HASHER

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = PROJECT_ROOT.parent / "shared" / "corpus" / "originals"
BIG_PIXELS = 8_000_000

BASELINE = "baseline"
VAKTA_FULL = "vakta_full"
VAKTA_PDQ = "vakta_pdq"
LABELS = {
    BASELINE: "baseline: threatexchange pdq_from_file",
    VAKTA_FULL: "vakta (digests + PDQ)",
    VAKTA_PDQ: "vakta (PDQ only)",
}

#: (key, description, target, higher is better)
GOALS: list[tuple[str, str, float, bool]] = [
    ("ratio_all", "speed vakta/baseline, whole corpus", 5.0, True),
    ("ratio_big", "speed vakta/baseline, >= 8 MP photos", 10.0, True),
    ("distance_mean", "mean distance to reference (bits)", 1.0, False),
    ("distance_p99", "p99 distance to reference (bits)", 8.0, False),
    ("scan_speedup", "vakta scan, 2 workers vs 1", 1.6, True),
]

HashFn = Callable[[Path], str]


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True, slots=True)
class CorpusFile:
    path: Path
    width: int
    height: int
    size: int

    @property
    def big(self) -> bool:
        return self.width * self.height >= BIG_PIXELS


def list_corpus(folder: Path) -> list[CorpusFile]:
    """Every file under ``folder`` that Pillow can identify, with its stored dimensions."""
    files: list[CorpusFile] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            with Image.open(path) as im:  # reads the header only
                width, height = im.size
        except Exception:  # not an image: nothing to compare
            continue
        files.append(CorpusFile(path, width, height, path.stat().st_size))
    return files


def warm_page_cache(files: list[CorpusFile]) -> None:
    for f in files:
        f.path.read_bytes()


@functools.cache
def hash_options() -> HashOptions:
    """The options of ``vakta hash``: the stored image's hashes only, no extra query variants.

    The switch was called ``trim_borders`` and is now ``extra_queries``; either is accepted.
    """
    names = {f.name for f in dataclasses.fields(HashOptions)}
    for switch in ("extra_queries", "trim_borders"):
        if switch in names:
            return HashOptions(**{switch: False})
    return HashOptions()


def clear_vakta_caches() -> None:
    """Forget the cached sampling and DCT matrices, as a freshly started worker would have."""
    for name in ("sampling_matrix", "_dct_matrix"):
        fn = getattr(pdq, name, None)
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()


# --------------------------------------------------------------------------- the three hashers


def baseline_hash(path: Path) -> str:
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_file

    hex_str, _quality = pdq_from_file(path)
    return str(hex_str)


def vakta_full_hash(path: Path) -> str:
    with path.open("rb") as stream:
        signals = compute_signals(stream, Signals(str(path)), hash_options())
    if signals.pdq is None:
        raise ValueError("; ".join(signals.errors) or "no PDQ hash")
    return signals.pdq


def vakta_pdq_hash(path: Path) -> str:
    with path.open("rb") as stream:
        data = stream.read()
    signals = Signals(str(path))
    HASHER.compute(data, signals, hash_options())
    if signals.pdq is None:
        raise ValueError("no PDQ hash")
    return signals.pdq


METHODS: dict[str, HashFn] = {BASELINE: baseline_hash, VAKTA_FULL: vakta_full_hash, VAKTA_PDQ: vakta_pdq_hash}


@dataclass
class MethodTimes:
    """Best-of-passes wall and CPU seconds per file, and the hash each file got."""

    wall: list[float]
    cpu: list[float]
    hashes: list[str | None]
    errors: dict[str, str] = field(default_factory=dict)


def time_methods(
    files: list[CorpusFile], repeat: int, wait: Callable[[], None], loads: list[float]
) -> dict[str, MethodTimes]:
    """Best-of-``repeat`` times per file for each method; appends each pass's foreign load to ``loads``."""
    n = len(files)
    times = {m: MethodTimes([float("inf")] * n, [float("inf")] * n, [None] * n) for m in METHODS}
    order = list(METHODS)
    for fn in METHODS.values():  # import plugins, allocate first arrays: not part of the timing
        with contextlib.suppress(Exception):
            fn(files[0].path)
    for rnd in range(repeat):
        for method in order[rnd % len(order) :] + order[: rnd % len(order)]:
            fn, rec = METHODS[method], times[method]
            wait()
            clear_vakta_caches()
            with CpuMeter() as meter:
                for i, f in enumerate(files):
                    w0, c0 = time.perf_counter(), time.process_time()
                    try:
                        value: str | None = fn(f.path)
                    except Exception as exc:  # a file a hasher cannot read is reported, not fatal
                        value = None
                        rec.errors[str(f.path)] = f"{type(exc).__name__}: {exc}"
                    w1, c1 = time.perf_counter(), time.process_time()
                    rec.wall[i] = min(rec.wall[i], w1 - w0)
                    rec.cpu[i] = min(rec.cpu[i], c1 - c0)
                    rec.hashes[i] = value
            if meter.others_cores is not None:
                loads.append(meter.others_cores)
    return times


# --------------------------------------------------------------------------- breakdown


VAKTA_STAGES = (
    ("read", "open + read the file"),
    ("digests", "MD5 + SHA-1 + SHA-256"),
    ("decode_luma", "header, reduced decode, luma"),
    ("matrices", "sampling matrices (cold cache)"),
    ("hashes", "dihedral_hashes: products, DCT, bits"),
)
#: Timed beside the stages, not part of the path: how decode_luma and the products split up.
VAKTA_EXTRA = (
    ("open", "decode_luma: Image.open (header)"),
    ("decode", "decode_luma: draft + load (decode)"),
    ("luma", "decode_luma: luma conversion"),
    ("grid64", "dihedral_hashes: one grid64 product"),
)
BASELINE_STAGES = (
    ("open", "Image.open (header parse)"),
    ("decode", "full decode to an RGB array"),
    ("pdqhash", "pdqhash.compute (C++ reference)"),
    ("format", "bits to hex"),
)


def _axis_scales(scale: int | tuple[int, int]) -> tuple[int, int]:
    """Per-axis reduction of a decode (older Vakta used one ``int`` for both axes)."""
    return scale if isinstance(scale, tuple) else (scale, scale)


def vakta_stages(path: Path, options: HashOptions) -> tuple[dict[str, float], str, int]:
    """Vakta's path for one file, stage by stage; returns stage seconds, the hash and the JPEG scale.

    The stages call the real functions (``decode_luma``, ``pdq.sampling_matrix``,
    ``pdq.dihedral_hashes``) in the order ``compute_signals`` and the PDQ hasher do, so the
    caller can check the hash against the real path.  Beside them, and not counted in the
    total, ``decode_luma``'s own steps are re-run one by one (header parse, Pillow's reduced
    decode, luma conversion) and one ``grid64`` is timed, to show how those stages split up.
    """
    import hashlib

    t: dict[str, float] = {}
    c = time.perf_counter()
    with path.open("rb") as stream:
        data = stream.read()
    t["read"], c = time.perf_counter() - c, time.perf_counter()
    for d in (hashlib.md5(usedforsecurity=False), hashlib.sha1(usedforsecurity=False), hashlib.sha256()):
        d.update(data)
        d.hexdigest()
    t["digests"], c = time.perf_counter() - c, time.perf_counter()
    decoded = imaging.decode_luma(data, reduce_jpeg=options.reduce_jpeg)
    t["decode_luma"], c = time.perf_counter() - c, time.perf_counter()
    luma, full_shape = decoded.luma, (decoded.height, decoded.width)
    row_scale, col_scale = _axis_scales(decoded.scale)
    pdq.sampling_matrix(luma.shape[0], row_scale, decoded.height)
    pdq.sampling_matrix(luma.shape[1], col_scale, decoded.width)
    t["matrices"], c = time.perf_counter() - c, time.perf_counter()
    hashes, _quality = pdq.dihedral_hashes(luma, decoded.scale, full_shape)
    t["hashes"], c = time.perf_counter() - c, time.perf_counter()
    pdq.grid64(luma, decoded.scale, full_shape)
    t["grid64"] = time.perf_counter() - c
    t.update(_decode_steps(data, options))
    return t, hashes[0], row_scale


def _decode_steps(data: bytes, options: HashOptions) -> dict[str, float]:
    """``decode_luma``'s main steps one by one (a mirror of it, for the split only)."""
    t: dict[str, float] = {}
    c = time.perf_counter()
    im = Image.open(io.BytesIO(data))
    width, height = im.size
    t["open"], c = time.perf_counter() - c, time.perf_counter()
    if options.reduce_jpeg and im.format == "JPEG" and im.mode in ("RGB", "L"):
        wanted = imaging._jpeg_scale(width, height)
        if wanted > 1:
            im.draft("L", (width // wanted, height // wanted))
    im.load()
    t["decode"], c = time.perf_counter() - c, time.perf_counter()
    imaging._to_luma(im)
    t["luma"] = time.perf_counter() - c
    return t


def baseline_stages(path: Path) -> tuple[dict[str, float], str]:
    import pdqhash

    t: dict[str, float] = {}
    c = time.perf_counter()
    im: Image.Image = Image.open(path)
    t["open"], c = time.perf_counter() - c, time.perf_counter()
    if im.mode in ("LA", "I;16"):
        im = im.convert("RGB")
    array = np.asarray(im)
    if array.ndim == 2:
        array = np.concatenate([array[..., np.newaxis]] * 3, axis=2)
    t["decode"], c = time.perf_counter() - c, time.perf_counter()
    vector, _quality = pdqhash.compute(array)
    t["pdqhash"], c = time.perf_counter() - c, time.perf_counter()
    bits = "".join(str(x) for x in vector)
    hex_str = f"{int(bits, 2):064x}"
    t["format"] = time.perf_counter() - c
    return t, hex_str


@dataclass
class Breakdown:
    vakta: list[dict[str, float]]
    baseline: list[dict[str, float]]
    scales: list[int]
    mismatches: list[str]


def time_breakdown(
    files: list[CorpusFile], repeat: int, reference: MethodTimes, wait: Callable[[], None]
) -> Breakdown:
    """Best-of-``repeat`` seconds per stage and file for both paths."""
    options = hash_options()
    vak: list[dict[str, float]] = [{} for _ in files]
    base: list[dict[str, float]] = [{} for _ in files]
    scales = [1] * len(files)
    mismatches: list[str] = []
    for rnd in range(repeat):
        wait()
        clear_vakta_caches()
        for i, f in enumerate(files):
            try:
                stages, value, scales[i] = vakta_stages(f.path, options)
            except Exception as exc:
                mismatches.append(f"{f.path.name}: {type(exc).__name__}: {exc}")
                continue
            if rnd == 0 and reference.hashes[i] is not None and value != reference.hashes[i]:
                mismatches.append(f"{f.path.name}: step-by-step hash differs from compute_signals")
            for k, v in stages.items():
                vak[i][k] = min(vak[i].get(k, float("inf")), v)
            try:
                bstages, _ = baseline_stages(f.path)
            except Exception:
                continue
            for k, v in bstages.items():
                base[i][k] = min(base[i].get(k, float("inf")), v)
    return Breakdown(vak, base, scales, mismatches)


# --------------------------------------------------------------------------- machine load


class CpuMeter:
    """CPU the rest of the machine used while a block ran, from ``/proc/stat`` (Linux).

    On a shared two-core machine another busy process takes a core away from a two-worker
    scan, so every timing below is printed with how many cores others used meanwhile.
    """

    def __init__(self) -> None:
        self.wall = 0.0
        self.others_cores: float | None = None

    @staticmethod
    def _sample() -> tuple[float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = [int(x) for x in fields] + [0] * 8
        tick = os.sysconf("SC_CLK_TCK")
        idle = ticks[3] + ticks[4]
        busy = sum(ticks[:8]) - idle
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        return busy / tick, ours

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        self.wall = time.perf_counter() - self._t0
        if self._start is None or end is None or self.wall <= 0:
            return
        busy = end[0] - self._start[0]
        ours = end[1] - self._start[1]
        self.others_cores = max(0.0, busy - ours) / self.wall


def _spin(n: int) -> None:
    total = 0
    for i in range(n):
        total += i * i


def machine_scaling(n: int = 3_000_000) -> float:
    """How much two processes gain over one on pure Python arithmetic right now (2.0 = two free cores)."""
    import multiprocessing

    def timed(count: int) -> float:
        procs = [multiprocessing.Process(target=_spin, args=(n,)) for _ in range(count)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        return time.perf_counter() - t0

    one = timed(1)
    two = timed(2)
    return 2 * one / two


@dataclass
class QuietWaiter:
    """Before each timed pass, wait (up to ``max_wait`` s) until other processes leave the CPUs alone.

    Quiet means: over one second, other processes used less than ``threshold`` cores.  How
    often the wait ran out is reported, so noisy figures are not mistaken for clean ones.
    """

    max_wait: float = 0.0
    threshold: float = 0.15
    waits: int = 0
    timed_out: int = 0

    def __call__(self) -> None:
        if self.max_wait <= 0:
            return
        self.waits += 1
        deadline = time.monotonic() + self.max_wait
        while time.monotonic() < deadline:
            with CpuMeter() as meter:
                time.sleep(1.0)
            if meter.others_cores is None or meter.others_cores < self.threshold:
                return
        self.timed_out += 1


# --------------------------------------------------------------------------- scan


def vakta_command() -> list[str]:
    script = Path(sys.executable).with_name("vakta")
    if script.exists():
        return [str(script)]
    found = shutil.which("vakta")
    return [found] if found else [sys.executable, "-m", "vakta"]


def run_scan(corpus: Path, workers: int, home: Path) -> dict[str, float]:
    """One ``vakta scan`` run: its summary plus wall and CPU seconds of the whole process tree."""
    cmd = [
        *vakta_command(),
        "--home",
        str(home),
        "scan",
        "--workers",
        str(workers),
        "--format",
        "summary",
        "--no-test-list",
        "--no-progress",
        str(corpus),
    ]
    before = os.times()
    with CpuMeter() as meter:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    after = os.times()
    if proc.returncode not in (0, 2):
        raise RuntimeError(f"vakta scan exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON summary on stdout: {proc.stdout[-500:]!r} {proc.stderr[-500:]!r}")
    summary: dict[str, float] = json.loads(lines[-1])
    summary["process_wall_s"] = meter.wall
    summary["others_cores"] = meter.others_cores if meter.others_cores is not None else float("nan")
    summary["process_cpu_s"] = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return summary


def time_scans(corpus: Path, repeat: int, wait: Callable[[], None]) -> dict[str, Any]:
    runs: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    scaling: list[float] = []
    with tempfile.TemporaryDirectory(prefix="vakta-bench-home-") as tmp:
        home = Path(tmp)
        run_scan(corpus, 1, home)  # creates the home's list store; not timed
        for rnd in range(repeat):
            wait()
            scaling.append(machine_scaling())
            for workers in (1, 2) if rnd % 2 == 0 else (2, 1):
                wait()
                runs[workers].append(run_scan(corpus, workers, home))
    result: dict[str, Any] = {}
    for workers, summaries in runs.items():
        best = max(summaries, key=lambda s: s["files_per_s"])
        result[str(workers)] = {
            "files": best["files"],
            "errors": best["errors"],
            "files_per_s": best["files_per_s"],
            "all_files_per_s": [s["files_per_s"] for s in summaries],
            "elapsed_s": best["elapsed_s"],
            "process_wall_s": round(min(s["process_wall_s"] for s in summaries), 3),
            "process_cpu_s": round(min(s["process_cpu_s"] for s in summaries), 3),
            "others_cores": [round(s["others_cores"], 2) for s in summaries],
        }
    result["speedup"] = result["2"]["files_per_s"] / result["1"]["files_per_s"]
    result["cpu_ratio"] = result["2"]["process_cpu_s"] / result["1"]["process_cpu_s"]
    result["machine_scaling"] = [round(x, 2) for x in scaling]
    return result


# --------------------------------------------------------------------------- summaries


def distance_stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    arr = np.asarray(values, dtype=np.float64)
    return {
        "n": len(values),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def speed(times: MethodTimes, keep: list[bool]) -> dict[str, float]:
    wall = sum(t for t, k in zip(times.wall, keep, strict=True) if k)
    cpu = sum(t for t, k in zip(times.cpu, keep, strict=True) if k)
    n = sum(keep)
    return {
        "images": n,
        "seconds": wall,
        "cpu_seconds": cpu,
        "images_per_s": n / wall if wall else 0.0,
        "images_per_cpu_s": n / cpu if cpu else 0.0,
    }


def stage_means(
    rows: list[dict[str, float]], keep: list[bool], stages: tuple[tuple[str, str], ...]
) -> dict[str, float]:
    """Mean milliseconds per image of each stage over the kept files."""
    picked = [r for r, k in zip(rows, keep, strict=True) if k and r]
    if not picked:
        return {}
    return {name: 1000 * statistics.fmean(r.get(name, 0.0) for r in picked) for name, _ in stages}


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "loadavg_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "packages": {
            p: _version(version, p) for p in ("vakta", "numpy", "pillow", "pdqhash", "threatexchange")
        },
        "thread_env": {
            k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ
        },
    }
    try:
        info = importlib.import_module("threadpoolctl").threadpool_info()
        env["blas_threads"] = [f"{i['internal_api']}={i['num_threads']}" for i in info]
    except ImportError:
        env["blas_threads"] = "threadpoolctl not installed"
    try:
        head = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        )
        env["git"] = head.stdout.strip() or None
    except OSError:
        env["git"] = None
    return env


def _version(version: Callable[[str], str], name: str) -> str | None:
    try:
        return version(name)
    except Exception:
        return None


def run(corpus: Path, repeat: int, scan: bool, wait: QuietWaiter) -> dict[str, Any]:
    env = environment()
    files = list_corpus(corpus)
    if not files:
        raise SystemExit(f"error: no images found in {corpus}")
    warm_page_cache(files)
    big = [f.big for f in files]

    loads: list[float] = []
    times = time_methods(files, repeat, wait, loads)
    env["others_cores_while_hashing"] = statistics.fmean(loads) if loads else None
    env["others_cores_while_hashing_max"] = max(loads) if loads else None
    ok = [all(times[m].hashes[i] is not None for m in METHODS) for i in range(len(files))]
    ok_big = [o and b for o, b in zip(ok, big, strict=True)]

    speeds = {m: {"all": speed(times[m], ok), "big": speed(times[m], ok_big)} for m in METHODS}
    ratios: dict[str, dict[str, float | None]] = {}
    for m in (VAKTA_FULL, VAKTA_PDQ):
        ratios[m] = {}
        for subset, keep in (("all", ok), ("big", ok_big)):
            base_s = speeds[BASELINE][subset]["seconds"]
            own_s = speeds[m][subset]["seconds"]
            ratios[m][subset] = base_s / own_s if any(keep) and own_s else None
            base_cpu, own_cpu = speeds[BASELINE][subset]["cpu_seconds"], speeds[m][subset]["cpu_seconds"]
            ratios[m][f"{subset}_cpu"] = base_cpu / own_cpu if any(keep) and own_cpu else None

    dist_all: list[int] = []
    dist_big: list[int] = []
    per_file: list[tuple[int, CorpusFile]] = []
    disagree = 0
    for i, f in enumerate(files):
        ours, ref, alone = times[VAKTA_FULL].hashes[i], times[BASELINE].hashes[i], times[VAKTA_PDQ].hashes[i]
        if not ok[i] or ours is None or ref is None:
            continue
        disagree += alone != ours
        d = pdq.hamming(ours, ref)
        dist_all.append(d)
        per_file.append((d, f))
        if f.big:
            dist_big.append(d)
    worst = sorted(per_file, key=lambda x: (-x[0], x[1].path.name))[:5]
    histogram: dict[str, int] = {}
    for d in sorted(set(dist_all)):
        histogram[str(d)] = dist_all.count(d)

    breakdown = time_breakdown(files, repeat, times[VAKTA_FULL], wait)
    scale_counts: dict[str, int] = {}
    for s in breakdown.scales:
        scale_counts[f"1/{s}"] = scale_counts.get(f"1/{s}", 0) + 1

    scan_result = time_scans(corpus, repeat, wait) if scan else None
    env["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    env["quiet_wait"] = {"max_s": wait.max_wait, "waits": wait.waits, "timed_out": wait.timed_out}

    measured: dict[str, float | None] = {
        "ratio_all": ratios[VAKTA_FULL]["all"],
        "ratio_big": ratios[VAKTA_FULL]["big"],
        "distance_mean": distance_stats(dist_all).get("mean"),
        "distance_p99": distance_stats(dist_all).get("p99"),
        "scan_speedup": scan_result["speedup"] if scan_result else None,
    }
    #: The same figures from CPU time, less disturbed by other processes (informative only).
    by_cpu: dict[str, float | None] = {
        "ratio_all": ratios[VAKTA_FULL]["all_cpu"],
        "ratio_big": ratios[VAKTA_FULL]["big_cpu"],
    }
    goals = []
    for key, text, target, higher in GOALS:
        value = measured[key]
        met = None if value is None else (value >= target if higher else value <= target)
        goals.append(
            {
                "goal": key,
                "what": text,
                "value": value,
                "value_by_cpu_time": by_cpu.get(key),
                "target": target,
                "higher_is_better": higher,
                "met": met,
            }
        )

    return {
        "corpus": str(corpus),
        "files": len(files),
        "files_big": sum(big),
        "big_pixels": BIG_PIXELS,
        "repeat": repeat,
        "environment": env,
        "errors": {m: times[m].errors for m in METHODS if times[m].errors},
        "speed": speeds,
        "ratios": ratios,
        "distance": {
            "all": distance_stats(dist_all),
            "big": distance_stats(dist_big),
            "histogram": histogram,
            "worst": [
                {"file": f.path.name, "bits": d, "width": f.width, "height": f.height} for d, f in worst
            ],
            "pdq_only_differs_from_full": disagree,
        },
        "breakdown": {
            "vakta_ms": {
                "all": stage_means(breakdown.vakta, ok, VAKTA_STAGES + VAKTA_EXTRA),
                "big": stage_means(breakdown.vakta, ok_big, VAKTA_STAGES + VAKTA_EXTRA),
            },
            "baseline_ms": {
                "all": stage_means(breakdown.baseline, ok, BASELINE_STAGES),
                "big": stage_means(breakdown.baseline, ok_big, BASELINE_STAGES),
            },
            "jpeg_scales": scale_counts,
            "mismatches": breakdown.mismatches,
        },
        "scan": scan_result,
        "goals": goals,
    }


# --------------------------------------------------------------------------- printing


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _table(headers: list[str], rows: list[list[str]]) -> Iterator[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    yield line
    yield "-" * len(line)
    for r in rows:
        yield "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )


def _stage_table(
    title: str,
    allm: dict[str, float],
    bigm: dict[str, float],
    stages: tuple[tuple[str, str], ...],
    extra: tuple[tuple[str, str], ...],
) -> Iterator[str]:
    tot_all = sum(allm[name] for name, _ in stages)
    tot_big = sum(bigm[name] for name, _ in stages) if bigm else 0.0

    def row(label: str, name: str, share: bool) -> list[str]:
        return [
            label,
            f"{allm[name]:.2f}",
            f"{100 * allm[name] / tot_all:.0f}%" if share and tot_all else "",
            _fmt(bigm.get(name), ".2f") if bigm else "-",
            f"{100 * bigm[name] / tot_big:.0f}%" if share and bigm and tot_big else "",
        ]

    rows = [row(f"{name}: {text}", name, True) for name, text in stages]
    rows.append(["total", f"{tot_all:.2f}", "", _fmt(tot_big if bigm else None, ".2f"), ""])
    rows += [row(f"  ({text})", name, False) for name, text in extra]
    yield from _table([title, "ms all", "share", "ms >=8MP", "share"], rows)


def render(res: dict[str, Any]) -> str:
    env = res["environment"]
    out: list[str] = []
    out.append(f"Vakta hashing benchmark: {res['corpus']}")
    out.append(
        f"{res['files']} images, {res['files_big']} of >= {res['big_pixels'] / 1e6:.0f} MP; "
        f"best of {res['repeat']} per file (hashing) / per run (scan)"
    )
    load0 = env.get("loadavg_start")
    load1 = env.get("loadavg_end")
    out.append(
        f"python {env['python']}, {env['cpus']} CPUs (affinity {env['cpu_affinity']}), "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    )
    out.append(
        f"git {env.get('git')}; BLAS threads {env.get('blas_threads')}; thread env {env.get('thread_env') or '{}'}; "
        f"load average at start {_load(load0)}, at end {_load(load1)}"
    )
    others = env.get("others_cores_while_hashing")
    if others is not None:
        out.append(
            f"other processes used {others:.2f} cores on average during the timed hashing passes "
            f"(the busiest pass: {env.get('others_cores_while_hashing_max') or 0:.2f})"
        )
    foreign = [env.get("others_cores_while_hashing_max")]
    for w in ("1", "2"):
        foreign += (res["scan"] or {}).get(w, {}).get("others_cores", [])
    measured_load = [x for x in foreign if x is not None and x == x]  # drop missing and NaN
    if measured_load:
        busiest = max(measured_load)
        busy = busiest > 0.25
    else:  # no /proc/stat: fall back on the load average (which counts this run too)
        busiest = max(load0[0], (load1 or load0)[0]) if load0 else 0.0
        busy = bool(env["cpu_affinity"]) and busiest > 0.5 * env["cpu_affinity"]
    quiet = env.get("quiet_wait") or {}
    if quiet.get("max_s"):
        out.append(
            f"waited up to {quiet['max_s']:g} s for a quiet machine before each of {quiet['waits']} timed passes; "
            f"{quiet['timed_out']} waits ran out"
        )
    if busy:
        out.append(
            f"NOTE: other processes used up to {busiest:.2f} cores during timed passes; those timings are noisy."
        )
    for method, errors in res["errors"].items():
        out.append(f"{LABELS[method]} failed on {len(errors)} files (left out of every comparison):")
        out.extend(f"  {name}: {msg}" for name, msg in list(errors.items())[:5])
    out.append("")

    out.append("Single-process hashing from file: images/s by wall time and per CPU-second of this process")
    rows = []
    for m in METHODS:
        s = res["speed"][m]
        r = res["ratios"].get(m, {})
        rows.append(
            [
                LABELS[m],
                _fmt(s["all"]["images_per_s"], ".1f"),
                _fmt(r.get("all"), ".2f") + "x" if r else "1.00x",
                _fmt(s["all"]["images_per_cpu_s"], ".1f"),
                _fmt(r.get("all_cpu"), ".2f") + "x" if r else "1.00x",
                _fmt(s["big"]["images_per_s"], ".2f"),
                _fmt(r.get("big"), ".2f") + "x" if r else "1.00x",
                _fmt(s["big"]["images_per_cpu_s"], ".2f"),
                _fmt(r.get("big_cpu"), ".2f") + "x" if r else "1.00x",
            ]
        )
    out.extend(
        _table(
            [
                "method",
                "img/s",
                "ratio",
                "img/CPU-s",
                "ratio",
                "img/s 8MP+",
                "ratio",
                "img/CPU-s 8MP+",
                "ratio",
            ],
            rows,
        )
    )
    out.append("(ratio: vakta/baseline; goals use the wall-time ratio of vakta (digests + PDQ))")
    out.append("")

    d = res["distance"]
    out.append("PDQ bit distance, vakta (digests + PDQ) vs baseline")
    rows = [
        [
            label,
            str(s["n"]),
            _fmt(s.get("mean"), ".3f"),
            _fmt(s.get("median"), ".1f"),
            _fmt(s.get("p99"), ".2f"),
            _fmt(s.get("max"), ".0f"),
        ]
        for label, s in (("all files", d["all"]), (">= 8 MP", d["big"]))
    ]
    out.extend(_table(["set", "n", "mean", "median", "p99", "max"], rows))
    out.append("histogram (bits: files): " + ", ".join(f"{k}: {v}" for k, v in d["histogram"].items()))
    out.append(
        "largest: "
        + ", ".join(f"{w['file']} {w['width']}x{w['height']} {w['bits']} bits" for w in d["worst"])
    )
    if d["pdq_only_differs_from_full"]:
        out.append(
            f"WARNING: PDQ-only and digests+PDQ paths disagree on {d['pdq_only_differs_from_full']} files"
        )
    out.append("")

    b = res["breakdown"]
    out.append(
        "Where the time goes (mean ms per image, best of passes per stage; "
        "JPEG decode scales used: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(b["jpeg_scales"].items()))
        + ")"
    )
    for who, stages, extra in (
        ("vakta_ms", VAKTA_STAGES, VAKTA_EXTRA),
        ("baseline_ms", BASELINE_STAGES, ()),
    ):
        if b[who]["all"]:
            title = "vakta stage" if who == "vakta_ms" else "baseline stage"
            out.extend(_stage_table(title, b[who]["all"], b[who]["big"], stages, extra))
            out.append("")
    if b["mismatches"]:
        out.append(f"WARNING: the step-by-step path disagrees with vakta on {len(b['mismatches'])} files:")
        out.extend(f"  {m}" for m in b["mismatches"][:5])
        out.append("")

    sc = res["scan"]
    if sc:
        out.append("vakta scan (CLI, --format summary --no-test-list; its default extra query variants on)")
        rows = []
        for w in ("1", "2"):
            s = sc[w]
            rows.append(
                [
                    f"--workers {w}",
                    f"{s['files_per_s']:.1f}",
                    " ".join(f"{x:.0f}" for x in s["all_files_per_s"]),
                    f"{s['elapsed_s']:.2f}",
                    f"{s['process_wall_s']:.2f}",
                    f"{s['process_cpu_s']:.2f}",
                    " ".join(f"{x:.2f}" for x in s["others_cores"]),
                ]
            )
        out.extend(
            _table(["run", "best files/s", "all runs", "scan s", "process s", "CPU s", "others' cores"], rows)
        )
        out.append(
            f"2 workers vs 1: {sc['speedup']:.2f}x; CPU seconds 2 vs 1: {sc['cpu_ratio']:.2f}x; "
            "this machine's own 2-vs-1 process scaling on pure Python at the time: "
            + " ".join(f"{x:.2f}x" for x in sc["machine_scaling"])
        )
        out.append(
            "(scan s: the scan's own elapsed time; process s: whole CLI run incl. start-up; "
            "CPU s: user+sys of the CLI and its workers; others' cores: CPU other processes used meanwhile)"
        )
        out.append("")

    out.append("Goals")
    rows = []
    for g in res["goals"]:
        op = ">=" if g["higher_is_better"] else "<="
        status = "n/a" if g["met"] is None else ("met" if g["met"] else "MISSED")
        rows.append(
            [
                g["what"],
                _fmt(g["value"], ".2f"),
                f"{op} {g['target']:g}",
                status,
                _fmt(g.get("value_by_cpu_time"), ".2f"),
            ]
        )
    out.extend(_table(["goal", "measured", "target", "status", "by CPU time (info)"], rows))
    return "\n".join(out)


def _load(value: tuple[float, float, float] | list[float] | None) -> str:
    return "-" if not value else "/".join(f"{x:.2f}" for x in value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS, help="folder of images")
    parser.add_argument("--repeat", type=int, default=3, help="passes per measurement; the best is kept")
    parser.add_argument("--no-scan", action="store_true", help="skip the `vakta scan` runs")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each timed pass, wait up to S seconds for other processes to idle (shared machines)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    corpus: Path = args.corpus
    if not corpus.is_dir():
        parser.exit(
            2, f"error: corpus folder {corpus} not found (pass CORPUS_DIR; default {DEFAULT_CORPUS})\n"
        )
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        import pdqhash  # noqa: F401
        import threatexchange  # noqa: F401
    except ImportError as exc:
        parser.exit(2, f"error: the baseline needs the bench extra (pip install -e '.[bench]'): {exc}\n")
    result = run(corpus.resolve(), args.repeat, not args.no_scan, QuietWaiter(args.wait_quiet))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
