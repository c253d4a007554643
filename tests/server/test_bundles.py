"""Signed hash-list bundles: signature, tampering, wrong keys, ETag, who may fetch one, list imports."""

from __future__ import annotations

import base64
import csv
import io
import logging
import os
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ImageFactory, RunCli
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from vakta import bundles
from vakta.server.app import create_app
from vakta.server.db import Database
from vakta.server.models import Role
from vakta.server.settings import Settings

from .conftest import Console, Served, vakta_command

BUNDLE = "/api/v1/lists/bundle"


@dataclass
class Lists:
    """The console in process with its own folder (``<home>/server``) and the CLI on the same home."""

    console: Console
    home: Path
    run: RunCli

    @property
    def server_home(self) -> Path:
        return self.home / "server"

    def public_key(self) -> str:
        shown = self.run("server", "key", "show")
        assert shown.exit_code == 0, shown.stderr
        return shown.stdout.strip()

    def fetch(self, headers: dict[str, str]) -> Any:
        return self.console.client.get(BUNDLE, headers=headers)


@pytest.fixture
def lists(database_url: str, db: Database, home: Path, run_cli: RunCli) -> Iterator[Lists]:
    app = create_app(Settings(database_url=database_url, home=home / "server"), db)
    with TestClient(app) as client:
        yield Lists(Console(app, db, client), home, run_cli)


def partner_list(tmp_path: Path, images: ImageFactory, run: RunCli, name: str = "partner") -> dict[str, Any]:
    """A generated picture's hashes, imported with ``vakta server lists import`` as entry P-1."""
    picture = images.save(images.pattern(7), tmp_path / "known" / "p.png")
    hashed = run("hash", picture)
    assert hashed.exit_code == 0, hashed.stderr
    record: dict[str, Any] = hashed.records()[0]
    list_file = tmp_path / f"{name}.csv"
    with list_file.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "category", "md5", "sha1", "pdq"])
        writer.writerow(["P-1", "A1", record["md5"], record["sha1"], record["pdq"]])
        writer.writerow(["P-2", "B1", "not a hash", "", ""])
    imported = run("server", "lists", "import", list_file, "--name", name, "--format", "csv")
    assert imported.exit_code == 0, imported.stderr
    assert ":3: " in imported.stderr  # the bad line named by number
    return record


