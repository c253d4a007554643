"""Video hashing speed: Vakta's vPDQ against a decode-only pass and, where built, the reference.

For each video (default ``../shared/vectors/vpdq/videos``), in one process and one run:

- decode-only: PyAV decodes every frame and does nothing else (the floor of any full pass);
- ``vakta 1/s``: the vPDQ hasher at one hash per second (digests included), and its time as a
  multiple of decode-only (goal <= 1.25x); ``1/s+x`` the same with ``extra_queries=True``
  (logo and bar removal as query variants: what ``vakta scan`` does by default);
- ``vakta keyframes``: ``keyframes_only`` (digests included), and how many times faster than
  the 1/s pass it is (goal >= 10x); ``key+x`` against ``1/s+x``, both with ``extra_queries``;
- ``vakta every``: every frame hashed, frames per second;
- the reference ``vpdq`` package (every frame and one per second), when it is importable, and
  Vakta's every-frame frames/s as a multiple of the reference's (goal >= 1.0x).

The reference videos have a key frame every 60 frames (2 s at 30 fps), so keyframes-only
saves less there than on typical footage.  A longer clip with a typical GOP (one key frame
per 250 frames, 720p, 25 fps, H.264 with B-frames) is generated and measured too
(``--no-generated`` skips it).

Then whole-video matching as the product does it: the family originals' reference hash files
(``chair-orig-22-sd-bar``, ``pattern-hd-no-bar`` in ``../shared/vectors/vpdq/hashes``) are the
known videos of one :class:`~vakta.matching.videos.VideoIndex`; every reference video is hashed
as the scan hashes it (1/s, and keyframes-only, both with ``extra_queries``) and matched under
the default :class:`~vakta.matching.videos.VideoRule` (80% of the known video's frames or of
the query's, frame distance <= 31, quality >= 50).  Per video and mode: whether its family's
original matched, with both shares, and whether any other original did (it should not).

Real-time factor (RTF) = seconds of video per second of work.  Best of ``--repeat`` passes.
The machine's other processes share its two cores: each video's row shows how many cores they
used while it was measured (``others``), and ``--wait-quiet S`` waits up to S seconds before
each video for them to idle (as ``bench/hashing.py`` does).

    python bench/video.py [VIDEO_DIR] [--repeat 3] [--no-generated] [--no-recall] [--wait-quiet S] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
from hashing import CpuMeter, QuietWaiter

from vakta.lists.formats.vpdq import FORMAT as VPDQ_FORMAT
from vakta.lists.model import ListRecord
from vakta.matching.search import DEFAULT_THRESHOLD, MIN_QUALITY
from vakta.matching.videos import VideoIndex, VideoRule
from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals

VECTORS = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "vpdq"
DEFAULT_VIDEOS = VECTORS / "videos"
GOAL_RATIO = 1.25
GOAL_KEYFRAMES = 10.0
GOAL_REFERENCE = 1.0
#: Each family's original, as a list would hold it.
FAMILIES = {"chair": "chair-orig-22-sd-bar", "pattern": "pattern-hd-no-bar"}


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def _decode_only(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def _vakta(
    data: bytes, seconds_per_hash: float, keyframes_only: bool = False, extra_queries: bool = False
) -> Signals:
    options = HashOptions(
        extra_queries=extra_queries, seconds_per_hash=seconds_per_hash, keyframes_only=keyframes_only
    )
    return compute_signals(io.BytesIO(data), Signals("bench"), options)


def _reference(path: Path, seconds_per_hash: float) -> int | None:
    try:
        import vpdq  # the reference binding; needs FFmpeg development libraries to build
    except ImportError:
        return None
    return len(vpdq.computeHash(str(path), seconds_per_hash=seconds_per_hash))


def _key_packets(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        return sum(1 for p in container.demux(stream) if p.size and p.is_keyframe)


def measure(
    name: str, data: bytes, repeat: int, path: Path | None = None, every: bool = True
) -> dict[str, Any]:
    """Decode-only, 1/s, keyframes-only, each without and with extra queries (and every frame,
    and the reference) on one video."""
    t_decode, frames = _best(lambda: _decode_only(data), repeat)
    t_one, one = _best(lambda: _vakta(data, 1.0), repeat)
    t_one_x, _ = _best(lambda: _vakta(data, 1.0, extra_queries=True), repeat)
    t_key, key = _best(lambda: _vakta(data, 1.0, keyframes_only=True), repeat)
    t_key_x, _ = _best(lambda: _vakta(data, 1.0, keyframes_only=True, extra_queries=True), repeat)
    seconds = one.video_seconds or 0.0
    row: dict[str, Any] = {
        "video": name,
        "frames": frames,
        "keyframes": _key_packets(data),
        "seconds": round(seconds, 2),
        "decode_fps": round(frames / t_decode, 1),
        "decode_rtf": round(seconds / t_decode, 1),
        "vakta_1s_rtf": round(seconds / t_one, 1),
        "vakta_1s_vs_decode": round(t_one / t_decode, 3),
        "vakta_1s_extra_vs_decode": round(t_one_x / t_decode, 3),
        "vakta_1s_hashes": len(one.video_frames),
        "keyframes_rtf": round(seconds / t_key, 1),
        "keyframes_hashes": len(key.video_frames),
        "keyframes_speedup_vs_1s": round(t_one / t_key, 2),
        "keyframes_extra_speedup_vs_1s_extra": round(t_one_x / t_key_x, 2),
        "keyframes_speedup_vs_decode": round(t_decode / t_key, 2),
        "time_1s_s": t_one,
        "time_1s_extra_s": t_one_x,
        "time_keyframes_s": t_key,
        "time_keyframes_extra_s": t_key_x,
    }
    if every:
        t_every, all_frames = _best(lambda: _vakta(data, 0.0), repeat)
        row["vakta_every_fps"] = round(len(all_frames.video_frames) / t_every, 1)
    if path is not None and every:
        t_ref_every, ref_every = _best(lambda: _reference(path, 0.0), repeat)
        if ref_every is not None:
            t_ref_one, _ = _best(lambda: _reference(path, 1.0), repeat)
            row["reference_every_fps"] = round(ref_every / t_ref_every, 1)
            row["reference_1s_rtf"] = round(seconds / t_ref_one, 1)
            row["vakta_vs_reference_fps"] = round(row["vakta_every_fps"] / row["reference_every_fps"], 2)
    return row


def generated_clip(seconds: int = 30, fps: int = 25, gop: int = 250) -> bytes:
    """A benign 720p H.264 clip with a typical GOP: a panning noise texture under a moving gradient."""
    width, height = 1280, 720
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height // 4, width // 4 + seconds * fps), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 4, axis=0), 4, axis=1)
    x, y = np.arange(width), np.arange(height)
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "veryfast", "crf": "23", "sc_threshold": "0", "bf": "2"}
        for i in range(seconds * fps):
            shade = (96 + 64 * np.outer(np.cos((y - 4 * i) / 120.0), np.sin((x + 9 * i) / 160.0))).astype(
                np.uint8
            )
            grey = (shade // 2 + texture[:, 4 * i : 4 * i + width] // 2).astype(np.uint8)
            rgb = np.stack([grey, np.roll(grey, i, axis=1), 255 - grey], axis=-1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def _known_videos() -> VideoIndex:
    """The family originals' reference hash files as known videos (one per list), as a store holds them."""
    values: list[bytes] = []
    owners: list[int] = []
    stamps: list[float] = []
    for video, name in enumerate(FAMILIES.values()):
        with (VECTORS / "hashes" / f"{name}.txt").open("rb") as stream:
            records = [r for r in VPDQ_FORMAT.parse(stream, None) if isinstance(r, ListRecord)]
        for frame in (f for record in records for f in record.frames if f.quality >= MIN_QUALITY):
            values.append(bytes.fromhex(frame.pdq))
            owners.append(video)
            stamps.append(frame.timestamp)
    return VideoIndex(
        b"".join(values),
        np.array(owners, dtype=np.int32),
        np.array(stamps, dtype=np.float64),
        np.arange(len(FAMILIES), dtype=np.int32),
        [name.encode() for name in FAMILIES.values()],
    )


