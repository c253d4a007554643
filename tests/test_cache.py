"""The scan cache returns exactly the signals it was given, query variants included."""

from __future__ import annotations

from pathlib import Path

from vakta.cache import MAX_CACHED_MEMBERS, SignalCache
from vakta.signals.model import PdqQuery, Signals


def test_round_trip_keeps_every_query(tmp_path: Path) -> None:
    queries = [
        PdqQuery("ab" * 32, 100, "original", "full"),
        PdqQuery("cd" * 32, 87, "rotate90", "up2"),
        PdqQuery("0f" * 32, 50, "transverse", "trimmed-strict"),
    ]
    signals = Signals("a.jpg", size=10, type="image/jpeg", md5="1" * 32, pdq="ab" * 32, pdq_quality=100)
    signals.pdq_queries = queries
    cache = SignalCache(tmp_path / "c.sqlite", "opts")
    key = (1, 2, 10, 3, 4)
    cache.put(key, signals)
    cache.flush()
    kept = SignalCache(tmp_path / "c.sqlite", "opts").get(key)
    assert kept is not None and kept.members is None
    again = kept.signals
    assert again.cached and again.pdq_queries == queries
    assert (again.md5, again.pdq, again.size) == (signals.md5, signals.pdq, 10)
    assert SignalCache(tmp_path / "c.sqlite", "other options").get(key) is None


def test_failed_items_are_not_cached(tmp_path: Path) -> None:
    cache = SignalCache(tmp_path / "c.sqlite", "opts")
    cache.put((1, 2, 3, 4, 5), Signals("x", errors=["image decode failed"]))
    assert cache.get((1, 2, 3, 4, 5)) is None


def test_a_best_effort_writer_drops_its_writes_while_another_holds_the_lock(tmp_path: Path) -> None:
    """The agent's watcher shares the cache with a full scan: it must never wait for, or fail on, the lock."""
    import sqlite3
    import time

    from vakta.signals.model import Signals

    path = tmp_path / "c.sqlite"
    SignalCache(path, "opts").close()
    writer = sqlite3.connect(path)
    writer.execute("BEGIN IMMEDIATE")  # a full scan between two commits
    cache = SignalCache(path, "opts", best_effort=True)
    signals = Signals(path="a", size=3, md5="0" * 32, sha1="0" * 40, sha256="0" * 64)
    started = time.monotonic()
    cache.put((1, 1, 3, 1, 1), signals)
    cache.flush()
    assert time.monotonic() - started < 1.0 and cache.dropped == 1
    writer.rollback()
    cache.put((1, 2, 3, 1, 1), signals)
    cache.flush()
    assert cache.dropped == 1 and cache.get((1, 2, 3, 1, 1)) is not None
    cache.close()
    writer.close()


def _member(name: str, **fields: object) -> Signals:
    return Signals("photo.jpg", size=5, type="image/jpeg", md5="2" * 32, inside=[name], **fields)  # type: ignore[arg-type]


def test_a_containers_members_are_kept_with_it(tmp_path: Path) -> None:
    """A JPEG's thumbnail or a small archive's files: an unchanged container is not opened again."""
    cache = SignalCache(tmp_path / "c.sqlite", "opts")
    photo = Signals("photo.jpg", size=10, type="image/jpeg", md5="1" * 32)
    thumbnail = _member("EXIF thumbnail.jpg", pdq="ab" * 32, parent_md5="1" * 32)
    thumbnail.pdq_queries = [PdqQuery("ab" * 32, 90, "rotate90", "full")]
    cache.put((1, 1, 10, 1, 1), photo, [thumbnail])
    cache.put((1, 2, 10, 1, 1), photo, [])  # a container found empty: nothing to look for again
    kept, empty = cache.get((1, 1, 10, 1, 1)), cache.get((1, 2, 10, 1, 1))
    assert kept is not None and kept.members is not None and empty is not None and empty.members == []
    (again,) = kept.members
    assert again.cached and again.path == ""  # the caller names it after the file as it is now
    assert (again.inside, again.pdq, again.pdq_queries, again.parent_md5) == (
        ["EXIF thumbnail.jpg"],
        thumbnail.pdq,
        thumbnail.pdq_queries,
        "1" * 32,
    )


def test_containers_with_a_failed_member_or_many_members_are_not_cached(tmp_path: Path) -> None:
    cache = SignalCache(tmp_path / "c.sqlite", "opts")
    archive = Signals("a.zip", size=10, type="application/zip", md5="1" * 32)
    cache.put((1, 1, 10, 1, 1), archive, [_member("a.jpg"), _member("b.jpg", errors=["damaged"])])
    cache.put((1, 2, 10, 1, 1), archive, [_member("k.jpg", skipped="on known-good list 'nsrl'")])
    cache.put((1, 3, 10, 1, 1), archive, [_member(f"{n}.jpg") for n in range(MAX_CACHED_MEMBERS + 1)])
    assert [cache.get((1, n, 10, 1, 1)) for n in (1, 2, 3)] == [None, None, None]
