"""ArcSight Common Event Format (CEF 0) for alerts: formatting only, no I/O.

Every value an alert carries can come from a hostile file system (a path, a
member name inside an archive) or a list (category, entry id), so escaping is
what keeps a value from forging a field or a syslog line: header fields escape
``\\`` and ``|``; extension values escape ``\\``, ``=`` and line breaks; every
other control character becomes U+FFFD.  Values are cut to the lengths the CEF
specification gives its fields, so one long path cannot make an oversized
datagram.
"""

from __future__ import annotations

import unicodedata

from vakta import __version__
from vakta.notify import Alert, Event, IncidentEvent

VENDOR = "Vakta"
PRODUCT = "Vakta"
#: Device Event Class IDs and names.
EVENT_MATCH = "match"
EVENT_TEST = "test-signature"
NAME_MATCH = "Known material matched a hash list"
NAME_TEST = "Test signature matched (harmless built-in test file)"
SEVERITY_MATCH = 10
SEVERITY_TEST = 1
#: Incident events from the console (class id ``incident-<state>``): escalation needs attention.
NAME_INCIDENT = "Incident {state}"
SEVERITY_INCIDENT = {"escalated": 8, "closed": 3}
SEVERITY_INCIDENT_OTHER = 3

#: Maximum lengths (characters) from the CEF specification's field table.
LIMITS = {
    "dvchost": 100,
    "suser": 1023,
    "filePath": 1023,
    "fname": 1023,
    "fileType": 1023,
    "fileHash": 255,
    "msg": 1023,
    "externalId": 40,
    "cat": 1023,
    "flexString1": 1023,
    "flexString2": 1023,
    "request": 1023,
    "act": 63,
    "outcome": 63,
}
#: cs1..cs6 hold up to 4000 characters.
CUSTOM_LIMIT = 4000
HEADER_LIMIT = 512

#: Custom fields: label and what the alert gives them (joined per match where there are several).
CUSTOM_LABELS = {
    "cs1": "list",
    "cs2": "category",
    "cs3": "entryId",
    "cs4": "md5",
    "cs5": "sha1",
    "cs6": "storage",
    "flexString1": "pdq",
    "flexString2": "signal",
    "cn1": "distance",
    "cn2": "incident",
}
#: Custom fields of incident events.
INCIDENT_LABELS = {"cs1": "previousState", "cs2": "actor", "cn2": "incident"}
_REPLACEMENT = "\ufffd"


def _clean(text: str) -> str:
    """Control characters but line breaks, lone surrogates and Unicode line/paragraph separators become U+FFFD."""
    return "".join(
        _REPLACEMENT if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") and c not in "\r\n" else c
        for c in text
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape_header(text: str) -> str:
    """A header field: ``\\`` and ``|`` escaped; line breaks and controls cannot appear in a header."""
    text = _cut(_clean(text), HEADER_LIMIT).replace("\r", _REPLACEMENT).replace("\n", _REPLACEMENT)
    return text.replace("\\", "\\\\").replace("|", "\\|")


def escape_value(text: str, limit: int = CUSTOM_LIMIT) -> str:
    """An extension value: ``\\``, ``=`` escaped, CR and LF written as ``\\r`` and ``\\n``."""
    text = _cut(_clean(text), limit)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")


def _joined(values: list[str | None]) -> str:
    return ", ".join(v if v else "-" for v in values)


def _message(alert: Alert) -> str:
    count = len(alert.entries())
    parts = [f"file matched {count} hash-list entr{'y' if count == 1 else 'ies'}"]
    if alert.inside:
        parts.append(f"inside {alert.path}")
    if alert.deleted:
        parts.append("deleted file")
    if alert.test:
        parts.append("TEST SIGNATURE, not real material")
    return "; ".join(parts)


def extension(alert: Alert) -> list[tuple[str, str]]:
    """The extension's (key, raw value) pairs, in order; empty values are left out."""
    m = alert.matches
    entries = list(alert.entries())
    pairs: list[tuple[str, str | None]] = [
        ("rt", str(int(alert.time.timestamp() * 1000))),
        ("dvchost", alert.host),
        ("suser", alert.user),
        ("cat", "test" if alert.test else "match"),
        ("externalId", alert.id),
        ("msg", _message(alert)),
        ("filePath", alert.location),
        ("fname", alert.name),
        ("fsize", None if alert.size is None else str(alert.size)),
        ("fileType", alert.type),
        ("fileHash", alert.sha256),
        ("cs1", _joined([list_name for list_name, _, _ in entries])),
        ("cs2", _joined([category for _, _, category in entries])),
        ("cs3", _joined([entry_id for _, entry_id, _ in entries])),
        ("cs4", alert.md5),
        ("cs5", alert.sha1),
        ("cs6", alert.storage),
        ("flexString1", alert.pdq),
        ("flexString2", ", ".join(dict.fromkeys(f"{x.signal}:{x.distance}" for x in m))),
        ("cn1", str(min(x.distance for x in m)) if m else None),
        ("cn2", None if alert.incident_id is None else str(alert.incident_id)),
        ("request", alert.url),
    ]
    return _labelled(pairs, CUSTOM_LABELS)


def incident_extension(event: IncidentEvent) -> list[tuple[str, str]]:
    """An incident event's extension: the incident, its host and user, the change and who made it."""
    what = f"incident {event.incident_id} {event.state}"
    if event.resolution:
        what += f" as {event.resolution}"
    if event.test:
        what += "; TEST SIGNATURE incident, not real material"
    pairs: list[tuple[str, str | None]] = [
        ("rt", str(int(event.time.timestamp() * 1000))),
        ("dvchost", event.host),
        ("suser", event.user),
        ("cat", "test" if event.test else "incident"),
        ("externalId", event.id),
        ("msg", what),
        ("act", event.state),
        ("outcome", event.resolution),
        ("cs1", event.previous),
        ("cs2", event.actor),
        ("cn2", str(event.incident_id)),
        ("request", event.url),
    ]
    return _labelled(pairs, INCIDENT_LABELS)


def _labelled(pairs: list[tuple[str, str | None]], labels: dict[str, str]) -> list[tuple[str, str]]:
    """Empty values left out; each custom field preceded by its label."""
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        if value is None or value == "":
            continue
        if key in labels:
            out.append((f"{key}Label", labels[key]))
        out.append((key, value))
    return out


def format_event(alert: Event) -> str:
    """One CEF line (no line break in it, whatever the alert or event holds)."""
    if isinstance(alert, IncidentEvent):
        severity = (
            SEVERITY_TEST if alert.test else SEVERITY_INCIDENT.get(alert.state, SEVERITY_INCIDENT_OTHER)
        )
        head = (f"incident-{alert.state}", NAME_INCIDENT.format(state=alert.state), severity)
        pairs = incident_extension(alert)
    else:
        test = alert.test
        head = (
            EVENT_TEST if test else EVENT_MATCH,
            NAME_TEST if test else NAME_MATCH,
            SEVERITY_TEST if test else SEVERITY_MATCH,
        )
        pairs = extension(alert)
    header = [
        "CEF:0",
        escape_header(VENDOR),
        escape_header(PRODUCT),
        escape_header(__version__),
        escape_header(head[0]),
        escape_header(head[1]),
        str(head[2]),
    ]
    ext = " ".join(f"{k}={escape_value(v, LIMITS.get(k, CUSTOM_LIMIT))}" for k, v in pairs)
    return "|".join(header) + "|" + ext
