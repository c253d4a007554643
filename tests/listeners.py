"""Real local receivers for alert tests: syslog over UDP, TCP and TLS, a webhook, an SMTP mailbox.

Shared by tests/test_notify.py and tests/server/test_forwarding.py. Every
receiver is a real socket server in this process (threads); TLS uses a CA and
server certificate made by :func:`make_certs`.
"""

from __future__ import annotations

import ipaddress
import queue
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SECRET = "correct horse battery staple"
#: Fast retries, so tests of retry behaviour take milliseconds.
FAST = "retries=2&backoff=0.01"
SYSLOG_LINE = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<time>\S+) (?P<host>\S+) (?P<app>\S+) (?P<pid>\S+) (?P<msgid>\S+) (?P<sd>-) (?P<msg>.*)$",
    re.DOTALL,
)


# --------------------------------------------------------------------------- an independent CEF parser


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """Header fields and extension of one CEF line, unescaped, as a receiver reads them.

    Extension keys are found at every unescaped ``=``; a value that could smuggle one in
    would show up here as an extra key.
    """
    assert line.startswith("CEF:")
    header: list[str] = []
    current: list[str] = []
    i = 0
    while len(header) < 7:
        c = line[i]
        if c == "\\":
            assert line[i + 1] in "\\|", f"bad header escape at {i}: {line!r}"
            current.append(line[i + 1])
            i += 2
        elif c == "|":
            header.append("".join(current))
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    ext = line[i:]
    equals = []
    j = 0
    while j < len(ext):
        if ext[j] == "\\":
            j += 2
            continue
        if ext[j] == "=":
            equals.append(j)
        j += 1
    pairs: dict[str, str] = {}
    starts = []
    for eq in equals:
        k = eq
        while k > 0 and (ext[k - 1].isalnum() or ext[k - 1] == "_"):
            k -= 1
        assert k < eq, f"'=' with no key at {eq}: {ext!r}"
        assert k == 0 or ext[k - 1] == " ", f"key not after a space at {k}: {ext!r}"
        starts.append((k, eq))
    for n, (k, eq) in enumerate(starts):
        end = starts[n + 1][0] - 1 if n + 1 < len(starts) else len(ext)
        key = ext[k:eq]
        assert key not in pairs, f"{key} twice"
        pairs[key] = _unescape_value(ext[eq + 1 : end])
    return header, pairs


def _unescape_value(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            nxt = text[i + 1]
            out.append({"n": "\n", "r": "\r", "\\": "\\", "=": "="}[nxt])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class Certs:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(
    ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def make_certs(folder: Path) -> Certs:
    """A CA, another CA (not trusted), and a server certificate for localhost and 127.0.0.1 signed by the first."""
    ca_key, ca_cert = _ca("Vakta test CA")
    _, other = _ca("Some other CA")
    key, cert = _server_cert(ca_key, ca_cert)
    paths = Certs(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key")
    paths.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths.other_ca.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    paths.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- syslog receivers


class UdpSyslog:
    """A UDP syslog receiver: every datagram is one message."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except OSError:
                return
            self.messages.put(data)

    def close(self) -> None:
        self.sock.close()


@dataclass
class StreamSyslog:
    """A TCP (or, with a context, TLS) syslog receiver reading octet-counted frames."""

    context: ssl.SSLContext | None = None
    #: Close each connection after its first message (a receiver restarting, say).
    one_per_connection: bool = False
    messages: queue.Queue[bytes] = field(default_factory=queue.Queue)
    connections: int = 0
    handshake_failures: int = 0
    closed_connection: threading.Event = field(default_factory=threading.Event)
    #: Listen on this port (a receiver coming back where it was); 0: any free port.
    bind_port: int = 0

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", self.bind_port))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            conn.close()
            return
        with conn:
            stream = conn.makefile("rb")
            while True:
                digits = b""
                while (c := stream.read(1)) not in (b" ", b""):
                    assert c.isdigit(), f"not an octet count: {digits + c!r}"
                    digits += c
                if not digits:
                    break
                message = stream.read(int(digits))
                self.messages.put(message)
                if self.one_per_connection:
                    break
        self.closed_connection.set()

    def close(self) -> None:
        self.sock.close()


# --------------------------------------------------------------------------- webhook receiver


@dataclass
class Hook:
    """A local HTTP receiver: records each request and answers from a script (then 200)."""

    answers: list[int] = field(default_factory=list)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    #: Seconds to wait before answering each request (a slow receiver).
    delay: float = 0.0

    def __post_init__(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(hook.delay)
                hook.requests.append((self.path, dict(self.headers), body))
                status = hook.answers.pop(0) if hook.answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/vakta/alerts?team=soc") -> str:
        return f"http://127.0.0.1:{self.port}{path}&secret-env=VAKTA_HOOK_SECRET&{FAST}"


# --------------------------------------------------------------------------- SMTP receiver


@dataclass
class Mailbox:
    messages: list[tuple[Envelope, Message]] = field(default_factory=list)
    logins: list[bytes] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append((envelope, message_from_bytes(envelope.content)))
        return "250 OK"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == SECRET.encode()
        if ok:
            self.logins.append(auth_data.login)
        return AuthResult(success=ok, handled=False)