#: Reports every known video a query reaches at all, with both shares; the verdict is the default rule's.
_ANY_SHARE = VideoRule(known_share=1e-6, query_share=1e-6)


def recall(videos: Path) -> list[dict[str, Any]]:
    """Whole-video matches of each reference video against the family originals, 1/s and keyframes-only."""
    index = _known_videos()
    rule = VideoRule()
    families = list(FAMILIES)
    rows = []
    for path in sorted(videos.glob("*.mp4")):
        family = path.stem.split("-")[0]
        data = path.read_bytes()
        row: dict[str, Any] = {"video": path.stem, "family": family if family in FAMILIES else None}
        for mode, keyframes_only in (("1s", False), ("keyframes", True)):
            signals = _vakta(data, 1.0, keyframes_only=keyframes_only, extra_queries=True)
            reached = {
                families[list_no]: hit
                for list_no, _, _, hit in index.match(
                    signals.video_frames, DEFAULT_THRESHOLD, MIN_QUALITY, _ANY_SHARE, signals.video_variants
                )
            }
            own = reached.get(family)
            row[f"{mode}_hashes"] = len(signals.video_frames)
            row[f"{mode}_variants"] = len(signals.video_variants)
            row[f"{mode}_match"] = bool(own and rule.accepts(own.known_share, own.query_share))
            row[f"{mode}_known_share"] = round(own.known_share, 1) if own else 0.0
            row[f"{mode}_query_share"] = round(own.query_share, 1) if own else 0.0
            row[f"{mode}_other_matches"] = sorted(
                f
                for f, hit in reached.items()
                if f != family and rule.accepts(hit.known_share, hit.query_share)
            )
        rows.append(row)
    return rows


