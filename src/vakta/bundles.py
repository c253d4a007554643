"""Signed hash-list bundles: what the console sends its agents, and how an agent checks one.

A bundle is one ZIP file: ``manifest.json`` (format, version, creation time,
and per list its name, purpose, counts, last import, member files and their
SHA-256) and each list as the store's own CSV export (``lists/0001.csv``;
known videos as a vPDQ export beside it), members named by number so no list
name can become a path. The console signs the whole file with Ed25519 and
sends the signature apart (detached), so an agent checks the exact bytes it
received with the public key it pinned, before it reads anything inside.

This module needs neither FastAPI nor SQLAlchemy: the agent imports it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vakta.lists.formats import list_formats
from vakta.lists.model import ListRecord
from vakta.lists.store import VIDEO_KIND, ListStore

log = logging.getLogger(__name__)

FORMAT = "vakta-bundle/1"
MANIFEST = "manifest.json"
#: The response header carrying the detached signature: ``ed25519=<base64>``.
SIGNATURE_HEADER = "X-Vakta-Signature"
SIGNATURE_SCHEME = "ed25519="
KEY_FILE = "bundle-signing-key.pem"
#: Fixed member times: the same lists give the same member bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class BundleError(Exception):
    """A bundle, signature or key that cannot be used (the message says why, never any hash)."""


@dataclass(frozen=True)
class SignedBundle:
    data: bytes
    #: ``ed25519=<base64 signature>``, as sent in :data:`SIGNATURE_HEADER`.
    signature: str
    #: Names the state of the lists the bundle was built from (the HTTP ETag).
    version: str


# --------------------------------------------------------------------------- keys


def load_or_create_key(folder: Path) -> Ed25519PrivateKey:
    """The signing key kept in ``folder``, made on first use (file mode 0600, created that way)."""
    path = folder / KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_or_create_key(folder)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        log.info("made a new bundle signing key %s (public %s)", path, public_key_text(key.public_key()))
        return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read the signing key {path}: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise BundleError(f"{path} is not an Ed25519 private key")
    return loaded


def public_key_text(key: Ed25519PublicKey) -> str:
    """The public key as agents pin it: base64 of its 32 raw bytes."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 of the raw public key in hex: short enough to compare by eye."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def parse_public_key(text: str | bytes) -> Ed25519PublicKey:
    """A public key given as base64 of the raw 32 bytes (what ``key show`` prints) or as PEM."""
    data = text.encode("ascii", "replace") if isinstance(text, str) else text
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise BundleError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, Ed25519PublicKey):
            raise BundleError("the PEM key is not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(data.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise BundleError("a public key is base64 of 32 bytes or PEM") from None


# --------------------------------------------------------------------------- building and signing


def store_version(store: ListStore) -> str:
    """A short name of the store's state: it changes with every import or removal, and only then."""
    states = json.dumps(store.list_states(), separators=(",", ":"))
    return hashlib.sha256(states.encode()).hexdigest()[:32]


def build(store: ListStore, created_at: datetime | None = None) -> bytes:
    """Every list of the store as a bundle (detection and known-good lists, each with its purpose)."""
    version = store_version(store)
    buffer = io.BytesIO()
    entries: list[dict[str, Any]] = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, info in enumerate(store.lists(), 1):
            files = _write_list(
                archive, store, info.name, f"lists/{number:04d}", bool(info.counts.get(VIDEO_KIND))
            )
            entries.append(
                {
                    "name": info.name,
                    "purpose": info.purpose,
                    "counts": info.counts,
                    "imports": info.imports,
                    "last_import": info.last_import,
                    "files": files,
                }
            )
        manifest = {
            "format": FORMAT,
            "version": version,
            "created_at": (created_at or datetime.now(UTC)).isoformat(),
            "lists": entries,
        }
        _add(archive, MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return buffer.getvalue()


def _write_list(
    archive: zipfile.ZipFile, store: ListStore, name: str, stem: str, videos: bool
) -> list[dict[str, str]]:
    """The list as the store exports it: CSV for its hashes, vPDQ for its known videos."""
    files = []
    parts: list[tuple[str, Iterator[ListRecord]]] = [
        ("csv", (r for r in store.records(name) if not r.frames))
    ]
    if videos:
        parts.append(("vpdq", store.video_records(name)))
    for fmt, records in parts:
        text = io.StringIO()
        list_formats.get(fmt).export(records, text, name)
        data = text.getvalue().encode("utf-8")
        member = f"{stem}.{fmt}"
        _add(archive, member, data)
        files.append({"path": member, "format": fmt, "sha256": hashlib.sha256(data).hexdigest()})
    return files


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, _ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def sign(data: bytes, key: Ed25519PrivateKey) -> str:
    """The detached signature as sent in :data:`SIGNATURE_HEADER`."""
    return SIGNATURE_SCHEME + base64.b64encode(key.sign(data)).decode("ascii")


def build_signed(store: ListStore, key: Ed25519PrivateKey) -> SignedBundle:
    data = build(store)
    return SignedBundle(data, sign(data, key), manifest(data)["version"])


# --------------------------------------------------------------------------- what an agent calls


def verify(bundle: bytes, signature: str | bytes, public_key: str | bytes | Ed25519PublicKey) -> bool:
    """Whether ``signature`` (``ed25519=<base64>``, bare base64 or 64 raw bytes) signs exactly ``bundle``.

    False for a changed bundle, another key's signature or an unreadable
    signature; :class:`BundleError` only for an unusable public key, which
    is the caller's configuration and not the server's answer.
    """
    key = public_key if isinstance(public_key, Ed25519PublicKey) else parse_public_key(public_key)
    raw = _signature_bytes(signature)
    if raw is None:
        return False
    try:
        key.verify(raw, bundle)
    except InvalidSignature:
        return False
    return True


def _signature_bytes(signature: str | bytes) -> bytes | None:
    if isinstance(signature, bytes) and len(signature) == 64:
        return signature
    text = signature.decode("ascii", "replace") if isinstance(signature, bytes) else signature
    text = text.strip().removeprefix(SIGNATURE_SCHEME)
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    return raw if len(raw) == 64 else None


def manifest(bundle: bytes) -> dict[str, Any]:
    """The bundle's manifest (call :func:`verify` first: this checks the format, not who made it)."""
    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            document = json.loads(archive.read(MANIFEST))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise BundleError(f"not a Vakta bundle: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(f"not a {FORMAT} bundle")
    return document


def list_files(bundle: bytes) -> dict[str, bytes]:
    """Member path -> bytes of every list file, each checked against the manifest's SHA-256."""
    out: dict[str, bytes] = {}
    with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
        for entry in manifest(bundle)["lists"]:
            for file in entry["files"]:
                data = archive.read(file["path"])
                if hashlib.sha256(data).hexdigest() != file["sha256"]:
                    raise BundleError(f"{file['path']} does not match its manifest digest")
                out[file["path"]] = data
    return out
