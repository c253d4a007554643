"""Running totals of a scan, for progress, the closing summary and the exit status."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vakta.findings import Finding


@dataclass(slots=True)
class ScanStats:
    files: int = 0
    bytes: int = 0
    matched_files: int = 0
    matches: int = 0
    errors: int = 0
    skipped: int = 0
    known_good: int = 0
    cache_hits: int = 0
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0
    #: What the scan was asked to do (targets, lists, options), for reports that keep a record.
    settings: dict[str, str] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        s = finding.signals
        if s.skipped and s.size is None:
            self.skipped += 1
            return
        self.files += 1
        self.bytes += s.size or 0
        self.errors += bool(s.errors)
        self.known_good += bool(s.skipped)
        self.cache_hits += s.cached
        self.matched_files += finding.matched
        self.matches += len(finding.matches)
        self.elapsed = time.monotonic() - self.started

    def to_dict(self) -> dict[str, float | int]:
        elapsed = max(self.elapsed, 1e-9)
        return {
            "files": self.files,
            "bytes": self.bytes,
            "matched_files": self.matched_files,
            "matches": self.matches,
            "errors": self.errors,
            "skipped": self.skipped,
            "known_good": self.known_good,
            "cache_hits": self.cache_hits,
            "elapsed_s": round(self.elapsed, 3),
            "files_per_s": round(self.files / elapsed, 1),
            "mb_per_s": round(self.bytes / 1e6 / elapsed, 2),
        }

    @property
    def exit_code(self) -> int:
        """As clamscan: 1 if anything matched, else 2 if any item failed, else 0."""
        if self.matched_files:
            return 1
        return 2 if self.errors else 0
