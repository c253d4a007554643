"""Hash lists from the console: signed bundles pulled, verified against the pinned key, swapped in whole.

The bundle's Ed25519 signature is checked over the exact bytes received
before anything inside is read; a bundle that fails is refused and reported,
and the lists in use stay.  A good bundle is imported into a new list store
beside the current one, and a pointer file written atomically makes it the
current one: a crash at any moment leaves one whole set of lists in use.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path

from vakta import bundles
from vakta.lists.formats import list_formats
from vakta.lists.model import ListRecord
from vakta.lists.store import DETECT, IGNORE, EmptyImportError, ListStore
from vakta.reporting import client
from vakta.reporting.identity import Identity, agent_folder, write_private

log = logging.getLogger(__name__)

LISTS_FOLDER = "lists"
CURRENT_FILE = "current"
_VERSION = re.compile(r"^[0-9A-Za-z._-]{1,64}$")


def current(home: Path) -> tuple[str, Path] | None:
    """The bundle in use: (version, its store's home folder), or None before the first good bundle."""
    root = home / "agent" / LISTS_FOLDER
    try:
        version = (root / CURRENT_FILE).read_text(encoding="ascii").strip()
    except (OSError, UnicodeError):
        return None
    folder = root / version
    return (version, folder) if _VERSION.match(version) and (folder / "lists.sqlite").exists() else None


def pull(home: Path, identity: Identity) -> str | None:
    """Fetch the console's bundle; install it if it is new. The new version, or None if unchanged.

    :class:`vakta.bundles.BundleError` when the bundle is refused (bad signature,
    damaged, no key pinned); :class:`client.ConsoleError` when it could not be fetched.
    """
    if not identity.bundle_key:
        raise bundles.BundleError("no console key pinned (vakta agent enroll --bundle-key)")
    now = current(home)
    fetched = client.get_bundle(identity.server, identity.secret, now[0] if now else "")
    if fetched is None:
        return None
    data, signature = fetched
    if not bundles.verify(data, signature, identity.bundle_key):
        raise bundles.BundleError("the bundle's signature does not verify with the pinned key: refused")
    version = str(bundles.manifest(data).get("version", ""))
    if not _VERSION.match(version):
        raise bundles.BundleError("the bundle names no usable version: refused")
    if now and now[0] == version:
        return None
    install(home, data, version)
    return version


def install(home: Path, data: bytes, version: str) -> Path:
    """Import a verified bundle into a store of its own, then point ``current`` at it (atomically)."""
    root = agent_folder(home) / LISTS_FOLDER
    root.mkdir(mode=0o700, exist_ok=True)
    building = root / f"{version}.building"
    shutil.rmtree(building, ignore_errors=True)
    files = bundles.list_files(data)
    with ListStore(building) as store:
        for entry in bundles.manifest(data)["lists"]:
            _import(store, entry, files, version)
    final = root / version
    shutil.rmtree(final, ignore_errors=True)
    building.rename(final)
    write_private(root / CURRENT_FILE, version.encode("ascii"))
    for old in root.iterdir():
        if old.is_dir() and old.name != version:
            shutil.rmtree(old, ignore_errors=True)
    log.warning("lists from the console: bundle %s installed", version)
    return final


def _import(store: ListStore, entry: dict[str, object], files: dict[str, bytes], version: str) -> None:
    name, purpose = str(entry["name"]), str(entry["purpose"])
    if purpose not in (DETECT, IGNORE):
        raise bundles.BundleError(f"list {name!r} has an unknown purpose {purpose!r}")
    parts = entry["files"]
    assert isinstance(parts, list)
    for part in parts:
        fmt = str(part["format"])
        parsed = list_formats.get(fmt).parse(io.BytesIO(files[part["path"]]), None)
        records = (r for r in parsed if isinstance(r, ListRecord))
        try:
            store.import_records(name, records, f"console bundle {version}", fmt, purpose)
        except EmptyImportError:
            log.info("list %s: %s part is empty", name, fmt)
