"""Alert notifiers against real local receivers: syslog over UDP, TCP and TLS, a webhook, SMTP.

Every receiver here is a real socket server in this process (threads), TLS
uses a CA and server certificate made by the test, and the SMTP server is
aiosmtpd.  The end-to-end tests scan the built-in test signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import queue
import re
import socket
import time
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from listeners import (
    FAST,
    SECRET,
    SYSLOG_LINE,
    Certs,
    Hook,
    Mailbox,
    StreamSyslog,
    UdpSyslog,
    free_port,
    make_certs,
    parse_cef,
)

from vakta import testsignature
from vakta.findings import Finding
from vakta.matching.index import EntryMeta
from vakta.matching.matcher import Match
from vakta.notify import Alert, AlertMatch, NotifyError, cef, notifier_for, signature_alert
from vakta.notify.dispatch import Dispatcher
from vakta.notify.retry import RetryPolicy
from vakta.notify.storage import (
    CLOUD_SYNC,
    INTERNAL,
    NETWORK,
    REMOTE,
    REMOVABLE,
    UNKNOWN,
    StorageProbe,
    parse_mountinfo,
)
from vakta.notify.syslog import format_message
from vakta.notify.webhook import ALERT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from vakta.signals.model import Signals

if TYPE_CHECKING:
    from conftest import RunCli


# --------------------------------------------------------------------------- alerts to send


def _finding(
    path: str = "/home/alice/Pictures/holiday.zip",
    inside: tuple[str, ...] = ("2019/img 1.jpg",),
    lists: tuple[str, ...] = ("projectvic",),
) -> Finding:
    signals = Signals(
        path,
        size=123456,
        type="image/jpeg",
        md5="0" * 31 + "1",
        sha1="a" * 40,
        sha256="b" * 64,
        pdq="c" * 64,
        inside=list(inside),
        parent_md5="d" * 32,
    )
    matches = [
        Match(EntryMeta(name, f"entry-{n}", f"cat {n}", "vics", "2026-01-02T03:04:05+00:00"), "pdq", 7 + n)
        for n, name in enumerate(lists)
    ]
    return Finding(signals, matches)


def _alert(**kwargs: Any) -> Alert:
    return Alert.from_finding(_finding(**kwargs), host="laptop-17", user="alice", storage=REMOVABLE)


# --------------------------------------------------------------------------- an independent CEF parser


def _as_sent(text: str) -> str:
    """What CEF may carry of a value: other control characters and line separators replaced."""
    return "".join(
        "\ufffd" if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") and c not in "\r\n" else c
        for c in text
    )


# --------------------------------------------------------------------------- the alert


def test_alert_carries_hashes_location_and_provenance_never_content() -> None:
    when = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    alert = Alert.from_finding(_finding(), host="laptop-17", user="alice", storage=REMOVABLE, time=when)
    data = alert.to_dict()
    assert data["location"] == "/home/alice/Pictures/holiday.zip > 2019/img 1.jpg"
    assert data["inside"] == ["2019/img 1.jpg"] and data["parent_md5"] == "d" * 32
    assert data["time"] == "2026-03-04T05:06:07.890Z"
    assert (data["host"], data["user"], data["storage"]) == ("laptop-17", "alice", "removable media")
    assert (data["md5"], data["sha256"], data["size"]) == ("0" * 31 + "1", "b" * 64, 123456)
    assert data["matches"] == [
        {
            "list": "projectvic",
            "entry_id": "entry-0",
            "category": "cat 0",
            "signal": "pdq",
            "distance": 7,
            "list_format": "vics",
            "imported_at": "2026-01-02T03:04:05+00:00",
        }
    ]
    assert data["test"] is False and alert.name == "img 1.jpg"
    # Nothing beyond hashes, sizes, paths and provenance: no field that could hold content.
    assert set(data) == {
        "version", "id", "time", "test", "host", "user", "storage", "path", "location", "inside",
        "parent_md5", "deleted", "size", "type", "md5", "sha1", "sha256", "pdq", "matches", "tool",
    }  # fmt: skip


def test_test_signature_marks_the_alert_as_a_test() -> None:
    assert _alert(lists=("vakta-test",)).test
    assert not _alert(lists=("vakta-test", "projectvic")).test  # a real list matched too
    alert = signature_alert(host="h", user="u")
    assert alert.test and alert.md5 == hashlib.md5(testsignature.image_bytes()).hexdigest()


# --------------------------------------------------------------------------- CEF


def test_cef_event_maps_the_alert_fields() -> None:
    alert = _alert(lists=("projectvic", "ncmec"))
    header, ext = parse_cef(cef.format_event(alert))
    assert header[:6] == ["CEF:0", "Vakta", "Vakta", header[3], "match", cef.NAME_MATCH]
    assert header[6] == "10"
    assert ext["rt"] == str(int(alert.time.timestamp() * 1000))
    assert (ext["dvchost"], ext["suser"], ext["cat"]) == ("laptop-17", "alice", "match")
    assert ext["filePath"] == alert.location and ext["fname"] == "img 1.jpg"
    assert (ext["fileHash"], ext["fsize"], ext["fileType"]) == ("b" * 64, "123456", "image/jpeg")
    labelled = {
        ext[f"{k}Label"]: ext[k]
        for k in ("cs1", "cs2", "cs3", "cs4", "cs5", "cs6", "flexString1", "flexString2", "cn1")
    }
    assert labelled == {
        "list": "projectvic, ncmec",
        "category": "cat 0, cat 1",
        "entryId": "entry-0, entry-1",
        "md5": "0" * 31 + "1",
        "sha1": "a" * 40,
        "storage": "removable media",
        "pdq": "c" * 64,
        "signal": "pdq:7, pdq:8",
        "distance": "7",
    }
    assert ext["externalId"] == alert.id


def test_cef_one_entry_matched_by_several_signals_is_named_once() -> None:
    meta = EntryMeta("projectvic", "42", "1", "vics", "2026-01-02T03:04:05+00:00")
    finding = _finding()
    finding.matches = [Match(meta, "md5", 0), Match(meta, "sha1", 0), Match(meta, "pdq", 3)]
    alert = Alert.from_finding(finding, host="h", user="u", storage=INTERNAL)
    _, ext = parse_cef(cef.format_event(alert))
    assert (ext["cs1"], ext["cs2"], ext["cs3"]) == ("projectvic", "1", "42")
    assert ext["flexString2"] == "md5:0, sha1:0, pdq:3" and ext["cn1"] == "0"
    assert "matched 1 hash-list entry" in ext["msg"]


def test_cef_test_signature_is_low_severity_and_says_so() -> None:
    header, ext = parse_cef(cef.format_event(signature_alert(host="h", user="u")))
    assert header[4:] == ["test-signature", cef.NAME_TEST, "1"]
    assert ext["cat"] == "test" and "TEST SIGNATURE" in ext["msg"]


HOSTILE = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "|",
                "\\",
                "=",
                "\n",
                "\r",
                " ",
                "\t",
                "\x00",
                "\x85",
                "\u2028",
                "\ud800",
                " cs1=",
                "\\=",
                "<13>1 ",
            ]
        ),
        st.characters(),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=HOSTILE,
    member=HOSTILE,
    host=HOSTILE,
    user=HOSTILE,
    list_name=HOSTILE,
    category=HOSTILE,
    entry=HOSTILE,
    file_type=HOSTILE,
)
def test_cef_no_value_can_forge_a_field_or_a_line(
    path: str, member: str, host: str, user: str, list_name: str, category: str, entry: str, file_type: str
) -> None:
    alert = Alert(
        host=host,
        user=user,
        storage="internal disk",
        path=path or "p",
        inside=(member,) if member else (),
        matches=(AlertMatch(list_name or "l", entry or None, category or None, "md5", 0, "csv", "t"),),
        type=file_type or None,
        md5="e" * 32,
    )
    line = cef.format_event(alert)
    message = format_message(alert)
    for text in (line, message.decode()):
        assert "\n" not in text and "\r" not in text and "\u2028" not in text and "\x85" not in text
    header, ext = parse_cef(line)
    assert len(header) == 7 and header[4] == "match"
    expected = {k for k, _ in cef.extension(alert)}
    assert set(ext) == expected  # no injected key, none lost
    assert ext["filePath"] == _as_sent(alert.location)[:1023] or ext["filePath"].endswith("…")
    assert ext["cs1"] == _as_sent(list_name or "l")
    assert ext["cs2"] == _as_sent(category or "-")
    assert ext["cs3"] == _as_sent(entry or "-")
    if host:
        assert ext["dvchost"] == _as_sent(host)[:100] or ext["dvchost"].endswith("…")
    if user:
        assert ext["suser"] == _as_sent(user)
    parsed = SYSLOG_LINE.match(message.decode())
    assert parsed is not None and parsed["msg"] == line


@given(st.text(max_size=40))
def test_cef_header_escaping_round_trips(text: str) -> None:
    escaped = cef.escape_header(text)
    header, _ = parse_cef("|".join(["CEF:0", escaped, "p", "1", "id", "name", "5"]) + "|a=b")
    assert header[1] == _as_sent(text).replace("\r", "\ufffd").replace("\n", "\ufffd")


def test_cef_long_values_are_cut_to_the_specification_lengths() -> None:
    alert = _alert(path="/" + "x" * 5000, inside=())
    _, ext = parse_cef(cef.format_event(alert))
    assert len(ext["filePath"]) == 1023 and ext["filePath"].endswith("…")
    assert len(format_message(alert)) < 8192


def test_syslog_header_follows_rfc5424() -> None:
    alert = replace(_alert(), host="bad host\nname")
    parsed = SYSLOG_LINE.match(format_message(alert).decode())
    assert parsed is not None
    assert int(parsed["pri"]) == 4 * 8 + 1  # facility auth, severity alert
    assert parsed["host"] == "bad_host_name" and parsed["app"] == "vakta" and parsed["msgid"] == "match"
    assert datetime.fromisoformat(parsed["time"]) == alert.time
    test = SYSLOG_LINE.match(format_message(signature_alert("h", "u"), facility=16).decode())
    assert test is not None and int(test["pri"]) == 16 * 8 + 5 and test["msgid"] == "test"


# --------------------------------------------------------------------------- TLS material


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls"))


# --------------------------------------------------------------------------- syslog receivers


def _received(messages: queue.Queue[bytes], count: int = 1, timeout: float = 10) -> list[str]:
    out = [messages.get(timeout=timeout).decode() for _ in range(count)]
    assert messages.empty(), "more messages than expected"
    return out


def _cef_of(message: str) -> dict[str, str]:
    parsed = SYSLOG_LINE.match(message)
    assert parsed is not None, message
    return parse_cef(parsed["msg"])[1]


@pytest.fixture
def udp_syslog() -> Iterator[UdpSyslog]:
    server = UdpSyslog()
    yield server
    server.close()


@pytest.fixture
def tcp_syslog() -> Iterator[StreamSyslog]:
    server = StreamSyslog()
    yield server
    server.close()


@pytest.fixture
def tls_syslog(certs: Certs) -> Iterator[StreamSyslog]:
    server = StreamSyslog(certs.server_context())
    yield server
    server.close()


def test_syslog_udp_one_datagram_per_alert(udp_syslog: UdpSyslog) -> None:
    notifier = notifier_for(f"syslog+udp://127.0.0.1:{udp_syslog.port}?facility=local4")
    alert = _alert()
    notifier.send(alert)
    notifier.close()
    (message,) = _received(udp_syslog.messages)
    parsed = SYSLOG_LINE.match(message)
    assert parsed is not None and int(parsed["pri"]) == 20 * 8 + 1
    ext = _cef_of(message)
    assert ext["filePath"] == alert.location and ext["externalId"] == alert.id


def test_syslog_tcp_octet_counting_keeps_a_newline_in_a_path_inside_one_message(
    tcp_syslog: StreamSyslog,
) -> None:
    notifier = notifier_for(f"syslog+tcp://127.0.0.1:{tcp_syslog.port}")
    tricky = _alert(path="/srv/share/evil\n<13>1 2026-01-01T00:00:00Z forged - - - - CEF:0|x", inside=())
    plain = _alert()
    notifier.send(tricky)
    notifier.send(plain)
    notifier.close()
    first, second = _received(tcp_syslog.messages, 2)
    assert _cef_of(first)["filePath"] == tricky.location  # the newline survived, escaped, in one message
    assert "\n" not in first
    assert _cef_of(second)["externalId"] == plain.id
    assert tcp_syslog.connections == 1  # one connection kept for both


def test_syslog_tcp_reconnects_when_the_receiver_closed_the_connection() -> None:
    server = StreamSyslog(one_per_connection=True)
    try:
        notifier = notifier_for(f"syslog+tcp://127.0.0.1:{server.port}?{FAST}")
        notifier.send(_alert())
        _received(server.messages)
        assert server.closed_connection.wait(5)
        time.sleep(0.1)  # the FIN reaches this side
        again = _alert()
        notifier.send(again)
        (message,) = _received(server.messages)
        assert _cef_of(message)["externalId"] == again.id
        assert server.connections == 2
        notifier.close()
    finally:
        server.close()


def test_syslog_tls_with_the_receivers_ca(tls_syslog: StreamSyslog, certs: Certs) -> None:
    notifier = notifier_for(f"syslog+tls://127.0.0.1:{tls_syslog.port}?ca={certs.ca}")
    alert = _alert()
    notifier.send(alert)
    notifier.close()
    (message,) = _received(tls_syslog.messages)
    assert _cef_of(message)["externalId"] == alert.id


def test_syslog_tls_untrusted_certificate_fails_at_once_without_retries(
    tls_syslog: StreamSyslog, certs: Certs
) -> None:
    notifier = notifier_for(f"syslog+tls://127.0.0.1:{tls_syslog.port}?ca={certs.other_ca}&{FAST}")
    with pytest.raises(NotifyError) as caught:
        notifier.send(_alert())
    assert caught.value.kind == "TLS certificate not trusted" and not caught.value.retryable
    assert tls_syslog.connections == 1  # a configuration error is not retried
    assert tls_syslog.messages.empty()


def test_syslog_tcp_closed_port_is_retried_then_a_clear_error() -> None:
    port = free_port()
    sleeps: list[float] = []
    notifier = notifier_for(f"syslog+tcp://127.0.0.1:{port}?retries=2&backoff=0.01")
    notifier.policy.sleep = sleeps.append  # type: ignore[attr-defined]
    with pytest.raises(NotifyError) as caught:
        notifier.send(_alert())
    assert caught.value.kind == "connection refused" and caught.value.retryable
    assert len(sleeps) == 2  # three attempts
    with pytest.raises(NotifyError):
        notifier.send(_alert())
    assert len(sleeps) == 2  # the next alert gets one try while the receiver stays down


# --------------------------------------------------------------------------- webhook receiver


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    monkeypatch.setenv("VAKTA_HOOK_SECRET", SECRET)
    server = Hook()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _verify(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """What docs/alerts.md tells a receiver to do, written out independently."""
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    data: dict[str, Any] = json.loads(body)
    assert str(data["sent_at"]) == headers[TIMESTAMP_HEADER]
    assert abs(time.time() - data["sent_at"]) < 300
    return data


def test_webhook_signed_and_retried_after_a_500(hook: Hook) -> None:
    hook.answers = [500]
    notifier = notifier_for(hook.url())
    alert = _alert()
    notifier.send(alert)
    notifier.close()
    assert len(hook.requests) == 2  # 500, then 200
    for path, headers, body in hook.requests:
        assert path == "/vakta/alerts?team=soc"  # Vakta's own options never reach the receiver
        data = _verify(headers, body)
        assert data["id"] == alert.id == headers[ALERT_ID_HEADER]  # the same id on the retry
        assert data["location"] == alert.location and data["md5"] == alert.md5
        assert headers["Content-Type"].startswith("application/json")
    # A body altered on the way fails the check.
    _, headers, body = hook.requests[-1]
    with pytest.raises(AssertionError):
        _verify(headers, body.replace(b"laptop-17", b"laptop-18"))


def test_webhook_4xx_is_never_retried(hook: Hook) -> None:
    hook.answers = [403]
    with pytest.raises(NotifyError) as caught:
        notifier_for(hook.url()).send(_alert())
    assert caught.value.kind == "HTTP 403" and not caught.value.retryable
    assert len(hook.requests) == 1


def test_webhook_gives_up_after_its_retries_on_5xx(hook: Hook) -> None:
    hook.answers = [503, 502, 500, 200]
    with pytest.raises(NotifyError) as caught:
        notifier_for(hook.url()).send(_alert())
    assert caught.value.kind == "HTTP 500"
    assert len(hook.requests) == 3  # retries=2


def test_webhook_redirect_is_not_followed(hook: Hook) -> None:
    hook.answers = [302]
    with pytest.raises(NotifyError) as caught:
        notifier_for(hook.url()).send(_alert())
    assert caught.value.kind == "HTTP 302" and "redirect" in str(caught.value)
    assert [p for p, _, _ in hook.requests] == ["/vakta/alerts?team=soc"]


def test_webhook_over_https_checks_the_certificate(certs: Certs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAKTA_HOOK_SECRET", SECRET)
    server = Hook()
    server.server.socket = certs.server_context().wrap_socket(server.server.socket, server_side=True)
    try:
        base = f"https://127.0.0.1:{server.port}/in?secret-env=VAKTA_HOOK_SECRET&{FAST}"
        notifier_for(f"{base}&ca={certs.ca}").send(_alert())
        assert len(server.requests) == 1
        with pytest.raises(NotifyError) as caught:
            notifier_for(f"{base}&ca={certs.other_ca}").send(_alert())
        assert caught.value.kind == "TLS certificate not trusted"
        assert len(server.requests) == 1
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://hooks.example.org/x", "secret-env"),
        ("https://hooks.example.org/x?secret-env=VAKTA_NOT_SET_ANYWHERE", "is not set"),
        ("https://user:hunter2@hooks.example.org/x?secret-env=HOME", "no password in the URL"),
        ("smtp://alerts:hunter2@mail.example.org?to=a@example.org", "no password in the URL"),
        ("syslog+udp://127.0.0.1?facilty=local0", "unknown option(s) facilty"),
        ("syslog+udp://127.0.0.1?facility=nope", "unknown facility"),
        ("syslog+tcp://127.0.0.1:99999", "port"),
        ("gopher://example.org", "no notifier for gopher://"),
        ("smtp://mail.example.org", "?to="),
        ("smtp://mail.example.org?to=not-an-address", "not an e-mail address"),
        ("smtp://alerts@mail.example.org?to=a@example.org&password-env=HOME&starttls=no", "needs TLS"),
        ("smtp://mail.example.org?to=a@example.org&password-env=HOME", "needs a user name"),
        ("syslog+tls://127.0.0.1?ca=/nonexistent/ca.pem", "cannot load the TLS files"),
    ],
)
def test_bad_urls_are_refused_before_anything_is_sent(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        notifier_for(url)
    assert "hunter2" not in str(caught.value)


def test_shown_url_has_no_secret_and_no_path() -> None:
    shown = notifier_for("https://hooks.example.org/services/T0/B0/tok3n?secret-env=HOME").display
    assert shown == "https://hooks.example.org/…"


# --------------------------------------------------------------------------- SMTP receiver


@pytest.fixture
def smtp_starttls(certs: Certs) -> Iterator[tuple[Controller, Mailbox]]:
    box = Mailbox()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=free_port(),
        tls_context=certs.server_context(),
        require_starttls=True,
        authenticator=box.authenticate,
        auth_required=True,
    )
    controller.start()
    yield controller, box
    controller.stop()


def test_smtp_starttls_login_one_plain_message_per_alert(
    smtp_starttls: tuple[Controller, Mailbox], certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, box = smtp_starttls
    monkeypatch.setenv("VAKTA_SMTP_PASSWORD", SECRET)
    notifier = notifier_for(
        f"smtp://alerts%40example.org@127.0.0.1:{controller.port}?to=soc@example.org,legal@example.org"
        f"&from=vakta@example.org&password-env=VAKTA_SMTP_PASSWORD&ca={certs.ca}"
    )
    first, second = _alert(), _alert(lists=("ncmec",))
    notifier.send(first)
    notifier.send(second)
    notifier.close()
    assert box.logins == [b"alerts@example.org", b"alerts@example.org"]
    assert len(box.messages) == 2
    envelope, message = box.messages[0]
    assert envelope.rcpt_tos == ["soc@example.org", "legal@example.org"]
    assert envelope.mail_from == "vakta@example.org"
    assert message["Subject"] == "[Vakta] Hash-list match on laptop-17 (list projectvic)"
    assert not message.is_multipart()  # plain text, nothing attached
    assert message.get_content_type() == "text/plain"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    for expected in (first.location, first.md5, first.sha256, first.id, "list projectvic, entry entry-0"):
        assert expected and expected in text
    assert "not attached, copied or displayed" in text


def test_smtp_login_refused_is_not_retried(
    smtp_starttls: tuple[Controller, Mailbox], certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, box = smtp_starttls
    monkeypatch.setenv("VAKTA_SMTP_PASSWORD", "wrong")
    notifier = notifier_for(
        f"smtp://alerts@127.0.0.1:{controller.port}?to=soc@example.org&password-env=VAKTA_SMTP_PASSWORD"
        f"&ca={certs.ca}&{FAST}"
    )
    with pytest.raises(NotifyError) as caught:
        notifier.send(_alert())
    assert caught.value.kind == "login refused" and not caught.value.retryable
    assert box.messages == []


def test_smtp_without_starttls_is_refused_rather_than_sent_in_clear() -> None:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        notifier = notifier_for(f"smtp://127.0.0.1:{controller.port}?to=soc@example.org&{FAST}")
        with pytest.raises(NotifyError) as caught:
            notifier.send(_alert())
        assert caught.value.kind == "not supported by the server" and "STARTTLS" in str(caught.value)
        assert box.messages == []
        # Said outright, a local relay without TLS is used.
        notifier_for(f"smtp://127.0.0.1:{controller.port}?to=soc@example.org&starttls=no").send(_alert())
        assert len(box.messages) == 1
    finally:
        controller.stop()


def test_smtps_digest_sends_one_message_with_every_alert(certs: Certs) -> None:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), ssl_context=certs.server_context())
    controller.start()
    try:
        notifier = notifier_for(
            f"smtps://127.0.0.1:{controller.port}?to=soc@example.org&digest=yes&ca={certs.ca}"
        )
        alerts = [_alert(), _alert(lists=("ncmec",)), _alert(lists=("vakta-test",))]
        for alert in alerts:
            notifier.send(alert)
        assert box.messages == []  # held for the digest
        notifier.close()
        ((_, message),) = box.messages
        assert message["Subject"] == "[Vakta] 3 hash-list matches on laptop-17"
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        text = body.decode()
        assert all(a.id in text for a in alerts)
        assert text.count("TEST: the built-in harmless test signature matched") == 1
    finally:
        controller.stop()


# --------------------------------------------------------------------------- retry policy


def test_retry_policy_backs_off_and_breaks_the_circuit_until_a_success() -> None:
    pauses: list[float] = []
    policy = RetryPolicy(retries=3, backoff=1.0, sleep=pauses.append)
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise NotifyError("connection refused", retryable=True)

    with pytest.raises(NotifyError):
        policy.run("x", down)
    assert calls == 4 and len(pauses) == 3
    assert 0.8 <= pauses[0] <= 1.2 and 1.6 <= pauses[1] <= 2.4 and 3.2 <= pauses[2] <= 4.8
    with pytest.raises(NotifyError):
        policy.run("x", down)
    assert calls == 5  # one try while failing
    assert policy.run("x", lambda: 42) == 42
    with pytest.raises(NotifyError):
        policy.run("x", down)
    assert calls == 9  # full retries again after a success

    def refused() -> None:
        raise NotifyError("HTTP 400", retryable=False)

    with pytest.raises(NotifyError):
        RetryPolicy(retries=3, sleep=pauses.append).run("x", refused)
    assert len(pauses) == 6  # no pause: not retried


# --------------------------------------------------------------------------- dispatcher


def test_dispatcher_reports_each_failure_kind_once_and_counts(tcp_syslog: StreamSyslog) -> None:
    lines: list[str] = []
    closed = free_port()
    dispatcher = Dispatcher(
        [f"syslog+tcp://127.0.0.1:{tcp_syslog.port}", f"syslog+tcp://127.0.0.1:{closed}?{FAST}"],
        lines.append,
        host="scanner-1",
        probe=StorageProbe(""),
    )
    for _ in range(3):
        dispatcher.finding(_finding())
    dispatcher.finding(Finding(Signals("/clean.jpg", md5="f" * 32)))  # no match: no alert
    counts = dispatcher.close()
    assert [(c.sent, c.failed) for _, c in counts] == [(3, 0), (0, 3)]
    assert len(_received(tcp_syslog.messages, 3)) == 3
    failures = [line for line in lines if "failed:" in line]
    assert len(failures) == 1 and "connection refused" in failures[0]
    assert f"syslog+tcp://127.0.0.1:{closed}" in failures[0]
    assert lines[-2:] == [
        f"alerts to syslog+tcp://127.0.0.1:{tcp_syslog.port}: 3 sent, 0 failed",
        f"alerts to syslog+tcp://127.0.0.1:{closed}: 0 sent, 3 failed",
    ]


def test_dispatcher_gives_up_on_a_hung_receiver_at_its_time_limit() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts into the backlog, never answers
    port = listener.getsockname()[1]
    try:
        lines: list[str] = []
        dispatcher = Dispatcher(
            [f"https://127.0.0.1:{port}/x?secret-env=HOME&timeout=30&retries=0"],
            lines.append,
            probe=StorageProbe(""),
            drain_seconds=0.5,
        )
        started = time.monotonic()
        dispatcher.finding(_finding())
        dispatcher.finding(_finding())
        ((_, counts),) = dispatcher.close()
        assert time.monotonic() - started < 5
        assert (counts.sent, counts.failed) == (0, 2)
        assert any("2 not sent within the time limit" in line for line in lines)
    finally:
        listener.close()


# --------------------------------------------------------------------------- storage kinds

MOUNTINFO = r"""22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
40 22 8:17 / /media/alice/USB\040STICK rw,nosuid shared:30 - vfat /dev/sdb1 rw
41 22 0:50 / /mnt/share rw,relatime shared:31 - cifs //fs01/share rw
42 22 0:51 / /net/home rw shared:32 - nfs4 fs02:/home rw
43 22 11:0 / /media/cdrom ro shared:33 - iso9660 /dev/sr0 ro
44 22 0:52 / /tmp rw shared:34 - tmpfs tmpfs rw
garbage line
"""


def test_storage_kinds_from_the_mount_table_and_sysfs(tmp_path: Path) -> None:
    sys_root = tmp_path / "sys"
    devices = sys_root / "devices"
    usb = devices / "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sdb/sdb1"
    nvme = devices / "pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1/nvme0n1p2"
    for folder in (usb, nvme):
        folder.mkdir(parents=True)
    (nvme.parent / "removable").write_text("0\n")
    (usb.parent / "removable").write_text("0\n")  # USB disks often say 0: the bus tells
    block = sys_root / "dev" / "block"
    block.mkdir(parents=True)
    (block / "8:17").symlink_to(usb)
    (block / "259:2").symlink_to(nvme)
    probe = StorageProbe(MOUNTINFO, sys_root)
    assert probe.mounts[0].point == "/media/alice/USB STICK"  # octal escapes decoded, longest first
    assert probe.kind("/media/alice/USB STICK/DCIM/a.jpg") == REMOVABLE
    assert probe.kind("/media/cdrom/a.jpg") == REMOVABLE
    assert probe.kind("/mnt/share/x/a.jpg") == NETWORK
    assert probe.kind("/net/home/bob/a.jpg") == NETWORK
    assert probe.kind("/var/lib/a.jpg") == INTERNAL
    assert probe.kind("/mnt/sharefoo/a.jpg") == INTERNAL  # a prefix of a name is not the mount
    assert probe.kind("/home/alice/Dropbox/a.jpg") == CLOUD_SYNC
    assert probe.kind("/home/alice/OneDrive - Contoso/a.jpg") == CLOUD_SYNC
    assert probe.kind("s3://bucket/a.jpg") == REMOTE
    assert StorageProbe("").kind("/var/lib/a.jpg") == UNKNOWN
    assert len(parse_mountinfo(MOUNTINFO)) == 6


# --------------------------------------------------------------------------- the command line


@pytest.fixture
def evidence(tmp_path: Path) -> Path:
    """A folder with the test signature as a file and inside a zip, and a harmless other file."""
    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "vakta-test.jpg").write_bytes(testsignature.image_bytes())
    with zipfile.ZipFile(folder / "photos.zip", "w") as archive:
        archive.writestr("2020/copy.jpg", testsignature.image_bytes())
    (folder / "notes.txt").write_text("nothing to see\n")
    return folder


def test_scan_alert_sends_every_match_to_every_notifier(
    evidence: Path,
    run_cli: RunCli,
    tcp_syslog: StreamSyslog,
    udp_syslog: UdpSyslog,
    hook: Hook,
    smtp_starttls: tuple[Controller, Mailbox],
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller, box = smtp_starttls
    monkeypatch.setenv("VAKTA_SMTP_PASSWORD", SECRET)
    result = run_cli(
        "scan", evidence, "--workers", 1,
        "--alert", f"syslog+tcp://127.0.0.1:{tcp_syslog.port}",
        "--alert", f"syslog+udp://127.0.0.1:{udp_syslog.port}",
        "--alert", hook.url(),
        "--alert", f"smtp://soc@127.0.0.1:{controller.port}?to=soc@example.org&password-env=VAKTA_SMTP_PASSWORD&ca={certs.ca}",
    )  # fmt: skip
    assert result.exit_code == 1, result.stderr
    locations = {r.get("location", r["path"]) for r in result.records()}
    assert locations == {str(evidence / "vakta-test.jpg"), f"{evidence / 'photos.zip'} > 2020/copy.jpg"}
    for received in (_received(tcp_syslog.messages, 2), _received(udp_syslog.messages, 2)):
        events = [_cef_of(m) for m in received]
        assert {e["filePath"] for e in events} == locations
        assert all(e["cat"] == "test" and e["cs1"] == "vakta-test" for e in events)
    bodies = [_verify(headers, body) for _, headers, body in hook.requests]
    assert {b["location"] for b in bodies} == locations and all(b["test"] for b in bodies)
    member = next(b for b in bodies if b["inside"])
    assert member["path"] == str(evidence / "photos.zip") and member["inside"] == ["2020/copy.jpg"]
    assert len(box.messages) == 2
    assert all(m["Subject"].startswith("[Vakta TEST] Test signature matched") for _, m in box.messages)
    for url in (f"syslog+tcp://127.0.0.1:{tcp_syslog.port}", f"http://127.0.0.1:{hook.port}/…"):
        assert f"alerts to {url}: 2 sent, 0 failed" in result.stderr
    assert SECRET not in result.stderr and "VAKTA_HOOK_SECRET" not in result.stderr


def test_scan_with_a_dead_notifier_keeps_its_report_and_exit_code(
    evidence: Path, run_cli: RunCli, run_vakta: RunCli
) -> None:
    plain = run_cli("scan", evidence, "--workers", 1)
    closed = free_port()
    alerted = run_vakta(  # the installed command in its own process: it must end, threads and all
        "scan", evidence, "--workers", 2, "--alert", f"syslog+tcp://127.0.0.1:{closed}?retries=1&backoff=0.01"
    )
    assert alerted.exit_code == plain.exit_code == 1
    assert sorted(alerted.records(), key=str) == sorted(plain.records(), key=str)
    assert alerted.stderr.count("connection refused") == 1  # once per failure kind
    assert f"alerts to syslog+tcp://127.0.0.1:{closed}: 0 sent, 2 failed" in alerted.stderr


def test_report_settings_show_alert_urls_without_their_token_path(
    evidence: Path, run_cli: RunCli, hook: Hook
) -> None:
    result = run_cli(
        "scan", evidence, "--workers", 1, "--format", "html", "--alert", hook.url("/hooks/T0K3N?team=soc")
    )
    assert result.exit_code == 1, result.stderr
    assert f"127.0.0.1:{hook.port}" in result.stdout  # the settings name the notifier...
    assert "T0K3N" not in result.stdout and "T0K3N" not in result.stderr  # ...never its token
    assert len(hook.requests) == 2 and hook.requests[0][0] == "/hooks/T0K3N?team=soc"


def test_scan_refuses_a_bad_alert_url_before_scanning(evidence: Path, run_cli: RunCli) -> None:
    result = run_cli("scan", evidence, "--alert", "https://hooks.example.org/x")
    assert result.exit_code == 2 and "secret-env" in result.stderr
    assert result.stdout == ""


def test_alert_test_proves_the_integration(
    run_cli: RunCli, tls_syslog: StreamSyslog, certs: Certs, hook: Hook
) -> None:
    result = run_cli("alert-test", f"syslog+tls://127.0.0.1:{tls_syslog.port}?ca={certs.ca}", hook.url())
    assert result.exit_code == 0, result.stderr
    (message,) = _received(tls_syslog.messages)
    ext = _cef_of(message)
    assert ext["cat"] == "test" and ext["cs1"] == "vakta-test"
    assert ext["cs4"] == hashlib.md5(testsignature.image_bytes()).hexdigest()
    ((_, headers, body),) = hook.requests
    assert _verify(headers, body)["test"] is True
    assert f"sent the test alert to syslog+tls://127.0.0.1:{tls_syslog.port}" in result.stderr
    closed = free_port()
    failed = run_cli("alert-test", f"syslog+tcp://127.0.0.1:{closed}?retries=0")
    assert failed.exit_code == 2
    assert f"error: syslog+tcp://127.0.0.1:{closed}: connection refused" in failed.stderr
