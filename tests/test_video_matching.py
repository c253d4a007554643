"""Known videos: vPDQ list import, whole-video matching, clips, overlays and the reference families."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from media import encode_video
from PIL import Image, ImageDraw

from vakta.lists.formats.vpdq import FORMAT as VPDQ_FORMAT
from vakta.lists.model import ListRecord, ParseIssue
from vakta.lists.store import ListStore
from vakta.matching.index import ListIndex
from vakta.matching.videos import VideoRule
from vakta.signals.model import VideoFrame

if TYPE_CHECKING:
    from conftest import RunCli

av = pytest.importorskip("av", reason="PyAV not installed")

VPDQ = Path(__file__).resolve().parents[2] / "shared" / "vectors" / "vpdq"
needs_vectors = pytest.mark.skipif(
    not (VPDQ / "videos").is_dir(), reason=f"vPDQ reference vectors not found at {VPDQ}"
)

FPS = 10
SIZE = (180, 240)  # rows, columns


# --------------------------------------------------------------------------- generated footage


def _texture(seed: int, shape: tuple[int, int]) -> np.ndarray:
    """Random RGB scenery with detail at every scale (as photos have), larger than a frame.

    Detail at every scale keeps PDQ stable under compression: a texture made
    of one scale only leaves half the hash to noise.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((*shape, 3), np.float32)
    for cell in (4, 8, 16, 32, 64, 128):
        grid = rng.normal(0, 1, (max(2, shape[0] // cell), max(2, shape[1] // cell), 3)).astype(np.float32)
        for c in range(3):
            plane = Image.fromarray(grid[..., c], "F").resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
            out[..., c] += np.asarray(plane) * cell**0.4
    out = (out - out.mean()) / out.std() * 60 + 128
    return np.clip(out, 0, 255).astype(np.uint8)


def _logo(frame: np.ndarray) -> np.ndarray:
    """A channel badge burnt in: black-edged white strokes in the top-right corner."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    for colour, width in (((0, 0, 0), 7), ((255, 255, 255), 3)):
        draw.ellipse((150, 15, 220, 80), outline=colour, width=width)
        draw.line((165, 48, 205, 48), fill=colour, width=width)
        draw.line((185, 28, 185, 68), fill=colour, width=width)
    return np.asarray(image)


def footage(seed: int, seconds: float, logo: bool = False, bars: int = 0) -> list[np.ndarray]:
    """Frames of a camera panning over generated scenery, optionally with a static logo or side bars."""
    height, width = SIZE
    scene = _texture(seed, (height * 4, width * 6))
    frames = []
    for i in range(int(seconds * FPS)):
        t = i / FPS
        # A slow pan that turns, so every second shows a different view.
        y = int(height * 1.5 + height * 1.2 * np.sin(t / 3.0))
        x = int(width * 0.2 + 28 * t) % (scene.shape[1] - width)
        frame = scene[y : y + height, x : x + width].copy()
        if logo:
            frame = _logo(frame)
        if bars:  # pillarboxed: the picture unchanged, black bars beside it
            frame = np.pad(frame, ((0, 0), (bars, bars), (0, 0)))
        frames.append(frame)
    return frames


def encode(frames: list[np.ndarray], path: Path) -> Path:
    """Write frames as an MP4 (MPEG-4 part 2, FFmpeg's built-in encoder)."""
    path.write_bytes(encode_video(frames, FPS, bit_rate=2_000_000))
    return path


def vpdq_matches(run: Any) -> dict[str, list[dict[str, Any]]]:
    """Whole-video matches of each scanned file, by file name."""
    return {Path(r["path"]).name: [m for m in r["matches"] if m["signal"] == "vpdq"] for r in run.records()}


@pytest.fixture(scope="module")
def known_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode(footage(1, 12), tmp_path_factory.mktemp("known") / "known.mp4")


def _import_hash_of(run_cli: RunCli, video: Path, tmp: Path, name: str = "videos") -> None:
    hashed = run_cli("hash", "--format", "vpdq", video)
    assert hashed.exit_code == 0, hashed.stderr
    (tmp / "known.vpdq").write_text(hashed.stdout)
    imported = run_cli("lists", "import", tmp / "known.vpdq", "--name", name)
    assert imported.exit_code == 0, imported.stderr


# --------------------------------------------------------------------------- the vPDQ list format


FRAME = "e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c"


def _parse(text: str) -> list[ListRecord | ParseIssue]:
    return list(VPDQ_FORMAT.parse(io.BytesIO(text.encode()), None))


def test_reference_lines_parse_in_either_field_order() -> None:
    (record,) = _parse(f"0,100,{FRAME},0.000\n1,{FRAME.upper()},98,0.033\n")
    assert isinstance(record, ListRecord)
    assert record.frames == (VideoFrame(0, 0.0, FRAME, 100), VideoFrame(1, 0.033, FRAME, 98))
    assert record.entry_id is None  # named after its file by the importer


def test_bad_vpdq_lines_are_reported_with_their_line_numbers() -> None:
    text = f"0,100,{FRAME},0.0\n1,100,{FRAME[:-2]},0.1\n2,101,{FRAME},0.2\nx,1,{FRAME},0.3\n4,9,{FRAME},-1\n5,9,{FRAME}\n"
    parsed = _parse(text)
    issues = {p.line: p.message for p in parsed if isinstance(p, ParseIssue)}
    assert sorted(issues) == [2, 3, 4, 5, 6]
    assert "64 hex" in issues[2] and "0-100" in issues[3] and "4 fields" in issues[6]
    (record,) = [p for p in parsed if isinstance(p, ListRecord)]
    assert len(record.frames) == 1


def test_named_blocks_are_separate_videos_and_export_round_trips() -> None:
    other = FRAME[::-1]
    records = _parse(
        f"# /a/first.mp4\n0,100,{FRAME},0.000\n# second.mkv\n0,90,{other},0.000\n1,90,{other},1.000\n"
    )
    assert [(r.entry_id, len(r.frames)) for r in records if isinstance(r, ListRecord)] == [
        ("first.mp4", 1),
        ("second.mkv", 2),
    ]
    out = io.StringIO()
    VPDQ_FORMAT.export([r for r in records if isinstance(r, ListRecord)], out, "x")
    again = _parse(out.getvalue())
    assert [(r.entry_id, r.frames) for r in again] == [(r.entry_id, r.frames) for r in records]  # type: ignore[union-attr]
    assert VPDQ_FORMAT.sniff(out.getvalue().encode(), "x.txt")


def test_store_keeps_each_video_and_merges_a_reimport(tmp_path: Path) -> None:
    black = "0" * 64
    a = ListRecord({}, "a", None, frames=(VideoFrame(0, 0.0, black, 60), VideoFrame(1, 1.0, FRAME, 100)))
    b = ListRecord({}, "b", None, frames=(VideoFrame(0, 0.0, black, 60),))
    with ListStore(tmp_path) as store:
        first = store.import_records("v", [a, b], "f", "vpdq")
        again = store.import_records("v", [a], "f", "vpdq")
        prints, owners, values, times = store.video_frames("v", 50)
        assert (first.added, first.duplicates, again.added, again.duplicates) == (2, 0, 0, 1)
        # The frame both videos share is kept for each of them.
        assert np.frombuffer(owners, np.int32).tolist() == [0, 0, 1]
        assert len(values) == 3 * 32 and len(prints) == 2
        assert np.frombuffer(times, np.float64).tolist() == [0.0, 1.0, 0.0]
        assert {r.entry_id: len(r.frames) for r in store.video_records("v")} == {"a": 2, "b": 1}
        assert store.lists()[0].counts == {"vpdq": 2}
        store.remove("v")
        assert store.names() == []


# --------------------------------------------------------------------------- matching rules


def _frames(hashes: list[str], step: float = 1.0, quality: int = 100) -> list[VideoFrame]:
    return [VideoFrame(i, i * step, h, quality) for i, h in enumerate(hashes)]


def _random_hashes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(n)]


def _index(tmp_path: Path, videos: dict[str, list[VideoFrame]]) -> Any:
    with ListStore(tmp_path) as store:
        store.import_records(
            "v", [ListRecord({}, k, None, frames=tuple(f)) for k, f in videos.items()], "f", "vpdq"
        )
        return ListIndex.build([], store=store, store_lists=["v"]).search.videos


def _flip(value: str, bits: int) -> str:
    number = int(value, 16) ^ ((1 << bits) - 1)
    return f"{number:064x}"


def test_shares_count_unique_usable_frames_and_ranges_say_where(tmp_path: Path) -> None:
    known = _random_hashes(10, 1)
    index = _index(tmp_path, {"k": [*_frames(known), VideoFrame(99, 99.0, known[0], 100)]})
    other = _random_hashes(10, 2)
    # Query: 5 unrelated seconds, then the known video's first 5 frames (moved by 31 bits),
    # then a low-quality frame that must not count.
    query = _frames([*other[:5], *(_flip(h, 31) for h in known[:5])])
    query.append(VideoFrame(10, 10.0, known[5], 40))
    ((list_no, _, distance, hit),) = index.match(query, 31, 50, VideoRule(50, 50))
    assert (list_no, distance) == (0, 31)
    assert (hit.known_share, hit.query_share) == (50.0, 50.0)
    assert (hit.known_frames, hit.matched_frames) == (10, 5)
    assert hit.query_ranges == ((5.0, 9.0),)
    assert index.match(query, 30, 50, VideoRule(50, 50)) == []  # one bit too far
    assert index.match(query, 31, 50, VideoRule(60, 60)) == []
    assert index.match(query, 31, 50, VideoRule(50, 60, require_both=True)) == []


def test_a_densely_hashed_known_video_is_counted_per_query_interval(tmp_path: Path) -> None:
    dense = _random_hashes(100, 3)  # every frame at 10 fps
    index = _index(tmp_path, {"k": _frames(dense, step=0.1)})
    sparse = _frames(dense[::10], step=1.0)  # the query sampled once a second
    ((_, _, _, hit),) = index.match(sparse, 31, 50, VideoRule())
    assert (hit.known_share, hit.known_frames) == (100.0, 10)


def test_variants_stand_in_for_their_frame(tmp_path: Path) -> None:
    known = _random_hashes(6, 4)
    index = _index(tmp_path, {"k": _frames(known)})
    query = _frames(_random_hashes(6, 5))  # every frame spoiled...
    variants = [VideoFrame(f.frame, f.timestamp, known[f.frame], 100) for f in query]  # ...but recoverable
    assert index.match(query, 31, 50, VideoRule()) == []
    ((_, _, _, hit),) = index.match(query, 31, 50, VideoRule(), variants)
    assert (hit.known_share, hit.query_share) == (100.0, 100.0)


def test_shares_must_be_percentages() -> None:
    with pytest.raises(ValueError, match="percent"):
        VideoRule(0, 80)


# --------------------------------------------------------------------------- end to end


def test_folder_of_vpdq_files_imports_one_video_per_file(tmp_path: Path, run_cli: RunCli) -> None:
    folder = tmp_path / "hashes"
    folder.mkdir()
    (folder / "one.txt").write_text(f"0,100,{FRAME},0.000\n1,100,{FRAME[::-1]},1.000\n")
    (folder / "two.txt").write_text(f"0,100,{FRAME[::-1]},0.000\nbroken\n")
    result = run_cli("lists", "import", folder, "--name", "clips")
    assert result.exit_code == 0, result.stderr
    assert "2 videos" in result.stderr and "two.txt:2:" in result.stderr
    shown = {r["name"]: r for r in run_cli("lists", "show", "--json").records()}
    assert shown["clips"]["counts"] == {"vpdq": 2}
    exported = run_cli("lists", "export", "clips", "--format", "vpdq")
    assert "# one\n" in exported.stdout and "# two\n" in exported.stdout


def test_clips_and_padded_copies_of_a_known_video_are_found(
    tmp_path: Path, run_cli: RunCli, known_video: Path
) -> None:
    _import_hash_of(run_cli, known_video, tmp_path)
    known = footage(1, 12)
    scans = tmp_path / "scan"
    scans.mkdir()
    encode(known[: len(known) // 5], scans / "first-fifth.mp4")
    encode(footage(7, 30) + known, scans / "after-30s.mp4")
    encode(footage(8, 12), scans / "unrelated.mp4")
    result = run_cli("scan", "--all", "--no-test-list", scans)
    assert result.exit_code == 1, result.stderr
    found = vpdq_matches(result)
    assert {name for name, m in found.items() if m} == {"first-fifth.mp4", "after-30s.mp4"}
    (clip,) = found["first-fifth.mp4"]
    assert clip["entry_id"] == "known.mp4" and clip["list"] == "videos"
    assert clip["video"]["query_share"] == 100.0 and clip["video"]["known_share"] < 40
    (padded,) = found["after-30s.mp4"]
    assert padded["video"]["known_share"] >= 80 and padded["video"]["query_share"] < 50
    ((start, end),) = padded["video"]["query_ranges"]
    assert 29.0 <= start <= 31.0 and end >= 40.0


def test_a_static_logo_and_side_bars_are_seen_through(
    tmp_path: Path, run_cli: RunCli, known_video: Path
) -> None:
    _import_hash_of(run_cli, known_video, tmp_path)
    scans = tmp_path / "scan"
    scans.mkdir()
    encode(footage(1, 12, logo=True), scans / "logo.mp4")
    encode(footage(1, 12, bars=40), scans / "bars.mp4")
    plain = vpdq_matches(run_cli("scan", "--all", "--no-test-list", "--no-extra-queries", scans))
    assert plain == {"logo.mp4": [], "bars.mp4": []}, "the test footage no longer needs the variants"
    found = vpdq_matches(run_cli("scan", "--all", "--no-test-list", scans))
    assert all(len(m) == 1 and m[0]["video"]["known_share"] >= 80 for m in found.values()), found


def test_matches_survive_the_scan_cache(tmp_path: Path, run_cli: RunCli, known_video: Path) -> None:
    _import_hash_of(run_cli, known_video, tmp_path)
    first = run_cli("scan", "--all", "--no-test-list", "--cache", known_video)
    second = run_cli("scan", "--all", "--no-test-list", "--cache", known_video)
    assert first.exit_code == second.exit_code == 1
    assert vpdq_matches(first) == vpdq_matches(second)
    assert "1 cache hits" in second.stderr


# --------------------------------------------------------------------------- the reference families


@needs_vectors
@pytest.mark.parametrize(
    ("source", "family"), [("chair-orig-22-sd-bar", "chair-"), ("pattern-hd-no-bar", "pattern-")]
)
def test_reference_families_match_their_own_list_only(source: str, family: str, run_cli: RunCli) -> None:
    imported = run_cli("lists", "import", VPDQ / "hashes" / f"{source}.txt", "--name", "family")
    assert imported.exit_code == 0, imported.stderr
    result = run_cli("scan", "--all", "--no-test-list", VPDQ / "videos")
    found = vpdq_matches(result)
    assert len(found) == len(list((VPDQ / "videos").glob("*.mp4")))
    for name, matches in found.items():
        if name.startswith(family):
            assert len(matches) == 1, f"{name} does not match {source}: {json.dumps(matches)}"
            assert matches[0]["entry_id"] == source
        else:
            assert matches == [], f"{name} matches {source}"


@pytest.mark.parametrize("fmt", ["vics", "csv"])
def test_vics_and_csv_lists_carry_video_digests(
    fmt: str, tmp_path: Path, run_cli: RunCli, known_video: Path
) -> None:
    import hashlib

    data = known_video.read_bytes()
    md5, sha1 = hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest()
    if fmt == "vics":
        doc = {
            "@odata.context": "http://github.com/VICSDATAMODEL/ProjectVic/DataModels/2.0.xml/Default/$metadata#Media",
            "value": [
                {
                    "MediaID": 7,
                    "Category": 1,
                    "MD5": md5.upper(),
                    "SHA1": sha1.upper(),
                    "MediaSize": len(data),
                }
            ],
        }
        (tmp_path / "list.json").write_text(json.dumps(doc))
    else:
        (tmp_path / "list.json").write_text(f"id,category,md5,sha1\n7,1,{md5},{sha1}\n")
    assert run_cli("lists", "import", tmp_path / "list.json", "--name", "digests").exit_code == 0
    result = run_cli("scan", "--no-test-list", known_video)
    assert result.exit_code == 1
    (record,) = result.records()
    assert {(m["signal"], m["entry_id"], m["list_format"]) for m in record["matches"]} == {
        ("md5", "7", fmt),
        ("sha1", "7", fmt),
    }


def test_sound_only_in_a_video_container_is_not_an_error(tmp_path: Path, run_cli: RunCli) -> None:
    """Music in Matroska/WebM is typed as video by content; it has no frames to hash, and no fault."""
    path = tmp_path / "tone.mka"
    with av.open(str(path), mode="w", format="matroska") as container:
        stream = container.add_stream("flac", rate=8000, layout="mono")
        size = stream.codec_context.frame_size or 1024
        tone = (np.sin(np.arange(8000) / 5.0) * 8000).astype(np.int16)
        for start in range(0, len(tone) - size, size):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + size], format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    result = run_cli("scan", "--all", "--no-test-list", path)
    assert result.exit_code == 0, result.stdout + result.stderr
    (record,) = result.records()
    assert record["type"].startswith("video/") and record["errors"] == [] and "vpdq_frames" not in record
