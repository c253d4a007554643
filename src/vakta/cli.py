"""The ``vakta`` command line: a thin shell over the pipeline, the list store and the sinks."""

from __future__ import annotations

import itertools
import json
import logging
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, BinaryIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vakta import __version__, testsignature
from vakta.agent.cli import agent_app
from vakta.cache import SignalCache
from vakta.cluster import ClusterError, ClusterRunner, connect
from vakta.containers import Limits
from vakta.findings import Finding
from vakta.home import resolve_home
from vakta.lists.formats import detect, known_good, list_formats
from vakta.lists.model import ListRecord, ParseIssue
from vakta.lists.store import DETECT, IGNORE, VIDEO_KIND, EmptyImportError, ListStore, StoreError
from vakta.matching import diskindex
from vakta.matching.diskindex import DiskIndex, IndexFormatError
from vakta.matching.index import ListIndex
from vakta.matching.loading import INDEX_ERRORS, INDEX_FOLDER, current_index, load_index
from vakta.matching.lookup import lookup_results
from vakta.matching.matcher import Matcher
from vakta.matching.search import DEFAULT_THRESHOLD
from vakta.matching.videos import DEFAULT_SHARE, VideoRule
from vakta.notify import send_test_alert
from vakta.notify.dispatch import Dispatcher
from vakta.pipeline import Scanner, default_workers, hash_tree
from vakta.progress import ScanProgress
from vakta.server.cli import server_app
from vakta.signals.kinds import HEX_LENGTHS
from vakta.signals.model import HashOptions, Signals
from vakta.sinks import sinks
from vakta.sources import source_for

if TYPE_CHECKING:
    from vakta.icap.console import ConsoleReporter

log = logging.getLogger("vakta")
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    help="Find known abusive material by hash-list matching, without anyone looking at it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
lists_app = typer.Typer(help="Import, list, export and remove hash lists.", no_args_is_help=True)
app.add_typer(lists_app, name="lists")
index_app = typer.Typer(
    help="The on-disk index the lists are searched through (kept up to date by itself).",
    no_args_is_help=True,
)
app.add_typer(index_app, name="index")
app.add_typer(server_app, name="server")
app.add_typer(agent_app, name="agent")

#: Shown (at most) per import; the rest are counted.
MAX_ISSUES_SHOWN = 20
#: The on-disk index of the list store, under the Vakta home.
#: How many leading bytes a list file is judged by for ``--format auto``.
SNIFF_BYTES = 65536


@dataclass
class State:
    home: Path


class ListFormatChoice(StrEnum):
    auto = "auto"
    text = "text"
    csv = "csv"
    threatexchange = "threatexchange"
    vics = "vics"
    vpdq = "vpdq"
    ncmec = "ncmec"
    clamav = "clamav"
    hashdeep = "hashdeep"
    checksums = "checksums"
    nsrl = "nsrl"


class KindChoice(StrEnum):
    md5 = "md5"
    sha1 = "sha1"
    sha256 = "sha256"
    pdq = "pdq"
    url = "url"  # URL lists (REQMOD of `vakta icap`): one URL, or a digest of one, a line
    url_md5 = "url-md5"
    url_sha256 = "url-sha256"


class ReportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    vics = "vics"
    html = "html"
    summary = "summary"


class ExportFormat(StrEnum):
    csv = "csv"
    vics = "vics"
    text = "text"
    threatexchange = "threatexchange"
    vpdq = "vpdq"
    ncmec = "ncmec"
    clamav = "clamav"
    hashdeep = "hashdeep"
    checksums = "checksums"
    rpz = "rpz"  # the hosts of a URL list as a DNS response policy zone


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vakta {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home", help="State folder (lists, cache). Default: $VAKTA_HOME or the user data folder."
        ),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = State(resolve_home(home))


def _state(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    return state if state is not None else State(resolve_home(None))


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None or str(path) == "-":
        yield sys.stdout
        return
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            yield out
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror or exc}") from None


def _dump(obj: object, out: IO[str]) -> None:
    out.write(json.dumps(obj, ensure_ascii=False) + "\n")


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """A byte count as people write it: ``1000``, ``512M``, ``8G``, ``1.5T`` (binary units)."""
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        number = float(value[: len(value) - len(unit)])
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a size (examples: 1000, 512M, 8G)") from None
    if number < 0:
        raise typer.BadParameter("a size cannot be negative")
    return int(number * _UNITS[unit])


