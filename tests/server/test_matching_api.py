"""The matching API: hash lookups and file matches for platforms, who may call them, and the rate limit."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageFactory, RunCli
from fastapi.testclient import TestClient

from vakta import testsignature
from vakta.selftest import altered_copy
from vakta.server.api.matching import TokenBucket
from vakta.server.app import create_app
from vakta.server.db import Database
from vakta.server.models import Role
from vakta.server.settings import Settings

from .conftest import Console
from .test_bundles import partner_list

LOOKUP = "/api/v1/lookup"
MATCH = "/api/v1/match"


@pytest.fixture
def console(database_url: str, db: Database, home: Path) -> Iterator[Console]:
    app = create_app(Settings(database_url=database_url, home=home / "server"), db)
    with TestClient(app) as client:
        yield Console(app, db, client)


def _lookup(console: Console, hashes: list[str], role: Role | str = Role.API_CLIENT, **extra: Any) -> Any:
    response = console.client.post(LOOKUP, json={"hashes": hashes, **extra}, headers=console.as_(role))
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _match(console: Console, data: bytes, role: Role | str = Role.API_CLIENT) -> dict[str, Any]:
    response = console.client.post(MATCH, content=data, headers=console.as_(role))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _test_hashes() -> dict[str, str]:
    """The test picture's entry (the video has its own)."""
    md5 = hashlib.md5(testsignature.image_bytes()).hexdigest()
    (record,) = [r for r in testsignature.records() if r.hashes.get("md5") == md5]
    return record.hashes


def test_lookup_finds_the_test_signature_by_every_hash_kind(console: Console) -> None:
    hashes = _test_hashes()
    pdq = hashes["pdq"]
    near = f"{int(pdq, 16) ^ 0b1011:064x}"  # three bits flipped
    inputs = [hashes["md5"], f"sha1:{hashes['sha1']}", hashes["sha256"], pdq, near, "0" * 32, "not-a-hash"]
    results = _lookup(console, inputs)
    assert [r["input"] for r in results] == inputs
    for result, kind, distance in zip(
        results[:5], ("md5", "sha1", "sha256", "pdq", "pdq"), (0, 0, 0, 0, 3), strict=True
    ):
        (found,) = [m for m in result["matches"] if m["signal"] == kind]
        assert found["list"] == testsignature.LIST_NAME and found["distance"] == distance
        assert found["entry_id"] and found["category"]
    assert results[5]["matches"] == [] and "error" not in results[5]
    assert "error" in results[6] and "matches" not in results[6]
    assert _lookup(console, [near], threshold=2)[0]["matches"] == []


def test_lookup_finds_an_imported_list(
    console: Console, tmp_path: Path, images: ImageFactory, run_cli: RunCli
) -> None:
    record = partner_list(tmp_path, images, run_cli)
    results = _lookup(console, [record["md5"], record["pdq"]], role="agent")
    for result, kind in zip(results, ("md5", "pdq"), strict=True):
        (found,) = result["matches"]
        assert (found["list"], found["entry_id"], found["category"], found["signal"], found["distance"]) == (
            "partner",
            "P-1",
            "A1",
            kind,
            0,
        )
    # A list imported after the first lookup is seen by the next one (the index follows the store).
    admin = console.as_(Role.ADMIN)
    delta = console.client.put("/api/v1/lists/delta?kind=md5", content=b"ab" * 16 + b"\n", headers=admin)
    assert delta.status_code == 200, delta.text
    (found,) = _lookup(console, ["ab" * 16])[0]["matches"]
    assert found["list"] == "delta"