def _print_speed(rows: list[dict[str, Any]]) -> None:
    has_ref = any("reference_every_fps" in r for r in rows)
    head = (
        f"{'video':30s} {'frames':>6s} {'keys':>4s} {'decode fps':>10s} {'decode RTF':>10s} {'1/s RTF':>8s} "
        f"{'1/s vs dec':>10s} {'1/s+x vs dec':>12s} {'key RTF':>8s} {'key vs 1/s':>10s} "
        f"{'key+x vs 1/s+x':>14s} {'key vs dec':>10s} {'every fps':>9s}"
    )
    print(
        head + (f" {'ref every fps':>13s} {'vs ref':>6s} {'ref 1/s RTF':>11s}" if has_ref else "") + " others"
    )
    for r in rows:
        every = f"{r['vakta_every_fps']:9.1f}" if "vakta_every_fps" in r else f"{'-':>9s}"
        line = (
            f"{r['video'][:30]:30s} {r['frames']:6d} {r['keyframes']:4d} {r['decode_fps']:10.1f} "
            f"{r['decode_rtf']:10.1f} {r['vakta_1s_rtf']:8.1f} {r['vakta_1s_vs_decode']:9.2f}x "
            f"{r['vakta_1s_extra_vs_decode']:11.2f}x {r['keyframes_rtf']:8.1f} "
            f"{r['keyframes_speedup_vs_1s']:9.1f}x {r['keyframes_extra_speedup_vs_1s_extra']:13.1f}x "
            f"{r['keyframes_speedup_vs_decode']:9.1f}x {every}"
        )
        if "reference_every_fps" in r:
            line += (
                f" {r['reference_every_fps']:13.1f} {r['vakta_vs_reference_fps']:5.2f}x"
                f" {r['reference_1s_rtf']:11.1f}"
            )
        elif has_ref:
            line += f" {'-':>13s} {'-':>6s} {'-':>11s}"
        others = r.get("others_cores")
        print(line + (f" {others:6.2f}" if others is not None else f" {'-':>6s}"))


def _print_goals(rows: list[dict[str, Any]], generated: dict[str, Any] | None) -> None:
    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    if any("vakta_vs_reference_fps" in r for r in rows):
        vs_ref = [r["vakta_vs_reference_fps"] for r in rows if "vakta_vs_reference_fps" in r]
        print(
            f"every frame, Vakta vs reference frames/s: worst {min(vs_ref):.2f}x, median "
            f"{float(np.median(vs_ref)):.2f}x (goal >= {GOAL_REFERENCE:.1f}x) "
            + verdict(min(vs_ref) >= GOAL_REFERENCE)
        )
    else:
        print(
            "reference vpdq not importable: frames/s comparison skipped (see docs/vpdq-interop.md to build it)"
        )
    for key, label in (("vakta_1s_vs_decode", "1/s"), ("vakta_1s_extra_vs_decode", "1/s with extra queries")):
        worst = max(r[key] for r in rows)
        median = float(np.median([r[key] for r in rows]))
        print(
            f"{label} vs decode-only: worst {worst:.2f}x, median {median:.2f}x (goal <= {GOAL_RATIO}x) "
            + verdict(worst <= GOAL_RATIO)
        )
    gop = sum(r["frames"] for r in rows) / max(1, sum(r["keyframes"] for r in rows))
    for key, label in (
        ("keyframes_speedup_vs_1s", "keyframes-only vs 1/s"),
        ("keyframes_extra_speedup_vs_1s_extra", "keyframes-only vs 1/s, both with extra queries,"),
    ):
        worst = min(r[key] for r in rows)
        median = float(np.median([r[key] for r in rows]))
        suffix = "_extra_s" if "extra" in key else "_s"
        whole = sum(r[f"time_1s{suffix}"] for r in rows) / sum(r[f"time_keyframes{suffix}"] for r in rows)
        print(
            f"{label} on the reference videos (one key frame per {gop:.0f} frames on average): "
            f"the whole set {whole:.1f}x faster (total time), per video worst {worst:.1f}x, median {median:.1f}x "
            f"(goal >= {GOAL_KEYFRAMES:.0f}x) " + verdict(whole >= GOAL_KEYFRAMES)
        )
    if generated:
        speedup = generated["keyframes_speedup_vs_1s"]
        print(
            f"keyframes-only vs 1/s on the generated clip ({generated['frames']} frames, "
            f"{generated['keyframes']} key frames, made in {generated['made_in_s']} s): {speedup:.1f}x, "
            f"with extra queries {generated['keyframes_extra_speedup_vs_1s_extra']:.1f}x "
            f"(goal >= {GOAL_KEYFRAMES:.0f}x) " + verdict(speedup >= GOAL_KEYFRAMES)
        )


