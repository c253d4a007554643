"""Bare hashes looked up without any file: what `vakta lookup` and the console's lookup API answer."""

from __future__ import annotations

from vakta.matching.matcher import Matcher
from vakta.signals.kinds import InvalidHashError, parse_query


def lookup_results(matcher: Matcher, batch: list[tuple[int | None, str]]) -> list[dict[str, object]]:
    """One result object per ``(line, text)`` input, in input order; an unusable input gets its reason.

    The kind comes from a ``kind:`` prefix or the length; a value that can be
    two kinds (64 hex characters: SHA-256 or PDQ) is looked up as both.
    """
    results: list[dict[str, object]] = []
    by_kind: dict[str, list[tuple[int, str]]] = {}
    for position, (line, text) in enumerate(batch):
        result: dict[str, object] = {"input": text}
        if line is not None:
            result["line"] = line
        try:
            candidates, value = parse_query(text)
        except InvalidHashError as exc:
            result["error"] = str(exc)
        else:
            result["kinds"], result["matches"] = list(candidates), []
            for kind in candidates:
                by_kind.setdefault(kind, []).append((position, value))
        results.append(result)
    for kind, items in by_kind.items():
        found = matcher.lookup(kind, [value for _, value in items])
        for (position, _), matches in zip(items, found, strict=True):
            listed = results[position]["matches"]
            assert isinstance(listed, list)
            listed += [m.to_dict() for m in matches]
    return results
