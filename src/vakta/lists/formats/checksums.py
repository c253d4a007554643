"""Checksum files: ``md5sum``/``sha1sum``/``sha256sum`` output and the BSD tag style.

Two line shapes ship::

    0cbdd121922a0cbe2224053ba630faad  photos/a.jpg      GNU: hash, space, space or * (binary), name
    SHA256 (photos/a.jpg) = 1e30...18fb                 BSD ``md5``/``shasum``, ``sha256sum --tag``

A GNU line whose name holds a backslash or a newline starts with ``\\`` and
escapes them.  ``openssl dgst`` writes the tag style without spaces
(``SHA2-256(a.jpg)= ...``), which is read too.  The file name becomes the
entry id (``-``, standard input, gives none).

GNU lines name no algorithm: the length tells it, and 64 hex characters are
SHA-256 here, since a checksum file never holds PDQ (``--kind`` still
overrides).  For the same reason, without a hint ``--format auto`` leaves
GNU lines to the ``text`` format, which keeps 64 characters ambiguous; a
file named like a checksum file (``SHA256SUMS``, ``*.sha256``, ``*.md5``...)
or any tag-style line is read here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO

from vakta.lists.formats._common import first_content_line, head_text, kind_issue, text_lines
from vakta.lists.model import ListRecord, ParseIssue
from vakta.signals import kinds

#: Algorithm name in a tag line (upper case, ``-`` removed) -> Vakta kind.
TAG_KINDS: dict[str, str] = {"MD5": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA2256": "sha256"}
#: Hex length of a GNU line -> kind.
KIND_BY_LENGTH: dict[int, str] = {32: "md5", 40: "sha1", 64: "sha256"}
#: The names Vakta writes algorithms under (what ``sha256sum --tag`` and BSD ``md5`` write).
EXPORT_TAGS: dict[str, str] = {"md5": "MD5", "sha1": "SHA1", "sha256": "SHA256"}
_TAG = re.compile(r"^([A-Za-z0-9-]+) ?\((.*)\) ?= ?([0-9a-fA-F]+)$")
_GNU = re.compile(r"^(\\?)([0-9a-fA-F]+) ([ *])(.*)$")
_HINT = re.compile(r"(?:^|[._-])(?:md5|sha1|sha256|checksum)(?:sums?)?(?:\.txt)?$")
_GNU_ESCAPES = {"\\\\": "\\", "\\n": "\n", "\\r": "\r"}


def unescape(name: str) -> str:
    """A GNU-escaped file name (``\\\\``, ``\\n``) as it was."""
    return re.sub(r"\\[\\nr]", lambda m: _GNU_ESCAPES[m.group(0)], name)


def entry_name(name: str) -> str | None:
    """The entry id a file name gives: none for ``-`` (standard input) or an empty name."""
    return None if name in ("", "-") else name


def tag_record(line: int, match: re.Match[str]) -> ListRecord | ParseIssue:
    """A ``ALGO (name) = hex`` line as a record."""
    algorithm, name, value = match.groups()
    kind = TAG_KINDS.get(algorithm.upper().replace("-", ""))
    if kind is None:
        return ParseIssue(line, f"{algorithm[:20]} is not a hash Vakta matches on (MD5, SHA1, SHA256)")
    try:
        return ListRecord({kind: kinds.normalize(kind, value)}, entry_name(name), None, line)
    except kinds.InvalidHashError as exc:
        return ParseIssue(line, str(exc))


def gnu_record(line: int, match: re.Match[str], kind: str | None) -> ListRecord | ParseIssue:
    """A ``hex  name`` / ``hex *name`` line as a record; the kind from ``--kind`` or the length."""
    escaped, value, _, name = match.groups()
    kind = kind or KIND_BY_LENGTH.get(len(value))
    if kind is None:
        return ParseIssue(
            line, f"{len(value)} hex characters: no hash Vakta matches on (MD5, SHA-1, SHA-256)"
        )
    try:
        normal = kinds.normalize(kind, value)
    except kinds.InvalidHashError as exc:
        return ParseIssue(line, str(exc))
    return ListRecord({kind: normal}, entry_name(unescape(name) if escaped else name), None, line)


def parse_line(line: int, text: str, kind: str | None) -> ListRecord | ParseIssue:
    """One checksum line (line ending removed, not blank) as a record or an issue."""
    tag = _TAG.match(text.strip())
    if tag is not None:
        return tag_record(line, tag)
    gnu = _GNU.match(text.lstrip())
    if gnu is not None:
        return gnu_record(line, gnu, kind)
    return ParseIssue(line, "neither 'HASH  name' nor 'ALGO (name) = HASH'")


class ChecksumsFormat:
    """``md5sum``/``sha1sum``/``sha256sum`` output, GNU or BSD tag style."""

    name: str = "checksums"

    def sniff(self, head: bytes, filename: str) -> bool:
        """True for a tag-style first line, or a GNU line in a file named like a checksum file."""
        line = first_content_line(head_text(head))
        if _TAG.match(line):
            return True
        return bool(_GNU.match(line)) and bool(_HINT.search(filename.lower()))

    def parse(self, stream: IO[bytes], kind: str | None) -> Iterator[ListRecord | ParseIssue]:
        """Yield one record per checksum line; blank and ``#`` lines are skipped."""
        issue = kind_issue(kind)
        if issue is not None:
            yield issue
            return
        for lineno, line in enumerate(text_lines(stream), 1):
            text = line.rstrip("\r\n")
            if text.strip() and not text.lstrip().startswith("#"):
                yield parse_line(lineno, text, kind)

    def export(self, records: Iterable[ListRecord], out: IO[str], list_name: str) -> None:
        """Write tag-style lines (``SHA256 (id) = hex``): they name their algorithm, so kinds can mix.

        ``sha256sum -c`` and BSD ``shasum -c`` read this style too.  The name is
        the entry id (``-`` without one, line breaks folded to spaces).  PDQ has
        no checksum form and is left out; no comment is written, since
        checksum tools take no comments.
        """
        for record in records:
            name = " ".join((record.entry_id or "-").splitlines())
            for kind, tag in EXPORT_TAGS.items():
                if kind in record.hashes:
                    out.write(f"{tag} ({name}) = {record.hashes[kind]}\n")


FORMAT = ChecksumsFormat()
