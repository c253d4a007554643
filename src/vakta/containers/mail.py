"""E-mail: single messages (EML, ``message/rfc822``) and mailboxes (mbox), as containers.

A message's members are its attachments and inline parts, everything but the
text body (``text/plain`` or ``text/html`` shown inline, without a file name).
Each is named by its file name, else by its IMAP section number and type
(``part 2.1 (image/jpeg)``), and given out decoded (base64, quoted-printable).
An attached message (``message/rfc822``) is given out as a message: the scan
sniffs it as one and opens it in turn, so its own attachments are found below
it.  The standard ``email`` package parses (``policy.default``).

An mbox is read as a list of messages, ``message 12 (<Subject or
Message-ID>)``, each handed to the scan as a slice of the file: it is hashed
(an exported message can be on a list too) and opened as an EML, which finds
its attachments.  So attachments have one code path, nested messages included,
and the location says which message held them.  The mbox is never loaded:
one pass finds the ``From_`` separator lines, reading the file in chunks, and
each message is read from the file when the scan reaches it (the stdlib
``mailbox`` module needs a path and builds a table of the whole file first).
A message's bytes are those the stdlib reads: without its ``From_`` line and
the blank line before the next one, ``>From`` lines left as they are.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.feedparser import BytesFeedParser
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import EmailPolicy
from functools import partial
from typing import Any, BinaryIO, cast

from vakta.containers import Member, read_at, slice_opener
from vakta.signals.sniff import MBOX_FROM_LINE, MBOX_TYPE, MESSAGE_TYPE

log = logging.getLogger(__name__)

#: A message is parsed in memory (the ``email`` package cannot stream): larger ones are refused.
MAX_MESSAGE_BYTES = 256 << 20
#: Lines starting with ``--`` (MIME boundaries, or text that looks like one) a message may hold:
#: the parser builds an object per part (some 40 µs and 1 kB each), so a flood of tiny parts
#: would cost minutes and gigabytes.
MAX_BOUNDARY_LINES = 10_000
#: Characters of one header the parser reads: ``policy.default``'s header parser costs tens of
#: µs a character on headers dense with parameters, growing quadratically past a few kB.
#: 4 kB holds a 255-character file name in any script, percent-encoded (RFC 2231).
MAX_HEADER_CHARS = 4096
#: Time one message may spend parsing headers, each distinct header parsed once.
MAX_HEADER_SECONDS = 10.0
CHUNK = 1 << 20
#: A separator line longer than this is not taken for one.
MAX_FROM_LINE = 1000
#: Bytes read from the start of an mbox message to find its Subject or Message-ID.
LABEL_HEADER_BYTES = 64 << 10
LABEL_CHARS = 100

#: Text parts that are the message body, not attachments (when inline and without a file name).
BODY_TYPES = frozenset({"text/plain", "text/html"})
#: Parts that hold a whole message: given out as one, for the scan to open.
MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
#: A member name longer than this (a hostile file name) is cut.
MAX_NAME_CHARS = 255


class HeaderWorkExceeded(ValueError):
    """A message's headers take longer than MAX_HEADER_SECONDS to parse: it is not parsed further."""


@dataclass
class _HeaderWork:
    """Headers parsed so far for one message, and the time spent on them."""

    seconds: float = 0.0
    parsed: dict[tuple[str, str], Any] = field(default_factory=dict)