def _print_recall(rows: list[dict[str, Any]]) -> None:
    print(
        f"whole-video matches against the family originals ({', '.join(FAMILIES.values())}), "
        f"default rule ({VideoRule().known_share:.0f}% known or query share, {DEFAULT_THRESHOLD} bits, "
        f"quality >= {MIN_QUALITY}), extra queries on; known% / query%: the family original's shares"
    )
    head = f"{'video':30s}"
    for mode in ("1/s", "keyframes"):
        head += f" | {mode + ' hashes+var':>16s} {'own':>5s} {'known%':>6s} {'query%':>6s} {'other':>5s}"
    print(head)
    for r in rows:
        line = f"{r['video'][:30]:30s}"
        for mode in ("1s", "keyframes"):
            own = ("yes" if r[f"{mode}_match"] else "NO") if r["family"] else "-"
            other = ",".join(r[f"{mode}_other_matches"]) or "no"
            hashes = f"{r[f'{mode}_hashes']}+{r[f'{mode}_variants']}"
            line += (
                f" | {hashes:>16s} {own:>5s} {r[f'{mode}_known_share']:6.1f} "
                f"{r[f'{mode}_query_share']:6.1f} {other:>5s}"
            )
        print(line)
    for mode, label in (("1s", "1/s"), ("keyframes", "keyframes-only")):
        family_rows = [r for r in rows if r["family"]]
        found = sum(r[f"{mode}_match"] for r in family_rows)
        wrong = sum(bool(r[f"{mode}_other_matches"]) for r in rows)
        print(
            f"{label}: {found}/{len(family_rows)} family videos match their original; {wrong} false matches"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="?", type=Path, default=DEFAULT_VIDEOS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-generated", action="store_true", help="skip the generated 30 s clip (GOP 250)")
    ap.add_argument("--no-recall", action="store_true", help="skip the whole-video matching table")
    ap.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="S", help="wait up to S s for a quiet machine"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not args.videos.is_dir():
        print(f"no video folder at {args.videos}", file=sys.stderr)
        return 2
    waiter = QuietWaiter(args.wait_quiet)

    def measured(name: str, data: bytes, **kwargs: Any) -> dict[str, Any]:
        waiter()
        with CpuMeter() as meter:
            row = measure(name, data, args.repeat, **kwargs)
        row["others_cores"] = None if meter.others_cores is None else round(meter.others_cores, 2)
        return row

    rows = [measured(p.name, p.read_bytes(), path=p) for p in sorted(args.videos.glob("*.mp4"))]
    generated: dict[str, Any] | None = None
    if not args.no_generated:
        start = time.perf_counter()
        clip = generated_clip()
        made = time.perf_counter() - start
        generated = measured("generated-720p-gop250", clip, every=False)
        generated["made_in_s"] = round(made, 1)
    recall_rows = [] if args.no_recall else recall(args.videos)
    if args.json:
        print(json.dumps({"videos": rows, "generated": generated, "recall": recall_rows}, indent=2))
        return 0
    _print_speed(rows + ([generated] if generated else []))
    _print_goals(rows, generated)
    if waiter.waits:
        print(
            f"waited for a quiet machine before {waiter.waits} videos; ran out of patience {waiter.timed_out} times"
        )
    if recall_rows:
        print()
        _print_recall(recall_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