def test_a_bundle_verifies_with_the_pinned_key_and_holds_the_lists(
    lists: Lists, tmp_path: Path, images: ImageFactory
) -> None:
    record = partner_list(tmp_path, images, lists.run)
    public = lists.public_key()
    response = lists.fetch(lists.console.as_("agent"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "no-store" in response.headers["cache-control"]
    signature = response.headers[bundles.SIGNATURE_HEADER]
    assert signature.startswith("ed25519=")
    assert bundles.verify(response.content, signature, public)

    manifest = bundles.manifest(response.content)
    assert manifest["format"] == "vakta-bundle/1" and manifest["created_at"]
    assert response.headers["etag"] == f'"{manifest["version"]}"'
    (entry,) = manifest["lists"]
    assert entry["name"] == "partner" and entry["purpose"] == "detect"
    assert entry["counts"] == {"md5": 1, "sha1": 1, "pdq": 1} and entry["imports"] == 1
    files = bundles.list_files(response.content)
    rows = list(csv.DictReader(io.StringIO(files[entry["files"][0]["path"]].decode())))
    assert rows == [
        {
            "id": "P-1",
            "category": "A1",
            "md5": record["md5"],
            "sha1": record["sha1"],
            "sha256": "",
            "pdq": record["pdq"],
        }
    ]


def test_a_changed_bundle_or_another_key_fails_verification(
    lists: Lists, tmp_path: Path, images: ImageFactory
) -> None:
    partner_list(tmp_path, images, lists.run)
    public = lists.public_key()
    response = lists.fetch(lists.console.as_("agent"))
    data, signature = response.content, response.headers[bundles.SIGNATURE_HEADER]
    assert bundles.verify(data, signature, public)

    for position in (0, len(data) // 2, len(data) - 1):
        changed = bytearray(data)
        changed[position] ^= 0x01
        assert not bundles.verify(bytes(changed), signature, public), position
    assert not bundles.verify(data + b"\x00", signature, public)
    other = bundles.public_key_text(Ed25519PrivateKey.generate().public_key())
    assert not bundles.verify(data, signature, other)
    assert not bundles.verify(data, "ed25519=not base64!", public)
    assert not bundles.verify(data, "ed25519=" + base64.b64encode(b"x" * 63).decode(), public)
    # A signature of the old bundle does not cover a rebuilt one with different members.
    rebuilt = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(rebuilt, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name).replace(b"P-1", b"P-9"))
    assert not bundles.verify(rebuilt.getvalue(), signature, public)
    with pytest.raises(bundles.BundleError):
        bundles.verify(data, signature, "not a key")


def test_the_key_is_private_made_once_and_also_given_as_pem(lists: Lists) -> None:
    public = lists.public_key()
    key_file = lists.server_home / bundles.KEY_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert lists.public_key() == public  # the same key again
    response = lists.fetch(lists.console.as_(Role.ADMIN))
    overview = lists.console.client.get("/api/v1/lists", headers=lists.console.as_(Role.AUDITOR)).json()
    assert overview["public_key"] == public and overview["lists"] == []
    pem = bundles.parse_public_key(public).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert bundles.verify(response.content, response.headers[bundles.SIGNATURE_HEADER], pem)


def test_an_unchanged_bundle_answers_304_and_a_new_import_a_new_version(
    lists: Lists, tmp_path: Path, images: ImageFactory
) -> None:
    partner_list(tmp_path, images, lists.run)
    agent = lists.console.as_("agent")
    first = lists.fetch(agent)
    etag = first.headers["etag"]
    again = lists.fetch({**agent, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert lists.fetch({**agent, "If-None-Match": f'W/"x", {etag}'}).status_code == 304
    assert lists.fetch({**agent, "If-None-Match": '"something else"'}).status_code == 200

    admin = lists.console.as_(Role.ADMIN)
    body = b"# md5 list\n" + b"0123456789abcdef0123456789abcdef\n" + b"zzz\n"
    imported = lists.console.client.put("/api/v1/lists/delta?kind=md5", content=body, headers=admin)
    assert imported.status_code == 200, imported.text
    result = imported.json()
    assert result["added"] == 1 and result["invalid"] == 1 and result["issues"][0].startswith("line 3:")
    assert result["version"] != etag.strip('"')
    changed = lists.fetch({**agent, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] == f'"{result["version"]}"'
    assert bundles.verify(changed.content, changed.headers[bundles.SIGNATURE_HEADER], lists.public_key())
    names = [e["name"] for e in bundles.manifest(changed.content)["lists"]]
    assert names == ["delta", "partner"]
    audit = lists.console.client.get("/api/v1/audit?target=list:delta", headers=admin).json()
    assert [e["action"] for e in audit] == ["lists.import"]


def test_only_agents_and_admins_get_a_bundle(lists: Lists) -> None:
    console = lists.console
    assert lists.fetch({}).status_code == 401
    assert lists.fetch(console.headers("vkt_forged")).status_code == 401
    for role in (Role.AUDITOR, Role.ANALYST, Role.API_CLIENT):
        assert lists.fetch(console.as_(role)).status_code == 403, role
    assert lists.fetch(console.as_(Role.ADMIN)).status_code == 200
    agent_id, secret = console.enrol("laptop-9")
    assert lists.fetch(console.headers(secret)).status_code == 200
    revoked = console.client.post(f"/api/v1/agents/{agent_id}/revoke", headers=console.as_(Role.ADMIN))
    assert revoked.status_code == 200
    assert lists.fetch(console.headers(secret)).status_code == 403


def test_list_imports_through_the_api_are_for_admins_and_checked(lists: Lists) -> None:
    console = lists.console
    body = b"0123456789abcdef0123456789abcdef\n"
    for role in (Role.AUDITOR, Role.ANALYST, Role.API_CLIENT):
        assert (
            console.client.put("/api/v1/lists/x", content=body, headers=console.as_(role)).status_code == 403
        )
    assert (
        console.client.put("/api/v1/lists/x", content=body, headers=console.as_("agent")).status_code == 403
    )
    admin = console.as_(Role.ADMIN)
    assert console.client.put("/api/v1/lists/vakta-test", content=body, headers=admin).status_code == 409
    empty = console.client.put("/api/v1/lists/x", content=b"nothing here\n", headers=admin)
    assert empty.status_code == 422 and "nothing here" not in empty.text
    unknown = console.client.put("/api/v1/lists/x?format=nonsense", content=body, headers=admin)
    assert unknown.status_code == 422 and "csv" in unknown.text
    good = console.client.put("/api/v1/lists/good?ignore=true&format=text", content=body, headers=admin)
    assert good.status_code == 200, good.text
    overview = console.client.get("/api/v1/lists", headers=admin).json()["lists"]
    assert [(x["name"], x["purpose"]) for x in overview] == [("good", "ignore")]


def test_a_bundle_is_never_logged(
    lists: Lists, tmp_path: Path, images: ImageFactory, caplog: pytest.LogCaptureFixture
) -> None:
    record = partner_list(tmp_path, images, lists.run)
    with caplog.at_level(logging.DEBUG):
        response = lists.fetch(lists.console.as_("agent"))
    assert response.status_code == 200
    text = caplog.text.lower()
    assert "bundle" in text  # its version and size are
    for value in (record["md5"], record["sha1"], record["pdq"]):
        assert value.lower() not in text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_served_console_makes_its_key_at_start(served: Served) -> None:
    key_file = served.home / "server" / bundles.KEY_FILE
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    command = [*vakta_command(), "--home", str(served.home), "server", "key", "show"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    with served.client(served.token("admin")) as client:
        response = client.get(BUNDLE)
        assert response.status_code == 200
        assert bundles.verify(
            response.content, response.headers[bundles.SIGNATURE_HEADER], shown.stdout.strip()
        )
