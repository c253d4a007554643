"""``vakta server ...``: run the console, create the first admin, make tokens, verify the audit log.

Only typer is imported here; FastAPI, SQLAlchemy and uvicorn load inside the
commands, so ``vakta --help`` and scans stay fast and work without the
``server`` extra.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vakta.home import resolve_home

if TYPE_CHECKING:
    from vakta.server.db import Database
    from vakta.server.forwarding import Forwarding
    from vakta.server.settings import Settings

log = logging.getLogger(__name__)

server_app = typer.Typer(
    help="The console server agents report to (install with the 'server' extra).", no_args_is_help=True
)
token_app = typer.Typer(
    help="Bearer tokens for scripts and one-time agent enrolment tokens.", no_args_is_help=True
)
server_app.add_typer(token_app, name="token")
lists_app = typer.Typer(
    help="The hash lists the console serves to agents and matches against.", no_args_is_help=True
)
server_app.add_typer(lists_app, name="lists")
key_app = typer.Typer(help="The Ed25519 key that signs hash-list bundles.", no_args_is_help=True)
server_app.add_typer(key_app, name="key")
plan_app = typer.Typer(
    help="The company's action plan: the steps every incident is worked through.", no_args_is_help=True
)
server_app.add_typer(plan_app, name="action-plan")

DEFAULT_LISTEN = "127.0.0.1:8470"
CLI_ACTOR = "cli"

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="VAKTA_SERVER_DATABASE",
        help="sqlite:///FILE or postgresql://user:pass@host/db (default: SQLite under the Vakta home).",
        show_envvar=True,
    ),
]


ForwardOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--forward",
        envvar="VAKTA_SERVER_FORWARD",
        help="Forward alerts and incident changes to this URL (repeatable; as `vakta scan --alert`; "
        "the variable holds URLs separated by spaces).",
        show_envvar=True,
    ),
]
PublicUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--public-url",
        envvar="VAKTA_SERVER_PUBLIC_URL",
        help="The console's address as people reach it (https://...): forwarded alerts link to their incident.",
        show_envvar=True,
    ),
]


class TokenRole(StrEnum):
    agent_enrolment = "agent-enrolment"
    api_client = "api-client"
    analyst = "analyst"
    auditor = "auditor"
    admin = "admin"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _home(ctx: typer.Context) -> Path:
    home = getattr(ctx.find_root().obj, "home", None)
    return home if isinstance(home, Path) else resolve_home(None)


def database_url(ctx: typer.Context, url: str | None) -> str:
    if url:
        return url
    from vakta.server.db import default_url

    return default_url(_home(ctx))


@contextmanager
def _opened(ctx: typer.Context, url: str | None) -> Iterator[Database]:
    """The database, migrated; any database failure is a one-line error and exit 2."""
    try:
        from sqlalchemy.exc import SQLAlchemyError

        from vakta.server.db import Database, DatabaseError
    except ImportError as exc:
        raise _fail(f"the server needs its extra: pip install 'vakta[server]' ({exc.name} missing)") from None
    db = None
    try:
        db = Database(database_url(ctx, url))
        db.migrate()
        yield db
    except (SQLAlchemyError, DatabaseError) as exc:
        raise _fail(f"database: {exc}") from None
    finally:
        if db is not None:
            db.dispose()


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all interfaces)."""
    match = re.fullmatch(r"\[?(?P<host>[^\[\]]*?)\]?:(?P<port>\d{1,5})", text.strip())
    if not match or not 0 <= int(match["port"]) <= 65535:
        raise typer.BadParameter(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:8470, [::1]:8470, :8470)")
    return match["host"] or "0.0.0.0", int(match["port"])


