"""Opening the lists that a scan, a lookup or a service matches against.

Every front end (the command line, the console, the agent, the ICAP filter)
opens lists the same way: memory-mapped from the on-disk index of the list
store, brought up to date with the store first (a delta: fractions of a
second), plus the built-in test signature; from the store directly when the
index cannot be used (a read-only home, a damaged file).
"""

from __future__ import annotations

import logging
from pathlib import Path

from vakta import testsignature
from vakta.lists.store import ListStore
from vakta.matching import diskindex
from vakta.matching.diskindex import DiskIndex, IndexFormatError
from vakta.matching.index import ListIndex, store_digests
from vakta.matching.knowngood import KnownGood

log = logging.getLogger(__name__)

#: The on-disk index's folder inside a Vakta home.
INDEX_FOLDER = "index"

#: What makes the on-disk index unusable (the store is read instead).
INDEX_ERRORS = (OSError, IndexFormatError, KeyError)


def current_index(home: Path, store: ListStore) -> DiskIndex:
    """The on-disk index of the store, built or updated to match it."""
    root = home / INDEX_FOLDER
    report = diskindex.update(store, root)
    if report.changed:
        log.info("index updated in %.2f s", report.seconds)
    return DiskIndex.open(root)


def load_index(
    home: Path, store: ListStore, detect_lists: list[str], ignore_lists: list[str], test_list: bool = True
) -> tuple[ListIndex, KnownGood]:
    """The detection lists to match (with the built-in test list if ``test_list``) and the known-good set."""
    test_rows = testsignature.entry_rows() if test_list else []
    test_videos = testsignature.video_entries() if test_list else []
    try:
        disk = current_index(home, store)
        index = ListIndex.from_disk(disk, store, detect_lists, test_rows, test_videos)
        return index, KnownGood(disk.restricted(ignore_lists)[0], disk.list_names)
    except INDEX_ERRORS as exc:
        log.warning("on-disk index unusable (%s); loading the lists from the store", exc)
    index = ListIndex.build(test_rows, store=store, store_lists=detect_lists, videos=test_videos)
    return index, KnownGood(store_digests(store, ignore_lists), ignore_lists)