#: Options every command that matches against the lists shares (scan, lookup, icap).
ListsOpt = Annotated[
    list[str] | None, typer.Option("--list", help="Use only this list (repeatable). Default: all.")
]
ThresholdOpt = Annotated[int, typer.Option("--threshold", min=0, max=256, help="PDQ match distance (bits).")]
NoTestListOpt = Annotated[
    bool, typer.Option("--no-test-list", help="Do not match the built-in test signature.")
]

_DEFAULT_LIMITS = Limits()
ContainersOpt = Annotated[
    bool,
    typer.Option(help="Open archives, documents, mailboxes and disk images and scan what is inside."),
]
MaxDepthOpt = Annotated[
    int, typer.Option("--max-depth", min=0, help="Containers nested deeper than this are not opened.")
]
MaxMemberOpt = Annotated[
    str, typer.Option("--max-member-size", help="A member larger than this is an error (e.g. 8G).")
]
MaxContainerOpt = Annotated[
    str,
    typer.Option("--max-container-size", help="Stop reading a container's members after this many bytes."),
]
MaxMembersOpt = Annotated[
    int, typer.Option("--max-members", min=1, help="Stop after this many members of one file.")
]
MaxSecondsOpt = Annotated[
    float, typer.Option("--max-item-seconds", min=1, help="Stop opening a file's members after this long.")
]


def _limits(
    containers: bool, depth: int, member_size: str, container_size: str, members: int, seconds: float
) -> Limits | None:
    if not containers:
        return None
    return Limits(depth, parse_size(member_size), parse_size(container_size), members, seconds)


# --------------------------------------------------------------------------- hash


class HashFormat(StrEnum):
    json = "json"
    vpdq = "vpdq"


SECONDS_PER_HASH_HELP = "Video: hash one frame per this many seconds (0: every frame), as vPDQ does."
MAX_VIDEO_SECONDS_HELP = "Video: sample at most this many seconds from the start (0: no limit)."
KEYFRAMES_HELP = "Video triage: decode and hash key frames only (much faster; fewer frames than vPDQ)."
PRUNE_HELP = "Video: drop a sampled frame within this many bits of the last kept one (-1: keep all)."


@app.command("hash")
def hash_command(
    paths: Annotated[list[str], typer.Argument(help="Files (or folders, walked recursively) to hash.")],
    fmt: Annotated[
        HashFormat,
        typer.Option("--format", help="json: one object per file; vpdq: videos' frame hashes as vPDQ lines."),
    ] = HashFormat.json,
    seconds_per_hash: Annotated[float, typer.Option(min=0, help=SECONDS_PER_HASH_HELP)] = 1.0,
    max_video_seconds: Annotated[float, typer.Option(min=0, help=MAX_VIDEO_SECONDS_HELP)] = 7200.0,
    frame_size: Annotated[
        int,
        typer.Option(min=0, help="Video: scale frames to NxN before hashing (0: native; reference: 128)."),
    ] = 0,
    keyframes_only: Annotated[bool, typer.Option("--keyframes-only", help=KEYFRAMES_HELP)] = False,
    prune_distance: Annotated[int, typer.Option(min=-1, max=256, help=PRUNE_HELP)] = -1,
    follow_symlinks: Annotated[bool, typer.Option(help="Follow symbolic links.")] = False,
    containers: ContainersOpt = True,
    max_depth: MaxDepthOpt = _DEFAULT_LIMITS.max_depth,
    max_member_size: MaxMemberOpt = "8G",
    max_container_size: MaxContainerOpt = "256G",
    max_members: MaxMembersOpt = _DEFAULT_LIMITS.max_members,
    max_item_seconds: MaxSecondsOpt = _DEFAULT_LIMITS.max_seconds,
) -> None:
    """Print the digests and PDQ hash of files and of what is inside containers, or videos' vPDQ."""
    limits = _limits(
        containers, max_depth, max_member_size, max_container_size, max_members, max_item_seconds
    )
    options = HashOptions(
        extra_queries=False,
        seconds_per_hash=seconds_per_hash,
        max_video_seconds=max_video_seconds,
        video_frame_size=frame_size,
        keyframes_only=keyframes_only,
        video_prune_distance=prune_distance,
    )
    failed = False
    for target in paths:
        for item in source_for(target).items(target, follow_symlinks):
            for signals in hash_tree(item, options, limits=limits):
                failed |= _print_hashes(signals, fmt)
    raise typer.Exit(2 if failed else 0)