class BoundedPolicy(EmailPolicy):
    """``policy.default`` that parses each distinct header once, at most MAX_HEADER_CHARS of it, in bounded time.

    The parser itself reads every part's Content-Type five times, and
    ``policy.default`` parses a header again on every read: a message of many
    parts or of hostile headers would otherwise cost minutes.
    """

    work: _HeaderWork | None = None

    def __init__(self, work: _HeaderWork | None = None, linesep: str = "\n") -> None:
        super().__init__(message_factory=EmailMessage, linesep=linesep)
        object.__setattr__(self, "work", work)  # policies are read-only once made

    def header_fetch_parse(self, name: str, value: str) -> Any:
        work = self.work
        if hasattr(value, "name") or work is None:
            return super().header_fetch_parse(name, value)
        if len(value) > MAX_HEADER_CHARS:  # cut at a parameter's end, where one is
            value = value[:MAX_HEADER_CHARS].rsplit(";", 1)[0]
        key = (name.lower(), value)
        if key not in work.parsed:
            if work.seconds > MAX_HEADER_SECONDS:
                raise HeaderWorkExceeded(f"headers take over {MAX_HEADER_SECONDS:g} s to parse: not parsed")
            start = time.monotonic()
            work.parsed[key] = self._parse(name, value)
            work.seconds += time.monotonic() - start
        return work.parsed[key]

    def _parse(self, name: str, value: str) -> Any:
        """The header, or an empty one when the stdlib's parser fails on it (it does on some damage)."""
        try:
            return super().header_fetch_parse(name, value)
        except (RecursionError, MemoryError):
            raise
        except Exception as exc:
            log.debug("unreadable %s header: %s", name, exc)
            return super().header_fetch_parse(name, "")


def _policy(linesep: str = "\n") -> BoundedPolicy:
    """A fresh policy (and header budget) for one message."""
    return BoundedPolicy(_HeaderWork(), linesep)


class EmlContainer:
    """The attachments and inline parts of one message."""

    name = "eml"

    def accepts(self, content_type: str) -> bool:
        return content_type == MESSAGE_TYPE

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        message = _parse(stream)
        used: set[str] = set()
        for section, part in _leaves(message):
            member = _part_member(section, part, used)
            if member is not None:
                yield member


def _parse(stream: BinaryIO) -> EmailMessage:
    """The whole message, fed to the parser in chunks; ValueError when too large or too deep.

    Its policy writes lines ending as the message's first line does, so an
    attached message is given out with the line ends it came with.
    """
    chunk = stream.read(CHUNK)
    linesep = "\r\n" if chunk.split(b"\n", 1)[0].endswith(b"\r") else "\n"
    parser = BytesFeedParser(policy=_policy(linesep))
    total = boundaries = 0
    last = b"\n"
    try:
        while chunk:
            total += len(chunk)
            if total > MAX_MESSAGE_BYTES:
                raise ValueError(f"message over {MAX_MESSAGE_BYTES:,} bytes: not parsed")
            boundaries += (last[-2:] + chunk).count(b"\n--")  # one may straddle two chunks
            if boundaries > MAX_BOUNDARY_LINES:
                raise ValueError(f"more than {MAX_BOUNDARY_LINES:,} MIME boundary lines: not parsed")
            last = chunk
            parser.feed(chunk)
            chunk = stream.read(CHUNK)
        return cast(EmailMessage, parser.close())
    except RecursionError as exc:
        raise ValueError("MIME parts nested too deeply to parse") from exc


def _leaves(message: Message) -> Iterator[tuple[str, Message]]:
    """Every part that is not a multipart, with its IMAP section number, depth first, without recursion."""
    pending: list[tuple[str, Message]] = [("", message)]
    while pending:
        section, part = pending.pop()
        children = part.get_payload() if part.get_content_maintype() == "multipart" else None
        if isinstance(children, list):
            prefix = f"{section}." if section else ""
            pending += reversed([(f"{prefix}{i}", c) for i, c in enumerate(children, 1)])
        else:
            yield section or "1", part


def _part_member(section: str, part: Message, used: set[str]) -> Member | None:
    """One attachment or inline part, decoded (None for the body); a name used before gets its section."""
    content_type = part.get_content_type()
    label = f"part {section} ({content_type})"
    try:
        filename = part.get_filename()
        if _is_body(part, content_type, filename):
            return None
        name = _printable(filename or "")[:MAX_NAME_CHARS] or label
        if name in used:
            name = f"{name} (part {section})"
        used.add(name)
        data = _content(part, content_type)
    except HeaderWorkExceeded:
        raise
    except Exception as exc:  # hostile headers or encodings: this part only
        log.debug("%s: %s", label, exc, exc_info=True)
        return Member(label, error=f"cannot decode part: {exc}")
    if part.defects:
        log.info("%s: decoded despite %s", name, ", ".join(type(d).__name__ for d in part.defects))
    return Member(name, open=partial(io.BytesIO, data), size=len(data))