@server_app.command("run")
def run_command(
    ctx: typer.Context,
    listen: Annotated[str, typer.Option("--listen", help="Address and port to serve on.")] = DEFAULT_LISTEN,
    database: DatabaseOpt = None,
    offline_after: Annotated[
        int,
        typer.Option(
            "--offline-after", min=10, help="Seconds without a heartbeat before an agent is offline."
        ),
    ] = 900,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="Serve HTTPS with this certificate.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="The certificate's private key.")] = None,
    forward: ForwardOpt = None,
    public_url: PublicUrlOpt = None,
    require_totp: Annotated[
        bool,
        typer.Option(
            "--require-totp", help="Every person needs a TOTP second factor (without one: only enrol it)."
        ),
    ] = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Server processes sharing the port (Linux and macOS; more cores, more alerts a second).",
        ),
    ] = 1,
) -> None:
    """Serve the console API (schema migrations are applied first)."""
    host, port = parse_listen(listen)
    forward_urls = _forward_urls(forward, public_url)
    if (tls_cert is None) != (tls_key is None):
        raise _fail("--tls-cert and --tls-key go together")
    with _opened(ctx, database) as db:
        from vakta.server.app import create_app
        from vakta.server.serve import serve
        from vakta.server.settings import Settings

        settings = Settings(
            database_url=database_url(ctx, database),
            offline_after=timedelta(seconds=offline_after),
            home=server_home(ctx),
            require_totp=require_totp,
            forward=forward_urls,
            public_url=public_url,
        )
        app = create_app(settings, db)
        _signing_key_ready(app.state, settings)
        log.info("console on %s:%d, database %s", host, port, db.url.render_as_string(hide_password=True))
        options = _uvicorn_options(tls_cert, tls_key)
        if workers == 1:
            serve(lambda: app, host, port, 1, **options)
            return
    if not hasattr(os, "fork"):
        raise _fail("--workers needs fork (Linux, macOS): run one process per port behind a proxy")
    # Each worker builds its own app and database pool after the fork; the one above is closed.
    serve(partial(create_app, settings), host, port, workers, **options)


def _uvicorn_options(tls_cert: Path | None, tls_key: Path | None) -> dict[str, Any]:
    return {
        "ssl_certfile": str(tls_cert) if tls_cert else None,
        "ssl_keyfile": str(tls_key) if tls_key else None,
        "proxy_headers": True,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }


@server_app.command("create-admin")
def create_admin_command(
    ctx: typer.Context,
    username: Annotated[str | None, typer.Option("--username", help="Asked for when not given.")] = None,
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Read the password from this file's first line ('-': stdin)."),
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Create an administrator (the first one, or another)."""
    name = username or typer.prompt("Username", default="admin")
    password = _read_password(password_file)
    with _opened(ctx, database) as db:
        from vakta.server.accounts import AccountError, create_user
        from vakta.server.models import Role

        try:
            with db.write() as session:
                create_user(session, name, password, Role.ADMIN, CLI_ACTOR)
        except AccountError as exc:
            raise _fail(str(exc), 1) from None
    typer.echo(f"administrator {name!r} created", err=True)


def _read_password(path: Path | None) -> str:
    if path is None:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    return lines[0] if lines else ""


@token_app.command("create")
def token_create_command(
    ctx: typer.Context,
    role: Annotated[
        TokenRole, typer.Option("--role", help="agent-enrolment: one agent may enrol with it, once.")
    ],
    name: Annotated[
        str, typer.Option("--name", help="What the token is for (shown in lists and the audit log).")
    ] = "",
    expires_hours: Annotated[
        float | None, typer.Option("--expires-hours", min=0.01, help="Stop working after this many hours.")
    ] = None,
    database: DatabaseOpt = None,
) -> None:
    """Print a new token (only its hash is kept: it cannot be shown again)."""
    with _opened(ctx, database) as db:
        from vakta.server.accounts import create_token
        from vakta.server.models import Role, utcnow

        expires = utcnow() + timedelta(hours=expires_hours) if expires_hours else None
        with db.write() as session:
            row, secret = create_token(session, Role(role.value), name[:128], CLI_ACTOR, expires)
    kind = "one-time enrolment token" if role == TokenRole.agent_enrolment else f"{role.value} bearer token"
    typer.echo(
        f"token {row.id}: {kind}" + (f", expires {expires:%Y-%m-%d %H:%M} UTC" if expires else ""), err=True
    )
    typer.echo(secret)


@token_app.command("list")
def token_list_command(ctx: typer.Context, database: DatabaseOpt = None) -> None:
    """Tokens (never their secrets): id, role, name, state."""
    with _opened(ctx, database) as db:
        from sqlalchemy import select

        from vakta.server.auth import token_usable
        from vakta.server.models import ApiToken

        with db.read() as session:
            for row in session.execute(select(ApiToken).order_by(ApiToken.id)).scalars():
                state = "used" if row.used_at else "active" if token_usable(row) else "revoked/expired"
                typer.echo(f"{row.id}\t{row.role}\t{state}\t{row.name}")


@token_app.command("revoke")
def token_revoke_command(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="The token's id.")],
    database: DatabaseOpt = None,
) -> None:
    """Stop a token from working."""
    with _opened(ctx, database) as db:
        from vakta.server.accounts import revoke_token

        with db.write() as session:
            row = revoke_token(session, token_id, CLI_ACTOR)
    if row is None:
        raise _fail(f"no token {token_id}", 1)
    typer.echo(f"token {token_id} revoked", err=True)


@server_app.command("verify-audit")
def verify_audit_command(ctx: typer.Context, database: DatabaseOpt = None) -> None:
    """Check the audit chain: exit 1 naming the first edited or deleted entry, else 0."""
    with _opened(ctx, database) as db:
        from vakta.server.audit import verify

        with db.read() as session:
            verdict = verify(session)
    if verdict.problem:
        typer.echo(f"audit log NOT intact: {verdict.problem}", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {verdict.entries} entries, head {verdict.head}")


def server_home(ctx: typer.Context) -> Path:
    """The console's own folder under the Vakta home: its lists, their index and the signing key."""
    return _home(ctx) / "server"


def _signing_key_ready(state: object, settings: Settings) -> None:
    """Make the bundle signing key at first start (not at the first download), and log its public half."""
    from vakta.bundles import BundleError
    from vakta.server.bundles import for_app

    try:
        log.info("bundles signed with Ed25519 key %s", for_app(state, settings).public_key())
    except (OSError, BundleError) as exc:
        raise _fail(f"signing key: {exc}") from None


@lists_app.command("import")
def lists_import_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The list file, or a folder of list files.")],
    name: Annotated[str, typer.Option("--name", help="Name of the list (new, or more entries for it).")],
    fmt: Annotated[str, typer.Option("--format", help="File format, as for `vakta lists import`.")] = "auto",
    kind: Annotated[
        str | None, typer.Option("--kind", help="Hash kind of bare values: md5, sha1, sha256, pdq.")
    ] = None,
    ignore: Annotated[bool, typer.Option("--ignore", help="A known-good list.")] = False,
) -> None:
    """Import a list into the console's store: `vakta lists import` on the server's folder."""
    from vakta.cli import KindChoice, ListFormatChoice, State, lists_import

    try:
        fmt_choice, kind_choice = ListFormatChoice(fmt), KindChoice(kind) if kind else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ctx.obj = State(server_home(ctx))
    lists_import(ctx, path, name, fmt_choice, kind_choice, ignore)