def _print_hashes(signals: Signals, fmt: HashFormat) -> bool:
    """Print one item's hashes as asked; True if it failed."""
    if signals.skipped:
        err.print(f"skipped {signals.location}: {signals.skipped}", markup=False)
        return False
    if fmt is HashFormat.json:
        _dump(signals.hash_fields(), sys.stdout)
    elif signals.video_frames:
        # The reference's own line format, one block per video under a comment line.
        sys.stdout.write(f"# {signals.location}\n")
        sys.stdout.writelines(f.vpdq_line() + "\n" for f in signals.video_frames)
    else:
        err.print(
            f"{signals.location}: no video frames ({'; '.join(signals.errors) or signals.type})",
            markup=False,
        )
    return bool(signals.errors)


# --------------------------------------------------------------------------- lists


def _read_list(
    file: Path, fmt_name: str, kind: str | None
) -> tuple[str, BinaryIO, Iterator[ListRecord | ParseIssue]]:
    """Open and parse one list file; OSError when it cannot be read."""
    stream = file.open("rb")
    if kind is not None and kind.startswith("url"):
        from vakta.icap.urls import parse_list

        return "url", stream, _closing(stream, parse_list(stream, kind))
    head = stream.read(SNIFF_BYTES)
    stream.seek(0)
    fmt = detect(head, file.name) if fmt_name == "auto" else list_formats.get(fmt_name)

    def parsed() -> Iterator[ListRecord | ParseIssue]:
        with stream:
            for record in fmt.parse(stream, kind):
                if isinstance(record, ListRecord) and record.frames and record.entry_id is None:
                    # A reference vPDQ file is one video, named only by its file.
                    record = replace(record, entry_id=file.stem)
                yield record

    return fmt.name, stream, parsed()


def _closing(stream: BinaryIO, items: Iterator[ListRecord | ParseIssue]) -> Iterator[ListRecord | ParseIssue]:
    with stream:
        yield from items


def _is_known_good(file: Path, fmt_name: str) -> bool:
    """Whether a list file is of a known-good format (NSRL); an unreadable file is left to the import to report."""
    if fmt_name != "auto":
        return known_good(list_formats.get(fmt_name))
    try:
        with file.open("rb") as stream:
            return known_good(detect(stream.read(SNIFF_BYTES), file.name))
    except OSError:
        return False


def _purpose(files: list[Path], fmt_name: str, ignore: bool) -> str:
    """Known-good with ``--ignore``, and for known-good formats even without it.

    NSRL lists only known software: imported as a detection list, it would
    report every operating-system file, so it never is.  Mixing it with
    detection lists in one import is refused rather than guessed at.
    """
    if ignore:
        return IGNORE
    good = [f for f in files if _is_known_good(f, fmt_name)]
    if not good:
        return DETECT
    if len(good) < len(files):
        raise _fail("known-good (NSRL) files and detection lists cannot be one list; import them apart")
    err.print(
        "note: a known-good format (NSRL): imported as a known-good list, as with --ignore", markup=False
    )
    return IGNORE


