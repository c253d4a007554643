"""``vakta agent``: enrol with a console, then run in the foreground under a service manager.

Only typer is imported here; the watcher, the scanner and the lists load
inside the commands, so ``vakta --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import platform
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vakta.home import resolve_home

if TYPE_CHECKING:
    from vakta.agent.core import Agent, Settings

log = logging.getLogger(__name__)

agent_app = typer.Typer(
    help="The endpoint agent: scans files as they arrive and reports matches to a console.",
    no_args_is_help=True,
)


def _home(ctx: typer.Context) -> Path:
    parent = ctx.find_root().obj
    home = getattr(parent, "home", None)
    return home if isinstance(home, Path) else resolve_home(None)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


CpuPercent = Annotated[
    float,
    typer.Option("--scan-cpu-percent", min=1, max=100, help="Average share of one core a full scan may use."),
]
ScanNice = Annotated[
    int,
    typer.Option("--scan-nice", min=0, max=19, help="Niceness of the full scan's process (0: as the agent)."),
]


@agent_app.command("enroll")
def enroll(
    ctx: typer.Context,
    server: Annotated[str, typer.Option("--server", help="The console's URL, e.g. https://console:8470.")],
    token: Annotated[str, typer.Option("--token", help="A one-time agent-enrolment token (vke_...).")],
    hostname: Annotated[
        str | None, typer.Option("--hostname", help="Name shown in the console (default: this host's).")
    ] = None,
    bundle_key: Annotated[
        str, typer.Option("--bundle-key", help="The console's list-signing key (`vakta server key show`).")
    ] = "",
) -> None:
    """Trade an enrolment token for this agent's own identity, stored mode 0600 in <home>/agent/."""
    from vakta import __version__
    from vakta.notify import local_host
    from vakta.reporting import client, identity

    if not server.startswith(("https://", "http://")):
        raise _fail("--server must be an http:// or https:// URL")
    name = hostname or local_host()
    body = {"hostname": name, "os": f"{platform.system()} {platform.release()}"[:128], "version": __version__}
    from vakta.bundles import BundleError, parse_public_key

    try:
        if bundle_key:
            parse_public_key(bundle_key)
    except BundleError as exc:
        raise _fail(f"--bundle-key: {exc}") from None
    try:
        answer = client.request(server, "/agents/enrol", body, token)
        agent_id, secret = str(answer["agent_id"]), str(answer["secret"])
        ident = identity.Identity(server.rstrip("/"), agent_id, secret, name, bundle_key.strip())
    except client.ConsoleError as exc:
        raise _fail(f"enrolment failed: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise _fail(f"enrolment failed: the console's answer lacks {exc}") from None
    path = identity.save(_home(ctx), ident)
    typer.echo(f"enrolled as agent {ident.agent_id}; identity in {path}", err=True)


@agent_app.command("run")
def run(
    ctx: typer.Context,
    watch: Annotated[
        list[Path] | None, typer.Option("--watch", help="Also watch this folder (repeatable).")
    ] = None,
    only_watch: Annotated[
        bool, typer.Option("--only-watch", help="Watch only the --watch folders, not the defaults.")
    ] = False,
    quiet: Annotated[
        float,
        typer.Option("--quiet-seconds", min=0, help="Scan a file once it has not changed for this long."),
    ] = 2.0,
    heartbeat: Annotated[float, typer.Option("--heartbeat-seconds", min=1, help="Heartbeat period.")] = 60.0,
    mount_poll: Annotated[
        float, typer.Option("--mount-poll-seconds", min=0.1, help="How often to look for new mounts.")
    ] = 5.0,
    lists_every: Annotated[
        float, typer.Option("--lists-seconds", min=1, help="How often to ask the console for new lists.")
    ] = 900.0,
    max_backoff: Annotated[
        float, typer.Option("--max-retry-seconds", min=0.1, help="Longest pause between delivery attempts.")
    ] = 300.0,
    nice: Annotated[
        int, typer.Option("--nice", min=0, max=19, help="Lower the agent's CPU priority by this.")
    ] = 10,
    full_scan_hours: Annotated[
        float,
        typer.Option(
            "--full-scan-interval", min=0, help="Hours between full scans of the watched folders (0: none)."
        ),
    ] = 24.0,
    cpu_percent: CpuPercent = 25.0,
    scan_nice: ScanNice = 19,
    scan_now: Annotated[
        bool, typer.Option("--scan-now", help="Run one full scan, deliver its alerts and exit.")
    ] = False,
) -> None:
    """Watch folders and deliver alerts, in the foreground, until SIGTERM or SIGINT."""
    from vakta.agent.core import Settings

    paths = _watched(watch, only_watch)
    settings = Settings(
        paths, quiet, heartbeat, mount_poll, lists_every, min(1.0, max_backoff), max_backoff, nice
    )
    settings.full_scan_every = full_scan_hours * 3600.0
    settings.scan_cpu_percent, settings.scan_nice = cpu_percent, scan_nice
    if scan_now:
        raise typer.Exit(_scan_once(_home(ctx), settings))
    agent = _agent(_home(ctx), settings)
    agent.run()


@agent_app.command("scan")
def scan(
    ctx: typer.Context,
    watch: Annotated[
        list[Path] | None, typer.Option("--watch", help="Also scan this folder (repeatable).")
    ] = None,
    only_watch: Annotated[
        bool, typer.Option("--only-watch", help="Scan only the --watch folders, not the defaults.")
    ] = False,
    cpu_percent: CpuPercent = 25.0,
    scan_nice: ScanNice = 19,
) -> None:
    """Run one full scan of the watched folders now, deliver its alerts, report it, and exit (for cron).

    Exit 0 when the scan completed (matches go to the console), 2 when it failed or was stopped.
    """
    from vakta.agent.core import Settings

    settings = Settings(
        _watched(watch, only_watch), nice=0, scan_cpu_percent=cpu_percent, scan_nice=scan_nice
    )
    raise typer.Exit(_scan_once(_home(ctx), settings))


def _watched(watch: list[Path] | None, only_watch: bool) -> list[Path]:
    from vakta.agent.watch import default_paths

    if only_watch and not watch:
        raise _fail("--only-watch needs at least one --watch folder")
    paths = [p.absolute() for p in watch or []]
    return paths if only_watch else default_paths() + paths


def _agent(home: Path, settings: Settings) -> Agent:
    """The enrolled agent, stopped cleanly by SIGTERM and SIGINT."""
    from vakta.agent.core import Agent
    from vakta.reporting import identity

    try:
        ident = identity.load(home)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    agent = Agent(home, ident, settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop())
    return agent


def _scan_once(home: Path, settings: Settings) -> int:
    """One full scan, then its alerts delivered (what the console does not take stays queued) and a
    heartbeat with the result; the exit status."""
    from vakta.agent.schedule import Schedule

    agent = _agent(home, settings)
    try:
        outcome = Schedule(agent).run_once()
        agent.flush()
    finally:
        agent.close()
    typer.echo(f"full scan {outcome}: {json.dumps(agent.health.scan_progress)}", err=True)
    return 0 if outcome == "completed" else 2
