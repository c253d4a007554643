"""A progress line for long scans, on the terminal only, never mixed into reports."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from vakta.findings import Finding
from vakta.stats import ScanStats


class ScanProgress:
    """Shows files done of files found so far, throughput and matches; a no-op when disabled."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]scanning"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} files"),
                TextColumn("{task.fields[rate]}"),
                TextColumn("[red]{task.fields[matched]} matched[/red]"),
                TextColumn("{task.fields[errors]} errors"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )

    def __enter__(self) -> ScanProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task("scan", total=0, rate="", matched=0, errors=0)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, stats: ScanStats, discovered: int, finding: Finding) -> None:
        if self._progress is None or self._task is None:
            return
        done = stats.files + stats.skipped
        rate = f"{stats.bytes / 1e6 / max(stats.elapsed, 1e-6):,.1f} MB/s"
        self._progress.update(
            self._task,
            completed=done,
            total=max(discovered, done),
            rate=rate,
            matched=stats.matched_files,
            errors=stats.errors,
        )