def test_match_finds_the_test_image_and_a_resized_copy(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    original = testsignature.image_bytes()
    with caplog.at_level(logging.DEBUG):
        exact = _match(console, original)
    hashes = _test_hashes()
    assert exact["md5"] == hashes["md5"] and exact["type"] == "image/jpeg" and exact["size"] == len(original)
    assert {m["signal"] for m in exact["matches"]} >= {"md5", "sha1", "sha256", "pdq"}
    assert all(m["list"] == testsignature.LIST_NAME for m in exact["matches"])
    assert hashes["md5"] not in caplog.text and exact["pdq"] not in caplog.text

    resized = _match(console, altered_copy(original), role="agent")
    assert resized["md5"] != hashes["md5"]
    (found,) = resized["matches"]
    assert found["signal"] == "pdq" and 0 < found["distance"] <= 31
    assert found["list"] == testsignature.LIST_NAME and found["entry_id"]


def test_match_of_hostile_or_unknown_input_is_an_answer_not_a_failure(
    console: Console, images: ImageFactory
) -> None:
    benign = _match(console, images.encode(images.pattern(3), "PNG"))
    assert benign["matches"] == [] and benign["pdq"] and benign["errors"] == []
    truncated = _match(console, testsignature.image_bytes()[:2000])
    assert truncated["md5"] and truncated["errors"] and truncated["matches"] == []
    junk = _match(console, b"\x00garbage" * 1000)
    assert junk["pdq"] is None and junk["matches"] == []
    headers = console.as_(Role.API_CLIENT)
    assert console.client.post(MATCH, content=b"", headers=headers).status_code == 422
    too_big = console.client.post(MATCH, content=b"x" * (8 * 1024 * 1024 + 1), headers=headers)
    assert too_big.status_code == 413
    assert console.client.post(LOOKUP, json={"hashes": []}, headers=headers).status_code == 422
    many = {"hashes": ["0" * 32] * 10_001}
    assert console.client.post(LOOKUP, json=many, headers=headers).status_code == 422


def test_only_api_clients_and_agents_may_match(console: Console) -> None:
    body = {"hashes": [_test_hashes()["md5"]]}
    for headers in ({}, console.headers("vkt_forged")):
        assert console.client.post(LOOKUP, json=body, headers=headers).status_code == 401
        assert console.client.post(MATCH, content=b"x", headers=headers).status_code == 401
    for role in (Role.AUDITOR, Role.ANALYST, Role.ADMIN):
        assert console.client.post(LOOKUP, json=body, headers=console.as_(role)).status_code == 403, role
        assert console.client.post(MATCH, content=b"x", headers=console.as_(role)).status_code == 403, role
    assert _lookup(console, body["hashes"], role="agent")[0]["matches"]
    token = console.token(Role.API_CLIENT)
    created = console.client.get("/api/v1/tokens", headers=console.as_(Role.ADMIN)).json()
    (row,) = [t for t in created if t["role"] == "api-client"]
    revoke = console.client.post(f"/api/v1/tokens/{row['id']}/revoke", headers=console.as_(Role.ADMIN))
    assert revoke.status_code == 200
    assert console.client.post(LOOKUP, json=body, headers=console.headers(token)).status_code == 401


def test_each_credential_is_rate_limited_on_its_own(console: Console) -> None:
    console.app.state.rate_limiter = TokenBucket(rate=0.05, burst=3)
    body = {"hashes": [_test_hashes()["md5"]]}
    first = console.as_(Role.API_CLIENT)
    for _ in range(2):
        assert console.client.post(LOOKUP, json=body, headers=first).status_code == 200
    assert console.client.post(MATCH, content=b"x", headers=first).status_code == 429  # costs 2, 1 left
    assert console.client.post(LOOKUP, json=body, headers=first).status_code == 200
    refused = console.client.post(LOOKUP, json=body, headers=first)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert console.client.post(LOOKUP, json=body, headers=console.as_("agent")).status_code == 200


def test_the_api_client_role_is_a_token_of_the_cli(run_cli: RunCli) -> None:
    made = run_cli("server", "token", "create", "--role", "api-client", "--name", "platform")
    assert made.exit_code == 0, made.stderr
    assert made.stdout.strip().startswith("vkt_") and "api-client bearer token" in made.stderr
