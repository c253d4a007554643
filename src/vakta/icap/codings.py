"""HTTP content codings (RFC 9110 section 8.4): a web body is checked as the browser will see it.

Every browser displays a picture sent with ``Content-Encoding: gzip`` (or ``br``,
``deflate``, ``zstd``) after undoing the coding. Matching the encoded bytes would let
a server slip listed material past the filter just by compressing it, whatever
``Content-Type`` it declares, so the filter sniffs and hashes the decoded body.
Decoding is bounded: a body that decodes past the limit (a compression bomb) is an
error on that body, never an unbounded allocation.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import zstandard

from vakta.containers.compressed import check_zstd_frames


class CodingError(ValueError):
    """A body that does not decode as its ``Content-Encoding`` says, or decodes past the limit."""


def parse(header: str | None) -> tuple[str, ...]:
    """The codings of a ``Content-Encoding`` value in the order applied, lower-cased, ``identity`` left out."""
    parts = (p.strip().lower() for p in (header or "").split(","))
    return tuple(p for p in parts if p and p != "identity")


def supported(codings: tuple[str, ...]) -> bool:
    return all(c in _DECODERS for c in codings)


def decode(data: bytes, codings: tuple[str, ...], limit: int) -> bytes:
    """``data`` with its codings undone (the last applied first); CodingError if corrupt, unknown or over ``limit`` bytes."""
    for coding in reversed(codings):
        data = _undo(coding, data, limit, partial=False)
        if len(data) > limit:
            raise CodingError(f"{coding} decodes to more than {limit} bytes")
    return data


def head(start: bytes, codings: tuple[str, ...], size: int) -> bytes | None:
    """The first ``size`` decoded bytes of a body's first bytes (enough to tell its type); None if they do not decode."""
    try:
        for coding in reversed(codings):
            start = _undo(coding, start, size, partial=True)
    except CodingError:
        return None
    return start[:size]


def _undo(coding: str, data: bytes, limit: int, partial: bool) -> bytes:
    """One coding undone, at most ``limit + 1`` bytes of it (one more tells the caller it went past)."""
    decoder = _DECODERS.get(coding)
    if decoder is None:
        raise CodingError(f"content coding {coding!r} is not supported")
    try:
        return decoder(data, limit + 1, partial)
    except (zlib.error, zstandard.ZstdError, _brotli_error()) as exc:
        raise CodingError(f"{coding}: {exc}") from None


def _gzip(data: bytes, most: int, partial: bool) -> bytes:
    """gzip, member after member (RFC 1952 allows several)."""
    out = bytearray()
    while data and len(out) < most:
        stream = zlib.decompressobj(31)
        out += stream.decompress(data, most - len(out))
        if not stream.eof:
            if not stream.unconsumed_tail and not partial:
                raise CodingError("gzip: the body ends before its compressed data does")
            break
        data = stream.unused_data
        if not data.startswith(b"\x1f\x8b"):
            break  # padding or garbage after the last member: ignored, as browsers do
    return bytes(out)


def _deflate(data: bytes, most: int, partial: bool) -> bytes:
    """``deflate`` is zlib-wrapped (RFC 1950); some servers send raw deflate, which browsers accept too."""
    try:
        return _zlib(data, most, partial, zlib.MAX_WBITS)
    except zlib.error:
        return _zlib(data, most, partial, -zlib.MAX_WBITS)


def _zlib(data: bytes, most: int, partial: bool, wbits: int) -> bytes:
    stream = zlib.decompressobj(wbits)
    out = stream.decompress(data, most)
    if not stream.eof and not stream.unconsumed_tail and not partial:
        raise CodingError("deflate: the body ends before its compressed data does")
    return out


def _br(data: bytes, most: int, partial: bool) -> bytes:
    import brotli  # the icap extra; without it a br body is checked as sent

    stream = brotli.Decompressor()
    out = bytearray(stream.process(data, output_buffer_limit=most))
    while len(out) < most and not stream.is_finished() and not stream.can_accept_more_data():
        out += stream.process(b"", output_buffer_limit=most - len(out))
    if not stream.is_finished() and len(out) < most and not partial:
        raise CodingError("br: the body ends before its compressed data does")
    return bytes(out[:most])


def _zstd(data: bytes, most: int, partial: bool) -> bytes:
    if not partial:  # zstandard's reader would stop quietly where a cut body does
        try:
            check_zstd_frames(io.BytesIO(data))
        except (EOFError, ValueError) as exc:
            raise CodingError(f"zstd: {exc}") from None
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True)
    return bytes(reader.read(most))


def _brotli_error() -> type[Exception]:
    try:
        import brotli
    except ImportError:
        return CodingError
    error: type[Exception] = brotli.error
    return error


def _decoders() -> dict[str, Callable[[bytes, int, bool], bytes]]:
    found: dict[str, Callable[[bytes, int, bool], bytes]] = {
        "gzip": _gzip,
        "x-gzip": _gzip,
        "deflate": _deflate,
        "zstd": _zstd,
    }
    try:
        import brotli  # noqa: F401
    except ImportError:
        return found
    found["br"] = _br
    return found


_DECODERS = _decoders()
