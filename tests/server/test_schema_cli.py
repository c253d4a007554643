"""Migrations against the models, the ``vakta server`` commands in process, and a light ``vakta --help``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select

from vakta.server.auth import digest
from vakta.server.cli import parse_listen
from vakta.server.db import Database, DatabaseError, normalise_url
from vakta.server.models import ApiToken, Base, User


def test_migrations_build_exactly_the_models_and_run_again_harmlessly(db: Database) -> None:
    with db.engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert differences == []
    db.migrate()  # a restart on an up-to-date schema changes nothing
    assert db.schema_is_current()


def test_token_commands_print_list_and_revoke(database_url: str, run_cli) -> None:  # type: ignore[no-untyped-def]
    made = run_cli(
        "server", "token", "create", "--role", "auditor", "--name", "prometheus", "--database", database_url
    )
    assert made.exit_code == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("vkt_") and "\n" not in secret
    assert "auditor bearer token" in made.stderr
    enrol = run_cli(
        "server",
        "token",
        "create",
        "--role",
        "agent-enrolment",
        "--expires-hours",
        "24",
        "--database",
        database_url,
    )
    assert enrol.stdout.strip().startswith("vke_") and "one-time enrolment token, expires" in enrol.stderr

    db = Database(database_url)
    with db.read() as session:
        row = session.execute(select(ApiToken).where(ApiToken.token_hash == digest(secret))).scalar_one()
        assert (row.role, row.name, row.created_by) == ("auditor", "prometheus", "cli")
    listed = run_cli("server", "token", "list", "--database", database_url)
    assert listed.stdout.splitlines() == ["1\tauditor\tactive\tprometheus", "2\tagent-enrolment\tactive\t"]
    assert secret not in listed.stdout
    assert run_cli("server", "token", "revoke", "1", "--database", database_url).exit_code == 0
    assert run_cli("server", "token", "revoke", "9", "--database", database_url).exit_code == 1
    assert (
        "1\tauditor\trevoked/expired\tprometheus"
        in run_cli("server", "token", "list", "--database", database_url).stdout
    )
    bad = run_cli("server", "token", "create", "--role", "agent", "--database", database_url)
    assert bad.exit_code == 2
    db.dispose()


def test_create_admin_from_a_password_file_hashes_the_password(
    database_url: str, run_cli, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    password = tmp_path / "pw"
    password.write_text("correct horse battery staple\nsecond line ignored\n")
    made = run_cli(
        "server",
        "create-admin",
        "--username",
        "root",
        "--password-file",
        password,
        "--database",
        database_url,
    )
    assert made.exit_code == 0, made.stderr
    db = Database(database_url)
    with db.read() as session:
        user = session.execute(select(User)).scalar_one()
    db.dispose()
    assert (user.username, user.role) == ("root", "admin")
    assert user.password_hash.startswith("$argon2id$") and "correct horse" not in user.password_hash


def test_default_database_is_sqlite_under_the_vakta_home(home: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    made = run_cli("server", "token", "create", "--role", "analyst")
    assert made.exit_code == 0, made.stderr
    database = home / "server" / "console.db"
    assert database.is_file()
    assert database.stat().st_mode & 0o077 == 0  # alerts name people and paths: owner only


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x/y", "unsupported database 'mysql'"),
        ("sqlite://", "SQLite needs a file"),
        ("postgresql://nobody:x@127.0.0.1:1/none", "database:"),
    ],
)
def test_an_unusable_database_is_a_clear_error(url: str, message: str, run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("server", "verify-audit", "--database", url)
    assert result.exit_code == 2
    assert message in result.stderr


def test_database_urls_are_normalised() -> None:
    assert normalise_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(DatabaseError):
        normalise_url("not a url")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8470", ("127.0.0.1", 8470)), ("[::1]:9000", ("::1", 9000)), (":8470", ("0.0.0.0", 8470))],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8470", "host:", "host:99999", "a:b"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_listen(text)


def test_the_command_line_does_not_load_the_server_stack() -> None:
    code = "import sys, vakta.cli; print(sorted(m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'alembic') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
