"""Agents and alerts in process: enrolment, heartbeats, offline flag, revocation, batches, idempotency, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update

from vakta.server.models import Agent, Alert, ApiToken, Role

from .conftest import Console, alert


def test_enrolment_token_works_once_and_gives_the_agent_its_own_secret(console: Console) -> None:
    enrolment = console.token(Role.AGENT_ENROLMENT)
    body = {"hostname": "laptop-7", "os": "linux", "version": "0.1.0"}
    first = console.client.post("/api/v1/agents/enrol", json=body, headers=console.headers(enrolment))
    again = console.client.post("/api/v1/agents/enrol", json=body, headers=console.headers(enrolment))

    assert first.status_code == 201, first.text
    assert again.status_code == 401
    assert "already used" in again.json()["detail"]
    secret = first.json()["secret"]
    assert secret.startswith("vka_") and first.json()["offline_after_seconds"] == 900
    with console.db.read() as session:
        agents = session.execute(select(Agent)).scalars().all()
        assert [a.hostname for a in agents] == ["laptop-7"]
        assert secret not in agents[0].secret_hash  # stored hashed only
        assert session.execute(select(ApiToken.used_at)).scalar_one() is not None
    beat = console.client.post("/api/v1/agents/heartbeat", json={}, headers=console.headers(secret))
    assert beat.status_code == 200, beat.text


def test_enrolment_refuses_expired_revoked_and_non_enrolment_tokens(console: Console) -> None:
    body = {"hostname": "h"}
    expired = console.token(Role.AGENT_ENROLMENT)
    with console.db.write() as session:
        session.execute(update(ApiToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    analyst = console.token(Role.ANALYST)
    for secret in (expired, analyst, "vke_not-a-token"):
        response = console.client.post("/api/v1/agents/enrol", json=body, headers=console.headers(secret))
        assert response.status_code == 401, secret
    assert console.client.post("/api/v1/agents/enrol", json=body).status_code == 401
    with console.db.read() as session:
        assert session.execute(select(func.count()).select_from(Agent)).scalar_one() == 0


def test_heartbeat_is_shown_and_silent_agents_are_flagged_offline(console: Console) -> None:
    quiet_id, _ = console.enrol("quiet")
    busy_id, busy = console.enrol("busy")
    last_scan = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    beat = {
        "version": "0.2.0",
        "list_version": "lists-42",
        "last_scan_at": last_scan.isoformat(),
        "queue_length": 3,
    }
    assert (
        console.client.post("/api/v1/agents/heartbeat", json=beat, headers=console.headers(busy)).status_code
        == 200
    )
    with console.db.write() as session:  # silent for an hour: longer than the 15 minutes allowed
        session.execute(
            update(Agent)
            .where(Agent.id == quiet_id)
            .values(last_seen_at=datetime.now(UTC) - timedelta(hours=1))
        )

    admin = console.as_(Role.ADMIN)
    agents = {a["hostname"]: a for a in console.client.get("/api/v1/agents", headers=admin).json()}
    assert agents["busy"]["status"] == "online"
    assert agents["busy"]["version"] == "0.2.0" and agents["busy"]["list_version"] == "lists-42"
    assert agents["busy"]["queue_length"] == 3
    assert datetime.fromisoformat(agents["busy"]["last_scan_at"]) == last_scan
    assert agents["quiet"]["status"] == "offline"
    offline = console.client.get("/api/v1/agents", params={"state": "offline"}, headers=admin).json()
    assert [a["id"] for a in offline] == [quiet_id]
    stats = console.client.get("/api/v1/stats", headers=admin).json()
    assert stats["agents"] == {"online": 1, "offline": 1, "revoked": 0}
    assert busy_id in {a["id"] for a in console.client.get("/api/v1/agents", headers=admin).json()}


def test_a_revoked_agent_is_refused_and_its_alerts_stay(console: Console) -> None:
    agent_id, secret = console.enrol()
    console.submit(secret, alert("before"))
    admin = console.as_(Role.ADMIN)
    revoked = console.client.post(f"/api/v1/agents/{agent_id}/revoke", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"

    for path, body in (("/api/v1/agents/heartbeat", {}), ("/api/v1/alerts", {"alerts": [alert("after")]})):
        response = console.client.post(path, json=body, headers=console.headers(secret))
        assert response.status_code == 403, path
        assert "revoked" in response.json()["detail"]
    keys = [a["idempotency_key"] for a in console.client.get("/api/v1/alerts", headers=admin).json()]
    assert keys == ["before"]
    assert console.client.post("/api/v1/agents/nope/revoke", headers=admin).status_code == 404


def test_a_retried_batch_never_duplicates_and_says_which_alerts_were_new(console: Console) -> None:
    _, secret = console.enrol()
    batch = [alert("a1"), alert("a2"), alert("a3")]
    first = console.submit(secret, *batch)
    retry = console.submit(secret, *batch)
    mixed = console.submit(secret, alert("a3"), alert("a4"), alert("a4"))

    assert first["new"] == 3 and first["duplicates"] == 0
    assert all(r["new"] for r in first["results"])
    assert retry["new"] == 0 and retry["duplicates"] == 3
    assert [r["alert_id"] for r in retry["results"]] == [r["alert_id"] for r in first["results"]]
    assert [(r["idempotency_key"], r["new"]) for r in mixed["results"]] == [
        ("a3", False),
        ("a4", True),
        ("a4", False),
    ]
    assert mixed["results"][1]["alert_id"] == mixed["results"][2]["alert_id"]
    with console.db.read() as session:
        assert session.execute(select(func.count()).select_from(Alert)).scalar_one() == 4


def test_idempotency_keys_belong_to_their_agent(console: Console) -> None:
    _, one = console.enrol("one")
    _, two = console.enrol("two")
    assert console.submit(one, alert("same"))["new"] == 1
    assert console.submit(two, alert("same"))["new"] == 1  # another agent's key cannot hide this alert


def test_alerts_keep_every_field_and_the_host_comes_from_the_agent(console: Console) -> None:
    agent_id, secret = console.enrol("fileserver")
    sent = alert(
        "full",
        user="carol",
        storage="network",
        path="/srv/share/archive.zip",
        inside=["photos/", "a.jpg"],
        deleted=True,
        parent_md5="0" * 32,
        pdq="f" * 64,
        pdq_quality=90,
        sha1="1" * 40,
    )
    sent["matches"][0].update(distance=4, transform="mirror", list_format="vics", imported_at="2026-01-01")
    console.submit(secret, sent)

    (stored,) = console.client.get("/api/v1/alerts", headers=console.as_(Role.AUDITOR)).json()
    assert stored["agent_id"] == agent_id and stored["host"] == "fileserver"
    for key in (
        "user",
        "storage",
        "path",
        "inside",
        "deleted",
        "parent_md5",
        "pdq",
        "pdq_quality",
        "md5",
        "sha1",
    ):
        assert stored[key] == sent[key], key
    assert stored["matches"][0]["transform"] == "mirror" and stored["matches"][0]["distance"] == 4
    assert datetime.fromisoformat(stored["detected_at"]) == datetime.fromisoformat(sent["detected_at"])
    assert stored["test"] is False


def test_fields_that_could_carry_content_are_refused(console: Console) -> None:
    _, secret = console.enrol()
    headers = console.headers(secret)
    refused = [
        alert(content="aGVsbG8="),  # unknown field: no free-form data
        alert(thumbnail="x"),
        alert(md5="not a hash"),
        alert(path="/x" * 3000),  # over 4096 characters
        alert(path="/a\x00b"),
        alert(user="u\x00"),
        alert(matches=[]),
        alert(matches=[{"list": "l", "entry_id": "e", "signal": "md5", "note": "free text"}]),
        alert(storage="floppy"),
        alert(detected_at=datetime(2026, 1, 1)),  # no time zone
        {**alert(), "md5": None, "sha256": None},  # no hash at all
    ]
    for body in refused:
        response = console.client.post("/api/v1/alerts", json={"alerts": [body]}, headers=headers)
        assert response.status_code == 422, body
    too_many = {"alerts": [alert() for _ in range(501)]}
    assert console.client.post("/api/v1/alerts", json=too_many, headers=headers).status_code == 422
    with console.db.read() as session:
        assert session.execute(select(func.count()).select_from(Alert)).scalar_one() == 0


def test_a_body_over_the_limit_is_refused_before_it_is_read(console: Console) -> None:
    _, secret = console.enrol()
    huge = b'{"alerts": [' + b" " * (9 * 1024 * 1024) + b"]}"
    response = console.client.post(
        "/api/v1/alerts",
        content=huge,
        headers={**console.headers(secret), "content-type": "application/json"},
    )
    assert response.status_code == 413


def test_chunked_body_over_the_limit_is_refused(console: Console) -> None:
    _, secret = console.enrol()

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        yield b'{"alerts": ['
        for _ in range(10):
            yield b" " * (1024 * 1024)
        yield b"]}"

    response = console.client.post(
        "/api/v1/alerts",
        content=chunks(),
        headers={**console.headers(secret), "content-type": "application/json"},
    )
    assert response.status_code == 413
