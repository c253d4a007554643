"""A real ``vakta server run`` on loopback: the CLI contract, restarts, concurrent batches, ``kill -9`` mid-ingestion."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import PASSWORD, Served, alert

BATCH = 20


def _enrol(served: Served, hostname: str) -> str:
    with served.client(served.token("agent-enrolment")) as client:
        response = client.post("/api/v1/agents/enrol", json={"hostname": hostname, "os": "linux"})
    assert response.status_code == 201, response.text
    secret: str = response.json()["secret"]
    return secret


def _all_alerts(served: Served, token: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with served.client(token) as client:
        while True:
            page = client.get("/api/v1/alerts", params={"limit": 1000, "offset": len(out)})
            assert page.status_code == 200, page.text
            out += page.json()
            if len(page.json()) < 1000:
                return out


def test_cli_contract_login_enrol_report_and_restart_keeps_everything(served: Served, tmp_path: Path) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    made = served.cli("create-admin", "--username", "root", "--password-file", str(password_file))
    assert made.returncode == 0, made.stderr
    again = served.cli("create-admin", "--username", "root", "--password-file", str(password_file))
    assert again.returncode == 1 and "exists already" in again.stderr
    password_file.write_text("short\n")
    weak = served.cli("create-admin", "--username", "other", "--password-file", str(password_file))
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr

    enrolment = served.token("agent-enrolment")
    assert enrolment.startswith("vke_") and len(enrolment) > 40
    with served.client(enrolment) as client:
        body = {"hostname": "laptop-1", "os": "linux"}
        enrolled = client.post("/api/v1/agents/enrol", json=body)
        assert enrolled.status_code == 201
        assert client.post("/api/v1/agents/enrol", json=body).status_code == 401  # one-time
    secret = enrolled.json()["secret"]
    with served.client(secret) as agent:
        assert (
            agent.post("/api/v1/agents/heartbeat", json={"version": "0.1.0", "queue_length": 0}).status_code
            == 200
        )
        result = agent.post("/api/v1/alerts", json={"alerts": [alert("e2e-1"), alert("e2e-2", test=True)]})
        assert result.status_code == 200 and result.json()["new"] == 2
        assert agent.get("/api/v1/incidents").status_code == 403

    with httpx.Client(base_url=served.base_url) as browser:
        login = browser.post("/api/v1/session", json={"username": "root", "password": PASSWORD})
        assert login.status_code == 200, login.text
        incidents = browser.get("/api/v1/incidents").json()
        real = next(i for i in incidents if not i["test"])
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        moved = browser.patch(f"/api/v1/incidents/{real['id']}", json={"state": "triage"}, headers=csrf)
        assert moved.status_code == 200

    served.stop()
    served.start()

    with served.client(secret) as agent:  # the agent's secret survives a restart
        retry = agent.post("/api/v1/alerts", json={"alerts": [alert("e2e-1")]})
        assert retry.json()["new"] == 0
    auditor = served.token("auditor")
    with served.client(auditor) as client:
        incidents = {i["id"]: i for i in client.get("/api/v1/incidents").json()}
        assert incidents[real["id"]]["state"] == "triage"
        assert sorted(i["test"] for i in incidents.values()) == [False, True]
        assert client.get("/api/v1/agents").json()[0]["hostname"] == "laptop-1"
    verified = served.cli("verify-audit")
    assert verified.returncode == 0, verified.stderr
    assert "audit log intact" in verified.stdout


def _post_batches(
    served: Served,
    secret: str,
    batches: list[list[dict[str, Any]]],
    results: list[Any],
    stop: threading.Event,
) -> None:
    with served.client(secret) as client:
        for batch in batches:
            if stop.is_set():
                return
            try:
                response = client.post("/api/v1/alerts", json={"alerts": batch})
            except httpx.TransportError:
                return  # the server went away: this batch is not acknowledged
            if response.status_code == 200:
                results.append(response.json())


def test_concurrent_and_doubled_batches_lose_nothing_and_duplicate_nothing(served: Served) -> None:
    _concurrent_and_doubled(served)


def _concurrent_and_doubled(served: Served) -> None:
    agents = [_enrol(served, f"host-{n}") for n in range(4)]
    plans = {
        secret: [[alert(user=f"u{i % 3}") for i in range(BATCH)] for _ in range(15)] for secret in agents
    }
    results: dict[str, list[Any]] = {secret: [] for secret in agents}
    stop = threading.Event()
    threads = [  # every agent's batches twice, at the same time: retries racing the first try
        threading.Thread(target=_post_batches, args=(served, secret, plans[secret], results[secret], stop))
        for secret in agents
        for _ in range(2)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    elapsed = time.monotonic() - started

    sent = {a["idempotency_key"] for plan in plans.values() for batch in plan for a in batch}
    for secret in agents:
        replies = results[secret]
        assert len(replies) == 2 * len(plans[secret])  # every batch acknowledged, twice
        outcomes = [r for reply in replies for r in reply["results"]]
        new_keys = [r["idempotency_key"] for r in outcomes if r["new"]]
        assert len(new_keys) == len(set(new_keys)) == len(plans[secret]) * BATCH  # each key new exactly once
    stored = _all_alerts(served, served.token("auditor"))
    assert len(stored) == len(sent) == 4 * 15 * BATCH
    assert {a["idempotency_key"] for a in stored} == sent
    print(f"{2 * len(sent)} alerts in {elapsed:.1f} s: {2 * len(sent) / elapsed:.0f} alerts/s with doubles")


@pytest.fixture
def ingestion(served: Served) -> Iterator[tuple[Served, list[str], dict[str, list[list[dict[str, Any]]]]]]:
    agents = [_enrol(served, f"host-{n}") for n in range(4)]
    plans = {secret: [[alert() for _ in range(BATCH)] for _ in range(60)] for secret in agents}
    yield served, agents, plans


def test_kill_9_during_ingestion_loses_no_acknowledged_alert(
    ingestion: tuple[Served, list[str], dict[str, list[list[dict[str, Any]]]]],
) -> None:
    served, agents, plans = ingestion
    auditor = served.token("auditor")
    results: dict[str, list[Any]] = {secret: [] for secret in agents}
    stop = threading.Event()
    threads = [
        threading.Thread(target=_post_batches, args=(served, secret, plans[secret], results[secret], stop))
        for secret in agents
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while sum(len(r) for r in results.values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    served.kill()  # mid-stream: requests in flight are cut off
    stop.set()
    for thread in threads:
        thread.join(60)
    acknowledged = {
        r["idempotency_key"] for replies in results.values() for reply in replies for r in reply["results"]
    }
    total = sum(len(plan) for plan in plans.values()) * BATCH
    assert 20 * BATCH <= len(acknowledged) < total  # the kill came during ingestion

    served.start()
    stored = {a["idempotency_key"] for a in _all_alerts(served, auditor)}
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged alerts lost"

    # The agents retry everything they hold: every alert ends up stored exactly once.
    stop.clear()
    retry_results: dict[str, list[Any]] = {secret: [] for secret in agents}
    retries = [
        threading.Thread(
            target=_post_batches, args=(served, secret, plans[secret], retry_results[secret], stop)
        )
        for secret in agents
    ]
    for thread in retries:
        thread.start()
    for thread in retries:
        thread.join(120)
    assert sum(len(r) for r in retry_results.values()) == sum(len(plan) for plan in plans.values())
    final = _all_alerts(served, auditor)
    sent = {a["idempotency_key"] for plan in plans.values() for batch in plan for a in batch}
    assert len(final) == len(sent) == total
    assert {a["idempotency_key"] for a in final} == sent
    verified = served.cli("verify-audit")
    assert verified.returncode == 0, verified.stderr


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find the worker processes")
def test_worker_processes_share_the_port_and_a_dead_one_is_replaced(
    database_url: str, tmp_path: Path
) -> None:
    served = Served(database_url, tmp_path)
    served.start(30, "--workers", "2")
    try:
        assert served.process is not None
        workers = _children(served.process.pid)
        assert len(workers) == 2, served.log()
        _concurrent_and_doubled(served)
        os.kill(min(workers), signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(_children(served.process.pid) - {min(workers)}) < 2:
            time.sleep(0.1)
        replaced = _children(served.process.pid)
        assert len(replaced) == 2 and min(workers) not in replaced, served.log()
        with served.client(served.token("auditor")) as client:
            assert all(client.get("/api/v1/stats").status_code == 200 for _ in range(10))
    finally:
        served.stop()
    assert served.process is not None and served.process.returncode == 0, served.log()
    assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)


def test_the_matching_api_limit_holds_across_worker_processes(database_url: str, tmp_path: Path) -> None:
    """Lookups spread over both workers share one bucket: about BURST pass, not twice that."""
    from vakta.server.api.matching import BURST, RATE

    served = Served(database_url, tmp_path)
    served.start(30, "--workers", "2")
    try:
        token = served.token("api-client")
        body = {"hashes": ["d41d8cd98f00b204e9800998ecf8427e"]}
        started = time.monotonic()

        def lookup(_: int) -> int:
            with served.client(token) as client:  # a connection each: the kernel spreads them
                return client.post("/api/v1/lookup", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lookup, range(int(BURST) * 3)))
        elapsed = time.monotonic() - started
    finally:
        served.stop()
    allowed = codes.count(200)
    assert set(codes) == {200, 429}, codes
    assert BURST <= allowed <= BURST + RATE * elapsed + 1, (allowed, elapsed)