def _is_body(part: Message, content_type: str, filename: str | None) -> bool:
    if content_type.startswith("message/") and content_type not in MESSAGE_TYPES:
        return True  # delivery and read reports: text, like a body
    return content_type in BODY_TYPES and not filename and part.get_content_disposition() != "attachment"


def _content(part: Message, content_type: str) -> bytes:
    """A part's bytes: decoded from its transfer encoding, or an attached message written back out."""
    if content_type in MESSAGE_TYPES and part.is_multipart():
        inner = part.get_payload(0)
        if not isinstance(inner, Message):
            return b""
        writer = inner.policy
        if isinstance(writer, EmailPolicy):
            writer = writer.clone(refold_source="none")  # header lines as they came
        return inner.as_bytes(policy=writer)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


class MboxContainer:
    """The messages of an mbox mailbox, each a member the scan opens as an EML."""

    name = "mbox"

    def accepts(self, content_type: str) -> bool:
        return content_type == MBOX_TYPE

    def members(self, stream: BinaryIO) -> Iterator[Member]:
        size = stream.seek(0, io.SEEK_END)
        separators = _from_lines(stream)
        first = next(separators, None)
        if first is None or first[0] != 0:
            raise ValueError("not an mbox: it does not start with a From_ line")
        number, start = 1, first[1]
        for line_start, next_start in separators:
            yield _message(stream, number, start, _without_blank_line(stream, start, line_start))
            number, start = number + 1, next_start
        yield _message(stream, number, start, _without_blank_line(stream, start, size))


def _from_lines(stream: BinaryIO) -> Iterator[tuple[int, int]]:
    """(offset of each ``From_`` separator line, offset of the line after it), in one chunked pass.

    The stream is shared with the scan, which reads each message between two
    steps of this generator: every read here seeks first.
    """
    # buf[i] is the byte at offset base + i; a line end is put before the first line.
    base, buf, at = -1, b"\n" + read_at(stream, 0, CHUNK), 0
    while True:
        newline = buf.find(b"\nFrom ", at)
        if newline < 0:
            more = read_at(stream, base + len(buf), CHUNK)
            if not more:
                return
            keep = max(len(buf) - 5, 0)  # a separator may straddle two chunks
            base, buf, at = base + keep, buf[keep:] + more, 0
            continue
        start = newline + 1
        end = buf.find(b"\n", start)
        while end < 0 and len(buf) - start <= MAX_FROM_LINE:
            more = read_at(stream, base + len(buf), CHUNK)
            if not more:
                end = len(buf)  # the last line, without a line end
                break
            buf += more
            end = buf.find(b"\n", start)
        if 0 <= end - start <= MAX_FROM_LINE and MBOX_FROM_LINE.match(buf[start:end].rstrip(b"\r")):
            yield base + start, base + min(end + 1, len(buf))
        at = start


def _without_blank_line(stream: BinaryIO, start: int, end: int) -> int:
    """The end of a message: the blank line that separates it from the next one is not part of it."""
    tail = read_at(stream, max(start, end - 4), min(4, end - start))
    if tail.endswith(b"\r\n\r\n"):
        return end - 2
    if tail.endswith(b"\n\n"):
        return end - 1
    return end


def _message(stream: BinaryIO, number: int, start: int, end: int) -> Member:
    label = _label(read_at(stream, start, min(end - start, LABEL_HEADER_BYTES)))
    name = f"message {number} ({label})" if label else f"message {number}"
    return Member(name, open=slice_opener(stream, start, end), size=end - start)


def _label(head: bytes) -> str:
    """A message's Subject, else its Message-ID, printable and short; empty if it has neither."""
    head = head.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
    try:
        headers = BytesHeaderParser(policy=_policy()).parsebytes(head)
        label = _printable(str(headers["subject"] or headers["message-id"] or ""))
    except Exception as exc:  # a hostile header costs the label only
        log.debug("message label: %s", exc, exc_info=True)
        return ""
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 3] + "..."


def _printable(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


EML_READER = EmlContainer()
MBOX_READER = MboxContainer()