@lists_app.command("show")
def lists_show_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """The console's lists: `vakta lists show` on the server's folder."""
    from vakta.cli import State, lists_show

    ctx.obj = State(server_home(ctx))
    lists_show(ctx, as_json)


@key_app.command("show")
def key_show_command(ctx: typer.Context) -> None:
    """Print the public key agents pin (base64 of its 32 bytes); made now if the server never started."""
    from vakta.bundles import BundleError, fingerprint, load_or_create_key, public_key_text

    try:
        public = load_or_create_key(server_home(ctx)).public_key()
    except (OSError, BundleError) as exc:
        raise _fail(f"signing key: {exc}") from None
    typer.echo(f"Ed25519 bundle signing key, SHA-256 fingerprint {fingerprint(public)}", err=True)
    typer.echo(public_key_text(public))


# --------------------------------------------------------------------------- action plan


@plan_app.command("show")
def plan_show_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (what `set` reads) instead of text.")] = False,
    retired: Annotated[
        bool, typer.Option("--retired", help="Also list retired steps (text, marked).")
    ] = False,
    database: DatabaseOpt = None,
) -> None:
    """Print the active plan in the form `action-plan set` reads back (the default plan on a new console)."""
    with _opened(ctx, database) as db:
        import json

        from vakta.server import actionplan

        actionplan.ensure_default(db)
        with db.read() as session:
            active = actionplan.steps(session)
            old = [s for s in actionplan.steps(session, retired=True) if s.retired_at is not None]
    if as_json:
        steps = [{"title": s.title, "description": s.description, "required": s.required} for s in active]
        typer.echo(json.dumps(steps, indent=2, ensure_ascii=False))
        return
    typer.echo(actionplan.format_plan(active), nl=False)
    if retired:
        for step in old:
            typer.echo(f"# retired {step.retired_at:%Y-%m-%d}: {step.title}")


