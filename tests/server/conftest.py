"""Console server fixtures: a database on SQLite and on PostgreSQL, the app in process, a real server.

Every test that takes ``database_url`` runs twice: on a SQLite file and on a
fresh PostgreSQL database (created per test on the server that
``VAKTA_TEST_POSTGRES_URL`` points to, dropped afterwards). Without that
variable the PostgreSQL runs are skipped, saying so.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from vakta.server.accounts import create_token, create_user
from vakta.server.app import create_app
from vakta.server.db import Database
from vakta.server.models import Role
from vakta.server.settings import Settings

POSTGRES_ENV = "VAKTA_TEST_POSTGRES_URL"
VAKTA_BIN = Path(sys.executable).with_name("vakta")
TEST_LIST = "vakta-test"
PASSWORD = "a long enough password"
_serial = itertools.count(1)


# --------------------------------------------------------------------------- databases


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty console database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'console.db'}"
        return
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        pytest.skip(
            f"PostgreSQL runs need {POSTGRES_ENV}=postgresql://user:pass@host:port/db (.ci/run sets it)"
        )
    yield from _postgres_database(admin_url)


def _postgres_database(admin_url: str) -> Iterator[str]:
    import psycopg

    name = f"vakta_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(admin_url).set(drivername="postgresql")
    dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


# --------------------------------------------------------------------------- alerts


def alert(
    key: str | None = None,
    *,
    user: str = "bob",
    storage: str = "internal",
    test: bool = False,
    path: str | None = None,
    detected_at: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An alert as an agent sends it: hashes, path, list provenance; ``test``: on the built-in test list."""
    key = key or f"k-{next(_serial)}-{uuid.uuid4().hex[:8]}"
    md5 = hashlib.md5(key.encode()).hexdigest()
    match = {"list": TEST_LIST, "entry_id": "vakta-test-1", "category": "test", "signal": "md5"}
    if not test:
        match = {"list": "projectvic", "entry_id": f"e-{md5[:6]}", "category": "1", "signal": "md5"}
    body: dict[str, Any] = {
        "idempotency_key": key,
        "detected_at": (detected_at or datetime.now(UTC)).isoformat(),
        "user": user,
        "path": path or f"/home/{user}/Downloads/{key}.jpg",
        "storage": storage,
        "size": 1234,
        "type": "image/jpeg",
        "md5": md5,
        "sha256": hashlib.sha256(key.encode()).hexdigest(),
        "matches": [match],
    }
    body.update(extra)
    return body


# --------------------------------------------------------------------------- the app in process


@dataclass
class Console:
    """The app in process with helpers to make people, tokens and agents."""

    app: Any
    db: Database
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: Role) -> str:
        if role.value not in self.tokens or role == Role.AGENT_ENROLMENT:
            with self.db.write() as session:
                _, secret = create_token(session, role, f"test {role.value}", "test", None)
            self.tokens[role.value] = secret
        return self.tokens[role.value]

    def as_(self, role: Role | str) -> dict[str, str]:
        """Authorization headers of a bearer token of ``role`` (an agent's secret for "agent")."""
        if role == "agent":
            return self.headers(self.enrol()[1])
        return self.headers(self.token(Role(role)))

    @staticmethod
    def headers(secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}

    def enrol(self, hostname: str = "laptop-1") -> tuple[str, str]:
        """A new agent: (agent id, secret)."""
        response = self.client.post(
            "/api/v1/agents/enrol",
            json={"hostname": hostname, "os": "linux", "version": "0.1.0"},
            headers=self.headers(self.token(Role.AGENT_ENROLMENT)),
        )
        assert response.status_code == 201, response.text
        body = response.json()
        return body["agent_id"], body["secret"]

    def submit(self, secret: str, *alerts: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(
            "/api/v1/alerts", json={"alerts": list(alerts)}, headers=self.headers(secret)
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def user(self, username: str, role: Role) -> None:
        with self.db.write() as session:
            create_user(session, username, PASSWORD, role, "test")


@pytest.fixture
def console(database_url: str, db: Database) -> Iterator[Console]:
    app = create_app(Settings(database_url=database_url), db)
    with TestClient(app) as client:
        yield Console(app, db, client)


# --------------------------------------------------------------------------- a real server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def vakta_command() -> list[str]:
    return [str(VAKTA_BIN)] if VAKTA_BIN.exists() else [sys.executable, "-m", "vakta"]


@dataclass
class Served:
    """``vakta server run`` in its own process on a free loopback port."""

    database_url: str
    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``vakta server ARGS --database URL`` (a command of the same installation)."""
        return subprocess.run(
            [*vakta_command(), "--home", str(self.home), "server", *args, "--database", self.database_url],
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
            check=False,
        )

    def start(self, timeout: float = 30, *extra: str) -> None:
        listen = f"127.0.0.1:{self.port}"
        command = [*vakta_command(), "--home", str(self.home), "server", "run", "--listen", listen, *extra]
        with (self.home / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--database", self.database_url], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server did not answer within {timeout} s: {self.log()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")[-4000:]

    def token(self, role: str) -> str:
        done = self.cli("token", "create", "--role", role)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def client(self, secret: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    home = tmp_path / "home"
    home.mkdir()
    server = Served(database_url, home)
    server.start()
    yield server
    server.stop()
