"""The built-in test signature: the embedded file and the built-in list must agree."""

from __future__ import annotations

import hashlib
import io

from vakta import testsignature
from vakta.selftest import altered_copy, run_selftest
from vakta.signals import pdq
from vakta.signals.model import HashOptions, Signals
from vakta.signals.pdq_hasher import HASHER


def _pdq(data: bytes) -> Signals:
    signals = Signals("test")
    HASHER.compute(data, signals, HashOptions(extra_queries=False))
    return signals


def test_builtin_list_holds_the_embedded_files_hashes() -> None:
    data = testsignature.image_bytes()
    (record,) = testsignature.records()
    assert record.hashes["md5"] == hashlib.md5(data).hexdigest()
    assert record.hashes["sha1"] == hashlib.sha1(data).hexdigest()
    assert record.hashes["sha256"] == hashlib.sha256(data).hexdigest()
    assert pdq.hamming(record.hashes["pdq"], _pdq(data).pdq or "") <= 2
    assert (record.pdq_quality or 0) >= 80


def test_altered_copy_differs_in_bytes_but_not_in_pdq() -> None:
    data = testsignature.image_bytes()
    copy = altered_copy(data)
    assert hashlib.md5(copy).hexdigest() != hashlib.md5(data).hexdigest()
    assert pdq.hamming(_pdq(data).pdq or "", _pdq(copy).pdq or "") <= 31
    assert len(io.BytesIO(copy).getvalue()) < len(data)


def test_selftest_finds_both_files() -> None:
    results = run_selftest()
    assert set(results) == {"vakta-test.jpg", "vakta-test-resized.jpg"}
    assert {m.signal for m in results["vakta-test.jpg"]} >= {"md5", "pdq"}
    assert [m.signal for m in results["vakta-test-resized.jpg"]] == ["pdq"]