@plan_app.command("set")
def plan_set_command(
    ctx: typer.Context,
    path: Annotated[
        Path, typer.Argument(help="Plan file: JSON list of steps, or text, one step per line ('-': stdin).")
    ],
    database: DatabaseOpt = None,
) -> None:
    """Make the active plan exactly the file's steps, in order (same title: kept; missing: retired; new: added)."""
    try:
        data = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", 1) from None
    with _opened(ctx, database) as db:
        from vakta.server import actionplan

        try:
            specs = actionplan.parse_plan(data)
            with db.write() as session:
                counts = actionplan.replace_plan(session, specs, CLI_ACTOR)
        except actionplan.PlanError as exc:
            raise _fail(f"{path}: {exc}", 1) from None
    typer.echo(
        f"action plan set: {len(specs)} steps ({counts['kept']} kept, {counts['added']} added, "
        f"{counts['retired']} retired)",
        err=True,
    )


# --------------------------------------------------------------------------- people (login helper)

user_app = typer.Typer(help="People's accounts: second factor and lockout.", no_args_is_help=True)
server_app.add_typer(user_app, name="user")


def _account_change(ctx: typer.Context, database: str | None, username: str, action: str) -> None:
    """Run one of ``accounts``' changes on a user by name (exit 1 for an unknown user)."""
    with _opened(ctx, database) as db:
        from vakta.server import accounts

        change = {"totp-reset": accounts.reset_totp, "unlock": accounts.unlock_user}[action]
        with db.write() as session:
            user_id = accounts.user_id_of(session, username)
            if user_id is None:
                raise _fail(f"no user {username!r}", 1)
            change(session, user_id, CLI_ACTOR)


@user_app.command("totp-reset")
def user_totp_reset_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The user's name.")],
    database: DatabaseOpt = None,
) -> None:
    """Remove a user's TOTP second factor (a lost phone): they log in with the password and enrol again."""
    _account_change(ctx, database, username, "totp-reset")
    typer.echo(f"second factor of {username!r} removed", err=True)


@user_app.command("unlock")
def user_unlock_command(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The user's name.")],
    database: DatabaseOpt = None,
) -> None:
    """End a lockout after failed logins now, instead of when it expires."""
    _account_change(ctx, database, username, "unlock")
    typer.echo(f"{username!r} unlocked", err=True)


# --------------------------------------------------------------------------- SIEM forwarding


def _forward_urls(urls: list[str] | None, public_url: str | None) -> tuple[str, ...]:
    """The forwarding URLs, each checked by its notifier before anything starts (exit 2 if one is bad)."""
    from vakta.server.forwarding import destinations

    if public_url is not None and not re.match(r"^https?://[^/\s]+", public_url):
        raise _fail(f"--public-url {public_url!r} is not an http(s) address")
    try:
        destinations(urls or [])
    except ValueError as exc:
        raise _fail(f"--forward: {exc}") from None
    return tuple(urls or [])


@server_app.command("forward")
def forward_command(
    ctx: typer.Context,
    forward: ForwardOpt = None,
    public_url: PublicUrlOpt = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Forward what is recorded now, then exit (1 if a destination failed)."),
    ] = False,
    database: DatabaseOpt = None,
) -> None:
    """Forward alerts and incident changes to SIEMs, webhooks or e-mail as a process of its own."""
    urls = _forward_urls(forward, public_url)
    if not urls:
        raise _fail("name a destination with --forward URL (or VAKTA_SERVER_FORWARD)")
    with _opened(ctx, database) as db:
        from vakta.server.forwarding import Forwarding, destinations

        forwarding = Forwarding(db, destinations(urls), public_url=public_url)
        if once:
            _forward_once(forwarding)
        else:
            _forward_until_stopped(forwarding)


def _forward_once(forwarding: Forwarding) -> None:
    """Each destination caught up (or failed) once; exit 1 if any failed."""
    failed = False
    for forwarder in forwarding.forwarders:
        step = forwarder.drain()
        forwarder.close()
        name = forwarder.destination.name
        if step.error is not None:
            failed = True
            typer.echo(f"{name}: {step.sent} sent, then failed: {step.error}", err=True)
        elif step.busy:
            typer.echo(f"{name}: another process forwards to it; skipped", err=True)
        else:
            typer.echo(f"{name}: {step.sent} sent, up to date", err=True)
    if failed:
        raise typer.Exit(1)


def _forward_until_stopped(forwarding: Forwarding) -> None:
    """Run until SIGTERM or Ctrl-C, then let the batches in flight finish."""
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    forwarding.start()
    while not stop.wait(1.0):  # a timeout keeps the main thread responsive to signals
        pass
    forwarding.stop()