def _list_files(path: Path) -> list[Path]:
    """The list file, or every file in a folder of them (one vPDQ file per video, say), sorted."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise _fail(f"{path}: no list files in this folder")
    return files


@lists_app.command("import")
def lists_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The list file, or a folder of list files (e.g. vPDQ files).")],
    name: Annotated[str, typer.Option("--name", help="Name of the list in the store (new or existing).")],
    fmt: Annotated[ListFormatChoice, typer.Option("--format", help="File format.")] = ListFormatChoice.auto,
    kind: Annotated[
        KindChoice | None, typer.Option("--kind", help="Hash kind of bare values (plain text lists).")
    ] = None,
    ignore: Annotated[
        bool,
        typer.Option(
            "--ignore", help="A known-good list: matching files are skipped, not reported (NSRL always is)."
        ),
    ] = False,
) -> None:
    """Import a hash list into the local store (duplicates merged, bad lines reported)."""
    if name == testsignature.LIST_NAME:
        raise _fail(f"{name!r} is the built-in test list")
    if not path.exists():
        raise _fail(f"{path}: no such file or folder")
    files = _list_files(path)
    purpose = _purpose(files, fmt.value, ignore)
    issues: list[tuple[Path, ParseIssue]] = []
    formats: list[str] = []
    bar = Progress(
        TextColumn(f"importing {escape(path.name)}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not err.is_terminal,
    )  # fmt: skip
    task = bar.add_task("import", total=sum(f.stat().st_size for f in files))

    def records() -> Iterator[ListRecord]:
        done = 0
        for file in files:
            try:
                fmt_name, stream, parsed = _read_list(file, fmt.value, kind.value if kind else None)
            except OSError as exc:  # one unreadable file in a folder costs that file only
                issues.append((file, ParseIssue(0, f"cannot read: {exc.strerror or exc}")))
                continue
            if fmt_name not in formats:
                formats.append(fmt_name)
            for n, record in enumerate(parsed):
                if isinstance(record, ParseIssue):
                    issues.append((file, record))
                else:
                    yield record
                if n % 20_000 == 0 and not stream.closed:
                    bar.update(task, completed=done + stream.tell())
            done += file.stat().st_size

    with _open_store(ctx) as store, bar:
        try:
            report = store.import_records(name, records(), str(path), fmt.value, purpose)
        except EmptyImportError as exc:
            _print_issues(issues)
            raise _fail(f"{path} ({'+'.join(formats)}): {exc}", 1) from None
        except StoreError as exc:
            raise _fail(str(exc)) from None
        report.invalid = len(issues)
        report.format = "+".join(formats)
        store.finish_import(report)
        _refresh_index(_state(ctx).home, store)
    _print_issues(issues)
    videos = f" ({report.videos} videos)" if report.videos else ""
    removed = f", {report.removed} removed" if report.removed else ""
    err.print(
        f"{name}: {report.records} records{videos} read as {'+'.join(formats)} from {len(files)} "
        f"file{'s' if len(files) != 1 else ''}, {report.added} {'entries' if report.videos else 'hashes'} added, "
        f"{report.duplicates} duplicates merged{removed}, {report.invalid} invalid",
        markup=False,
    )


def _print_issues(issues: list[tuple[Path, ParseIssue]]) -> None:
    for file, issue in issues[:MAX_ISSUES_SHOWN]:
        err.print(f"{file}:{issue.line}: {issue.message}", markup=False)
    if len(issues) > MAX_ISSUES_SHOWN:
        err.print(f"... and {len(issues) - MAX_ISSUES_SHOWN} more invalid lines")


def _open_store(ctx: typer.Context) -> ListStore:
    try:
        return ListStore(_state(ctx).home)
    except StoreError as exc:
        raise _fail(str(exc)) from None


@lists_app.command("show")
def lists_show(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Show the lists in the store, with their sizes and provenance."""
    with _open_store(ctx) as store:
        infos = store.lists()
    builtin_counts: dict[str, int] = {}
    for rec in testsignature.records():
        for k in (*rec.hashes, *((VIDEO_KIND,) if rec.frames else ())):
            builtin_counts[k] = builtin_counts.get(k, 0) + 1
    rows = [
        {
            "name": testsignature.LIST_NAME,
            "purpose": DETECT,
            "builtin": True,
            "counts": builtin_counts,
            "imports": 0,
            "last_import": None,
        }
    ]
    rows += [
        {
            "name": i.name,
            "purpose": i.purpose,
            "builtin": False,
            "counts": i.counts,
            "imports": i.imports,
            "last_import": i.last_import,
        }
        for i in infos
    ]
    if as_json:
        for row in rows:
            _dump(row, sys.stdout)
        return
    table = Table("list", "purpose", *HEX_LENGTHS, "videos", "urls", "imports", "last import")
    for row in rows:
        counts = row["counts"]
        assert isinstance(counts, dict)
        table.add_row(
            str(row["name"]) + (" (built-in)" if row["builtin"] else ""),
            str(row["purpose"]),
            *(f"{counts.get(k, 0):,}" for k in (*HEX_LENGTHS, VIDEO_KIND)),
            f"{sum(n for k, n in counts.items() if k.startswith('url')):,}",  # URL lists (`vakta icap`)
            str(row["imports"]),
            str(row["last_import"] or "-"),
        )
    out = Console()
    if not out.is_terminal:
        out = Console(width=200)  # piped: never truncate names and counts
    out.print(table)


@lists_app.command("remove")
def lists_remove(ctx: typer.Context, name: Annotated[str, typer.Argument(help="List to remove.")]) -> None:
    """Remove a list and all its hashes from the store."""
    with _open_store(ctx) as store:
        try:
            store.remove(name)
            _refresh_index(_state(ctx).home, store)
        except StoreError as exc:
            raise _fail(str(exc)) from None
    err.print(f"removed list {name}", markup=False)


