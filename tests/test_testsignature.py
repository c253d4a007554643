"""The built-in test signature: the embedded file and the built-in list must agree."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING

from vakta import testsignature
from vakta.selftest import altered_copy, run_selftest
from vakta.signals import pdq
from vakta.signals.compute import compute_signals
from vakta.signals.model import HashOptions, Signals
from vakta.signals.pdq_hasher import HASHER

if TYPE_CHECKING:
    from conftest import RunCli


def _pdq(data: bytes) -> Signals:
    signals = Signals("test")
    HASHER.compute(data, signals, HashOptions(extra_queries=False))
    return signals


def test_builtin_list_holds_the_embedded_files_hashes() -> None:
    data = testsignature.image_bytes()
    record, video_digests, video = testsignature.records()
    assert record.hashes["md5"] == hashlib.md5(data).hexdigest()
    assert record.hashes["sha1"] == hashlib.sha1(data).hexdigest()
    assert record.hashes["sha256"] == hashlib.sha256(data).hexdigest()
    assert pdq.hamming(record.hashes["pdq"], _pdq(data).pdq or "") <= 2
    assert (record.pdq_quality or 0) >= 80
    clip = testsignature.video_bytes()
    assert video_digests.hashes == {
        "md5": hashlib.md5(clip).hexdigest(),
        "sha1": hashlib.sha1(clip).hexdigest(),
        "sha256": hashlib.sha256(clip).hexdigest(),
    }
    signals = compute_signals(io.BytesIO(clip), Signals("video"), HashOptions(extra_queries=False))
    assert [(f.frame, f.timestamp, f.quality) for f in signals.video_frames] == [
        (f.frame, f.timestamp, f.quality) for f in video.frames
    ]
    assert (
        max(pdq.hamming(a.pdq, b.pdq) for a, b in zip(signals.video_frames, video.frames, strict=True)) <= 2
    )


def test_altered_copy_differs_in_bytes_but_not_in_pdq() -> None:
    data = testsignature.image_bytes()
    copy = altered_copy(data)
    assert hashlib.md5(copy).hexdigest() != hashlib.md5(data).hexdigest()
    assert pdq.hamming(_pdq(data).pdq or "", _pdq(copy).pdq or "") <= 31
    assert len(io.BytesIO(copy).getvalue()) < len(data)


def test_selftest_finds_all_four_files() -> None:
    results = run_selftest()
    assert set(results) == {
        "vakta-test.jpg",
        "vakta-test-resized.jpg",
        "vakta-test-video.mp4",
        "vakta-test-video-clip.mp4",
    }
    assert {m.signal for m in results["vakta-test.jpg"]} >= {"md5", "pdq"}
    assert [m.signal for m in results["vakta-test-resized.jpg"]] == ["pdq"]
    assert {m.signal for m in results["vakta-test-video.mp4"]} == {"md5", "sha1", "sha256", "vpdq"}
    (clip,) = results["vakta-test-video-clip.mp4"]
    assert clip.signal == "vpdq" and clip.video is not None
    assert clip.video.query_share == 100.0 and clip.video.known_share < 80


def test_testfile_writes_the_video(tmp_path: Path, run_cli: RunCli) -> None:
    out = tmp_path / "t.mp4"
    assert run_cli("testfile", "--video", out).exit_code == 0
    result = run_cli("scan", out)
    assert result.exit_code == 1
    (record,) = result.records()
    assert {(m["list"], m["entry_id"], m["signal"]) for m in record["matches"]} >= {
        ("vakta-test", "vakta-test-video", "md5"),
        ("vakta-test", "vakta-test-video", "vpdq"),
    }
    shown = {r["name"]: r for r in run_cli("lists", "show", "--json").records()}
    assert shown["vakta-test"]["counts"]["vpdq"] == 1
    exported = run_cli("lists", "export", "vakta-test", "--format", "vpdq")
    assert exported.stdout.count("\n") > 8 and "# vakta-test-video" in exported.stdout
