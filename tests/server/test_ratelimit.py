"""The matching API's token buckets, shared by the console's forked worker processes."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import time
from types import SimpleNamespace

import pytest

from vakta.server import ratelimit
from vakta.server.ratelimit import SharedBuckets

FORK = multiprocessing.get_context("fork")


def _spend(table: SharedBuckets, key: str, times: int) -> None:
    for _ in range(times):
        assert table.take(key, 1, rate=0.001, burst=5) == 0


def test_a_forked_worker_spends_from_the_same_bucket() -> None:
    table = SharedBuckets()
    worker = FORK.Process(target=_spend, args=(table, "api-client:1", 4))
    worker.start()
    worker.join(30)
    assert worker.exitcode == 0
    assert table.take("api-client:1", 1, rate=0.001, burst=5) == 0  # the fifth token
    assert table.take("api-client:1", 1, rate=0.001, burst=5) > 0  # none left, whoever asks
    assert table.take("api-client:2", 1, rate=0.001, burst=5) == 0  # another credential, its own bucket


def _die_holding_the_lock(table: SharedBuckets) -> None:
    fcntl.lockf(table._file.fileno(), fcntl.LOCK_EX)
    os._exit(0)  # killed inside a take, as far as the others can tell


def test_a_worker_dying_inside_a_take_does_not_lock_out_the_others() -> None:
    table = SharedBuckets()
    worker = FORK.Process(target=_die_holding_the_lock, args=(table,))
    worker.start()
    worker.join(30)
    started = time.monotonic()
    assert table.take("k", 1, rate=1, burst=1) == 0
    assert time.monotonic() - started < 1


def test_a_full_table_gives_the_longest_idle_slot_and_limits_still_hold() -> None:
    table = SharedBuckets(slots=16)
    for n in range(100):
        assert table.take(f"client {n}", 1, rate=0.001, burst=2) == 0
    assert table.take("busy", 2, rate=0.001, burst=2) == 0
    assert table.take("busy", 1, rate=0.001, burst=2) > 0
    wait = table.take("busy", 3, rate=10, burst=2)  # a cost over the burst waits for a full bucket
    assert 0 < wait <= 0.2


def test_the_bucket_refills_with_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a fixed clock (binary fractions: exact sums), so a slow machine cannot refill between takes."""
    clock = [1000.0]
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    table = SharedBuckets()
    assert table.take("a", 1, rate=4, burst=2) == 0 and table.take("a", 1, rate=4, burst=2) == 0
    assert table.take("a", 1, rate=4, burst=2) == 0.25
    clock[0] += 0.125
    assert table.take("a", 1, rate=4, burst=2) == 0.125
    clock[0] += 0.125
    assert table.take("a", 1, rate=4, burst=2) == 0
    assert table.take("a", 1, rate=4, burst=2) == 0.25