@lists_app.command("export")
def lists_export(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="List to export.")],
    fmt: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = ExportFormat.csv,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
) -> None:
    """Write a list out in an exchange format."""
    if fmt is ExportFormat.rpz:
        from vakta.icap.rpz import write_zone

        with _open_store(ctx) as store, _output(output) as out:
            if not write_zone(store.entries([name]) if name in store.names() else iter(()), out, name):
                raise _fail(
                    f"{name!r} is no list of plain URLs (`lists import --kind url`) with host entries"
                )
        return
    writer = list_formats.get(fmt.value)
    if name == testsignature.LIST_NAME:
        recs: Iterator[ListRecord] = iter(testsignature.records())
        with _output(output) as out:
            writer.export(recs, out, name)
        return
    with _open_store(ctx) as store:
        if name not in store.names():
            raise _fail(f"no list named {name!r}")
        with _output(output) as out:
            writer.export(store.records(name), out, name)


# --------------------------------------------------------------------------- scan


def _select_lists(store: ListStore, names: list[str] | None) -> tuple[list[str], list[str]]:
    """The detection and known-good lists a scan uses: all, or those named."""
    detect_lists = store.names(DETECT)
    ignore_lists = store.names(IGNORE)
    if not names:
        return detect_lists, ignore_lists
    chosen = [n for n in names if n != testsignature.LIST_NAME]
    unknown = [n for n in chosen if n not in detect_lists and n not in ignore_lists]
    if unknown:
        raise _fail(f"no list named {', '.join(map(repr, unknown))} (see `vakta lists show`)")
    named_ignore = [n for n in chosen if n in ignore_lists]
    return [n for n in chosen if n in detect_lists], named_ignore or ignore_lists


def _refresh_index(home: Path, store: ListStore) -> None:
    """Bring the on-disk index up to a changed store now, so the next scan starts at once."""
    try:
        current_index(home, store)
    except INDEX_ERRORS as exc:
        err.print(f"[yellow]warning:[/yellow] the on-disk index was not updated: {escape(str(exc))}")


