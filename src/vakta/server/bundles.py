"""The console's hash lists: a Vakta list store under the server's home, its signed bundle, its matcher.

The lists live in ``<server home>/lists.sqlite`` with the on-disk index beside
them, exactly as under a scanning machine's home, so ``vakta server lists
import`` is ``vakta lists import`` pointed at that folder and lookups use the
same index and matcher as ``vakta lookup``. The bundle is rebuilt only when the
store changed (its version is the store's state); the signing key is made on
first start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import make_url

from vakta import bundles
from vakta.home import resolve_home
from vakta.lists.store import DETECT, IGNORE, ListStore
from vakta.matching.loading import current_index, load_index
from vakta.matching.matcher import Matcher
from vakta.server.settings import Settings

log = logging.getLogger(__name__)

SERVER_FOLDER = "server"


def server_home(settings: Settings) -> Path:
    """The server's folder: as configured, else beside its SQLite file, else ``<vakta home>/server``."""
    if settings.home is not None:
        return settings.home
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database).expanduser().resolve().parent
    return resolve_home(None) / SERVER_FOLDER


class ServerLists:
    """The lists of one console: opened per request (SQLite connections stay in their thread)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._key: Ed25519PrivateKey | None = None
        self._bundle: bundles.SignedBundle | None = None

    def key(self) -> Ed25519PrivateKey:
        """The signing key, made (mode 0600) on first use."""
        with self._lock:
            if self._key is None:
                self._key = bundles.load_or_create_key(self.home)
            return self._key

    def public_key(self) -> str:
        return bundles.public_key_text(self.key().public_key())

    @contextmanager
    def store(self) -> Iterator[ListStore]:
        with ListStore(self.home) as store:
            yield store

    def version(self) -> str:
        with self.store() as store:
            return bundles.store_version(store)

    def bundle(self) -> bundles.SignedBundle:
        """The signed bundle of the lists as they are now, built again only after a change."""
        key = self.key()
        with self._lock, self.store() as store:
            version = bundles.store_version(store)
            if self._bundle is None or self._bundle.version != version:
                self._bundle = bundles.build_signed(store, key)
                log.info("hash-list bundle %s built (%d bytes)", version, len(self._bundle.data))
            return self._bundle

    def refresh_index(self, store: ListStore) -> None:
        """Bring the on-disk index up to a changed store now, so the next lookup starts at once."""
        with self._lock:
            current_index(self.home, store)

    @contextmanager
    def matcher(self, threshold: int) -> Iterator[Matcher]:
        """A matcher over every detection list and the built-in test list, as ``vakta lookup`` builds it.

        The on-disk index is brought up to date under the lock (one writer);
        the matcher reads the store for provenance, so it lives within the block.
        """
        with self.store() as store:
            with self._lock:
                index, _ = load_index(self.home, store, store.names(DETECT), store.names(IGNORE))
            yield Matcher(index, threshold)


_made = threading.Lock()


def for_app(state: object, settings: Settings) -> ServerLists:
    """The app's :class:`ServerLists` (``app.state.server_lists``), made on first use."""
    with _made:
        lists = getattr(state, "server_lists", None)
        if not isinstance(lists, ServerLists):
            lists = ServerLists(server_home(settings))
            setattr(state, "server_lists", lists)  # noqa: B010 - Starlette's State is dynamic
        return lists
