"""Plain text lists: one hash per line, as most hash lists and ``md5sum`` output ship.

The kind comes from ``--kind`` or from the value's length.  A 64-character
value could be SHA-256 or PDQ, and guessing would silently match against the
wrong algorithm, so without ``--kind`` such lines are reported, not imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO

from vakta.lists.formats._common import KIND_BY_LENGTH, kind_issue, text_lines, unknown_length
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds


class TextFormat:
    """One hash per line; ``md5sum``-style ``HASH  filename`` lines use the first token."""

    name: str = "text"

    def sniff(self, head: bytes, filename: str) -> bool:
        """Always True: plain text is the fallback when no other format claims a file."""
        return True

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per hash line; a 1M-line list must stay in the seconds range.

        The loop is deliberately flat: a split and a dict look-up per line, with
        the slower checks only on lines that are not plain hashes.
        """
        issue = kind_issue(kind)
        if issue is not None:
            yield issue
            return
        for lineno, line in enumerate(text_lines(stream), 1):
            tokens = line.split(None, 1)
            if not tokens:
                continue
            value = tokens[0]
            if value[0] == "#":
                continue
            if value[0] == "\\":  # sha256sum escapes lines whose file name holds a backslash
                value = value[1:]
            value_kind = kind or KIND_BY_LENGTH.get(len(value))
            if value_kind is None:
                yield ParseIssue(lineno, unknown_length(value))
                continue
            try:
                normal = kinds.normalize(value_kind, value)
            except kinds.InvalidHashError as exc:
                yield ParseIssue(lineno, str(exc))
                continue
            # Positional arguments: measurably cheaper than keywords at a million records.
            yield ListRecord({value_kind: normal}, None, None, lineno)

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write every hash on its own line (all kinds mixed; re-import SHA-256 and PDQ with --kind)."""
        out.write(f"# vakta list: {' '.join(list_name.split())}\n")
        for record in records:
            for value in record.hashes.values():
                out.write(value)
                out.write("\n")


FORMAT = TextFormat()