@app.command("scan")
def scan_command(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(help="Files and folders to scan (recursively).")],
    lists: ListsOpt = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="Report format.")] = ReportFormat.jsonl,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Report file (default: stdout).")
    ] = None,
    report_all: Annotated[
        bool, typer.Option("--all", help="Report every file, not only matches and errors.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Hashing processes (default: one per core).")
    ] = None,
    threshold: ThresholdOpt = DEFAULT_THRESHOLD,
    no_test_list: NoTestListOpt = False,
    cache: Annotated[
        bool, typer.Option("--cache", help="Reuse signals of unchanged files (kept in the Vakta home).")
    ] = False,
    follow_symlinks: Annotated[
        bool, typer.Option(help="Follow symbolic links (loops are detected).")
    ] = False,
    extra_queries: Annotated[
        bool,
        typer.Option(
            help="Also look up query variants: upscaled, tone-corrected, banner-removed and "
            "border-trimmed (resized copies, edits, watermarks, screenshots, padding)."
        ),
    ] = True,
    seconds_per_hash: Annotated[float, typer.Option(min=0, help=SECONDS_PER_HASH_HELP)] = 1.0,
    max_video_seconds: Annotated[float, typer.Option(min=0, help=MAX_VIDEO_SECONDS_HELP)] = 7200.0,
    keyframes_only: Annotated[bool, typer.Option("--keyframes-only", help=KEYFRAMES_HELP)] = False,
    prune_distance: Annotated[int, typer.Option(min=-1, max=256, help=PRUNE_HELP)] = -1,
    video_known_share: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=100,
            help="A known video matches when the scanned file reaches this % of its frames...",
        ),
    ] = DEFAULT_SHARE,
    video_query_share: Annotated[
        float,
        typer.Option(
            min=0.1,
            max=100,
            help="...or when this % of the file's frames reach it (a clip of a known video).",
        ),
    ] = DEFAULT_SHARE,
    video_both: Annotated[
        bool, typer.Option("--video-both", help="Require both shares (the reference's strict reading).")
    ] = False,
    progress: Annotated[
        bool | None, typer.Option(help="Progress bar (default: when stderr is a terminal).")
    ] = None,
    containers: ContainersOpt = True,
    max_depth: MaxDepthOpt = _DEFAULT_LIMITS.max_depth,
    max_member_size: MaxMemberOpt = "8G",
    max_container_size: MaxContainerOpt = "256G",
    max_members: MaxMembersOpt = _DEFAULT_LIMITS.max_members,
    max_item_seconds: MaxSecondsOpt = _DEFAULT_LIMITS.max_seconds,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="ADDRESS",
            help="Hash on a Dask cluster: the scheduler's address (tcp://host:8786), or 'local' "
            "to start one here. Workers must reach the files and the index (docs/cluster.md).",
        ),
    ] = None,
    alert: Annotated[
        list[str] | None,
        typer.Option(
            "--alert",
            metavar="URL",
            help="Send each match as it is found (repeatable): syslog+udp|tcp|tls://host, "
            "https://host/path?secret-env=VAR, smtp(s)://host?to=ADDR (docs/alerts.md).",
        ),
    ] = None,
) -> None:
    """Scan files, and what is inside archives and disk images, for matches with the hash lists.

    Exit 1 on a match, 2 on read errors, else 0.
    """
    limits = _limits(
        containers, max_depth, max_member_size, max_container_size, max_members, max_item_seconds
    )
    try:
        alerts = Dispatcher(alert or [], lambda line: err.print(line, markup=False))
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if alert:  # reports keep the settings: alert URLs as shown, never a webhook's token path
        ctx.params["alert"] = [c.notifier.display for c in alerts.channels]
    home = _state(ctx).home
    store = _open_store(ctx)
    detect_lists, ignore_lists = _select_lists(store, lists)
    index, known_good = load_index(home, store, detect_lists, ignore_lists, not no_test_list)
    options = HashOptions(
        extra_queries=extra_queries,
        seconds_per_hash=seconds_per_hash,
        max_video_seconds=max_video_seconds,
        keyframes_only=keyframes_only,
        video_prune_distance=prune_distance,
    )
    try:
        signal_cache = SignalCache(home / "scan-cache.sqlite", options.fingerprint()) if cache else None
    except (OSError, sqlite3.Error) as exc:
        raise _fail(f"cannot open the scan cache in {home}: {exc}") from None
    runner = _cluster_runner(cluster)
    scanner = Scanner(
        Matcher(index, threshold, video_rule=VideoRule(video_known_share, video_query_share, video_both)),
        options,
        known_good if known_good else None,
        signal_cache,
        workers or default_workers(),
        follow_symlinks,
        limits,
        runner=runner,
    )
    sink = sinks.get(fmt.value)
    show_progress = err.is_terminal if progress is None else progress
    log.info("scanning with %d hashes from %d lists", len(index), len(index.list_names))
    try:
        with _output(output) as out, ScanProgress(err, show_progress) as bar:
            writer = sink.open(out)
            for finding in scanner.scan(paths):
                bar.update(scanner.stats, scanner.discovered, finding)
                alerts.finding(finding)
                if report_all or sink.wants_all or _reportable(finding):
                    writer.write(finding)
            scanner.stats.settings = _settings(ctx, index, options, limits)
            writer.close(scanner.stats)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    finally:
        if signal_cache:
            signal_cache.close()
        if runner is not None:
            runner.close()
        store.close()
        alerts.close()
    _print_summary(scanner)
    raise typer.Exit(scanner.stats.exit_code)


def _settings(
    ctx: typer.Context, index: ListIndex, options: HashOptions, limits: Limits | None
) -> dict[str, str]:
    """The scan's parameters as a report keeps them for the record."""
    given = {k: v for k, v in ctx.params.items() if v is not None}
    return {
        "Command": "vakta scan " + " ".join(f"{k}={v}" for k, v in sorted(given.items())),
        "Lists": ", ".join(n for n in index.list_names if n) or "(none)",
        "Hashes searched": f"{len(index):,}",
        "PDQ threshold": str(ctx.params.get("threshold")),
        "Hashing": ", ".join(f"{k}={v}" for k, v in sorted(asdict(options).items())),
        "Containers": "not opened"
        if limits is None
        else ", ".join(f"{k}={v}" for k, v in asdict(limits).items()),
        "Ran on": f"Dask cluster {ctx.params['cluster']}" if ctx.params.get("cluster") else "this machine",
    }


def _cluster_runner(address: str | None) -> ClusterRunner | None:
    if address is None:
        return None
    try:
        client = connect(address)
    except ClusterError as exc:
        raise _fail(str(exc)) from None
    workers = len(client.scheduler_info().get("workers", {}))
    err.print(f"hashing on the Dask cluster at {client.scheduler.address} ({workers} workers)", markup=False)
    return ClusterRunner(client)


def _reportable(finding: Finding) -> bool:
    return finding.matched or finding.failed


def _print_summary(scanner: Scanner) -> None:
    s = scanner.stats.to_dict()
    err.print(
        f"{s['files']:,} files, {s['bytes'] / 1e6:,.1f} MB, [bold]{s['matched_files']:,} matched[/bold], "
        f"{s['errors']:,} errors, {s['skipped']:,} skipped, {s['known_good']:,} known-good, "
        f"{s['cache_hits']:,} cache hits in {s['elapsed_s']:.1f} s "
        f"({s['files_per_s']:,.1f} files/s, {s['mb_per_s']:,.1f} MB/s)"
    )


# --------------------------------------------------------------------------- index


@index_app.command("status")
def index_status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """Show the index generation, its sizes, and whether it is current and being compacted."""
    root = _state(ctx).home / INDEX_FOLDER
    try:
        index = DiskIndex.open(root)
    except IndexFormatError as exc:
        raise _fail(
            f"no usable index ({exc}); it is built by the next scan or `vakta index rebuild`"
        ) from None
    with _open_store(ctx) as store:
        stale = index.stale(store)
    status = {
        "path": str(root),
        "base": index.base,
        "delta": index.delta,
        "entries": {"pdq": len(index.pdq)} | {k: len(d) for k, d in index.digests.items()},
        "delta_entries": index.delta_size(),
        "lists": index.names(),
        "current_with_store": not stale,
        "compacting": diskindex.compaction_running(root),
    }
    if as_json:
        _dump(status, sys.stdout)
        return
    for key, value in status.items():
        sys.stdout.write(f"{key}: {value}\n")


@index_app.command("compact")
def index_compact(ctx: typer.Context) -> None:
    """Bring the index up to the lists, then merge its delta into a new base now (in the foreground)."""
    home = _state(ctx).home
    with _open_store(ctx) as store:
        current_index(home, store)
    started = time.perf_counter()
    index = diskindex.compact(home / INDEX_FOLDER)
    err.print(f"index compacted to {index.base} in {time.perf_counter() - started:.1f} s", markup=False)


@index_app.command("rebuild")
def index_rebuild(ctx: typer.Context) -> None:
    """Build the index afresh from the lists (after damage, or to reclaim space)."""
    home = _state(ctx).home
    started = time.perf_counter()
    with _open_store(ctx) as store:
        index = diskindex.build(store, home / INDEX_FOLDER)
    err.print(f"index rebuilt as {index.base} in {time.perf_counter() - started:.1f} s", markup=False)


# --------------------------------------------------------------------------- lookup

#: Hashes looked up per batch: the PDQ search is vectorised over a batch.
LOOKUP_BATCH = 4096


def _lookup_inputs(hashes: list[str]) -> Iterator[tuple[int | None, str]]:
    """(line number for standard input, text) of each hash to look up; ``-`` reads standard input."""
    for value in hashes:
        if value != "-":
            yield None, value
            continue
        for number, line in enumerate(sys.stdin, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield number, text


@app.command("lookup")
def lookup_command(
    ctx: typer.Context,
    hashes: Annotated[
        list[str], typer.Argument(help="Hashes (kind from the length, or kind:value); - reads one per line.")
    ],
    lists: ListsOpt = None,
    threshold: ThresholdOpt = DEFAULT_THRESHOLD,
    no_test_list: NoTestListOpt = False,
) -> None:
    """Check hashes without any file: one JSON line per hash with its matches. Exit 1 on a match."""
    with _open_store(ctx) as store:
        detect_lists, ignore_lists = _select_lists(store, lists)
        index, _ = load_index(_state(ctx).home, store, detect_lists, ignore_lists, not no_test_list)
        matcher = Matcher(index, threshold)
        matched = invalid = False
        inputs = _lookup_inputs(hashes)
        while batch := list(itertools.islice(inputs, LOOKUP_BATCH)):
            for result in lookup_results(matcher, batch):
                matched |= bool(result.get("matches"))
                invalid |= "error" in result
                _dump(result, sys.stdout)
    raise typer.Exit(1 if matched else 2 if invalid else 0)


# --------------------------------------------------------------------------- test signature


@app.command("testfile")
def testfile_command(
    out: Annotated[Path, typer.Argument(help="Where to write the test file (.jpg, or .mp4 with --video).")],
    video: Annotated[
        bool, typer.Option("--video", help="Write the test video instead of the picture.")
    ] = False,
) -> None:
    """Write a harmless built-in test file, which every scan reports (list vakta-test)."""
    try:
        out.write_bytes(testsignature.video_bytes() if video else testsignature.image_bytes())
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    what = "test video" if video else "test signature"
    err.print(
        f"wrote the Vakta {what} to {out} (harmless; matches list {testsignature.LIST_NAME})",
        markup=False,
    )


@app.command("selftest")
def selftest_command() -> None:
    """Prove hashing and matching work: the test image and an altered copy must both match."""
    from vakta.selftest import run_selftest

    results = run_selftest()
    for name, matches in results.items():
        how = ", ".join(f"{m.signal} distance {m.distance}" for m in matches) or "NO MATCH"
        err.print(f"{'ok  ' if matches else 'FAIL'} {name}: {how}")
    passed = all(results.values())
    err.print("[green]selftest passed[/green]" if passed else "[red]selftest failed[/red]")
    raise typer.Exit(0 if passed else 1)


@app.command("icap")
def icap_command(
    ctx: typer.Context,
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve ICAP on.")] = "127.0.0.1:1344",
    lists: ListsOpt = None,
    threshold: ThresholdOpt = DEFAULT_THRESHOLD,
    no_test_list: NoTestListOpt = False,
    max_body: Annotated[str, typer.Option("--max-body-size", help="Larger bodies pass unchecked.")] = "64M",
    max_held: Annotated[
        str,
        typer.Option(
            "--max-held-size", help="Bodies held at once, all connections; past it they pass unchecked."
        ),
    ] = "1G",
    max_seconds: Annotated[float, typer.Option("--max-body-seconds", help="Time to check one body.")] = 30.0,
    block_unchecked: Annotated[
        bool, typer.Option("--block-unchecked", help="Block what the limits stop.")
    ] = False,
    block_status: Annotated[int, typer.Option("--block-status", min=400, max=599, help="HTTP status.")] = 403,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Hashing threads.")] = 2,
    extra_queries: Annotated[
        bool,
        typer.Option(
            "--extra-queries/--no-extra-queries",
            help="Also PDQ's edited-copy variants, as scan does (off: the latency of every picture).",
        ),
    ] = False,
    cache_bodies: Annotated[
        int, typer.Option("--cache-bodies", min=0, help="Bodies remembered by content (0: hash every one).")
    ] = 4096,
    alert: Annotated[list[str] | None, typer.Option("--alert", help="Notifier URL, as for scan.")] = None,
    alert_log: Annotated[
        Path | None, typer.Option("--alert-log", help="JSONL alerts without --alert or --console.")
    ] = None,
    console: Annotated[
        bool,
        typer.Option(
            "--console", help="Report to the console this home is enrolled with (vakta agent enroll)."
        ),
    ] = False,
) -> None:
    """Serve ICAP (RFC 3507) to a web proxy: responses that match the lists are replaced by a block page."""
    from vakta.icap.cli import Settings, parse_listen, serve
    from vakta.icap.urls import UrlIndex

    try:
        address = parse_listen(listen)
        dispatcher = Dispatcher(alert, lambda line: err.print(line, markup=False)) if alert else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    home = _state(ctx).home
    reporter = _console_reporter(home) if console else None
    store = _open_store(ctx)
    detect_lists, ignore_lists = _select_lists(store, lists)
    index, known_good = load_index(home, store, detect_lists, ignore_lists, not no_test_list)
    urls = UrlIndex(store.entries(detect_lists))
    store.close()
    settings = Settings(
        parse_size(max_body),
        max_seconds,
        block_unchecked,
        block_status,
        workers,
        extra_queries,
        cache_bodies,
        parse_size(max_held),
    )
    alerts_to = dispatcher or alert_log or home / "icap-alerts.jsonl"
    serve(address, Matcher(index, threshold), known_good or None, urls, settings, alerts_to, reporter)


def _console_reporter(home: Path) -> ConsoleReporter:
    """The enrolled identity's console, as the agent uses it; exit 2 with the way to enrol when there is none."""
    from vakta.icap.console import ConsoleReporter
    from vakta.reporting import identity

    try:
        enrolled = identity.load(home)
    except ValueError as exc:  # names the file and the command to run
        raise _fail(str(exc)) from None
    return ConsoleReporter(home, enrolled)


@app.command("alert-test")
def alert_test_command(
    urls: Annotated[list[str], typer.Argument(metavar="URL...", help="Notifier URLs, as for scan --alert.")],
) -> None:
    """Send the test-signature alert to each notifier now, to prove a SIEM, webhook or mail set-up works."""
    failed = False
    for display, error in send_test_alert(urls):
        failed |= error is not None
        err.print(f"error: {error}" if error else f"sent the test alert to {display}", markup=False)
    raise typer.Exit(2 if failed else 0)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
