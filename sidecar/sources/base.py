"""The one interface the daemon knows a catalog source by, and the rules every source shares.

A source (:class:`CatalogSource`) keeps a :class:`~sidecar.catalog.Catalog` in step with where
services are described (Marathon today) and hands every new catalog to a
:class:`CatalogListener`. The rules that hold whatever the source are implemented once, in
:class:`CatalogKeeper`, which every source uses between its own reading and the listener:

- **last known good**: a failure (unreachable, an error answer, data that cannot be read) never
  replaces the catalog; the source retries with exponential backoff (:meth:`CatalogKeeper.failed`)
  and the problem is reported, then cleared on the next success;
- **an empty catalog after a non-empty one is suspicious** (a source that lost its data, an auth
  plugin hiding everything, a proxy answering in its place): a full snapshot with no services is
  believed only when every snapshot during ``empty_confirm`` seconds (at least two) says so.
  Services removed one by one (incremental changes) are not subject to this rule;
- **publish only changes**: a snapshot equal to the catalog already published reaches nobody.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Protocol

from sidecar.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceHealth:
    """How a source is doing, for ``/health`` and the status page (monotonic times)."""

    name: str  # "Marathon"
    mode: str  # how it follows the source, e.g. "stream", "poll"
    connected: bool  # a live link that would bring changes (stream open, session alive)
    synced: bool  # a catalog came from the source itself (not only one loaded from disk)
    last_contact: Optional[float]  # last good answer or sign of life
    last_error: Optional[str]
    details: Mapping[str, Any] = field(default_factory=dict)  # the source's own figures (JSON)


class CatalogListener(Protocol):
    """What a source tells the daemon (called from the source's own threads)."""

    def catalog_changed(self, catalog: Catalog, reason: str) -> None: ...

    def source_problem(self, problem: Optional[str]) -> None:
        """A problem to show (``None``: the last one is over)."""

    def source_contact(self) -> None:
        """The source answered: a good snapshot or a sign of life."""


class CatalogSource(Protocol):
    """Where the catalog comes from. One object per daemon; thread-safe."""

    @property
    def name(self) -> str: ...

    @property
    def catalog(self) -> Optional[Catalog]:
        """The newest catalog accepted (or seeded); ``None`` before any."""

    def start(self, listener: CatalogListener) -> None:
        """Begin following; new catalogs go to ``listener`` from the source's threads."""

    def stop(self) -> None: ...

    def snapshot_once(self) -> Catalog:
        """One full read, no threads (``--once``); raises on any failure."""

    def request_resync(self, reason: str) -> None:
        """Take a full snapshot soon (SIGHUP, or the daemon has a reason to doubt)."""

    def seed(self, catalog: Catalog) -> None:
        """Start from a catalog loaded from disk: its verdicts count as "in rotation before",
        and an empty first snapshot has to be confirmed against it."""

    def health(self) -> SourceHealth: ...


class _NoListener:
    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        pass

    def source_problem(self, problem: Optional[str]) -> None:
        pass

    def source_contact(self) -> None:
        pass


class CatalogKeeper:
    """The shared rules (module doc) between a source's reading and the daemon. Thread-safe."""

    def __init__(
        self,
        name: str,
        *,
        empty_confirm: float = 5.0,
        retry_backoff: float = 0.5,
        max_retry_backoff: float = 10.0,
        on_suspicious_empty: Optional[Callable[[], None]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.empty_confirm = empty_confirm
        self.retry_backoff = retry_backoff
        self.max_retry_backoff = max_retry_backoff
        self._on_suspicious_empty = on_suspicious_empty
        self._clock = clock
        self._lock = threading.Lock()
        self._listener: CatalogListener = _NoListener()
        self._catalog: Optional[Catalog] = None
        self._synced = False
        self._empty_since: Optional[float] = None
        self._empty_count = 0
        self.failures = 0
        self.last_sync: Optional[float] = None  # monotonic time of the last good snapshot
        self.last_error: Optional[str] = None

    def attach(self, listener: CatalogListener) -> None:
        self._listener = listener

    @property
    def catalog(self) -> Optional[Catalog]:
        return self._catalog

    @property
    def synced(self) -> bool:
        """Whether a snapshot from the source itself was accepted (a seed is not one)."""
        return self._synced

    def seed(self, catalog: Catalog) -> None:
        with self._lock:
            self._catalog = catalog

    # --- what a source offers ---------------------------------------------------------------
    def offer_snapshot(self, catalog: Catalog, reason: str) -> Optional[float]:
        """A full, good read of the source. ``None``: accepted (published when it changed);
        else it is held back as a suspicious empty one: snapshot again in that many seconds."""
        with self._lock:
            hold = self._suspicious_empty(catalog)
            if hold is not None:
                return hold
            unchanged = self._synced and catalog == self._catalog
            self._catalog = catalog
            self._synced = True
            self.failures = 0
            self.last_sync = self._clock()
            self.last_error = None
        self._listener.source_problem(None)
        self._listener.source_contact()
        if not unchanged:
            self._publish(catalog, f"snapshot ({reason})")
        return None

    def offer_change(self, catalog: Catalog, reason: str) -> None:
        """An incremental change on top of an accepted snapshot (no empty rule)."""
        with self._lock:
            if catalog is self._catalog:
                return
            self._catalog = catalog
        self._publish(catalog, reason)

    def failed(self, message: str, kind: str) -> float:
        """A read failed: report it, keep the catalog; returns the backoff before a retry."""
        with self._lock:
            self.failures += 1
        self.report_error(message, kind)
        return self.backoff()

    def report_error(self, message: str, kind: str) -> None:
        """Something went wrong without counting as a failed snapshot (e.g. one app's read)."""
        self.last_error = message[:300]
        self._listener.source_problem(
            f"{self.name}: {self.last_error}; keeping the last good state"
        )
        log.warning(
            "%s failed; keeping the last good state",
            self.name,
            extra={"kind": kind, "error": self.last_error},
        )

    def backoff(self) -> float:
        exponent = min(max(self.failures - 1, 0), 20)
        return min(self.retry_backoff * (2**exponent), self.max_retry_backoff)

    # --- rules ------------------------------------------------------------------------------
    def _suspicious_empty(self, catalog: Catalog) -> Optional[float]:
        """Hold back an empty snapshot after a non-empty catalog (see the module doc)."""
        previous = self._catalog
        if len(catalog) or previous is None or not len(previous):
            self._empty_since, self._empty_count = None, 0
            return None
        now = self._clock()
        if self._empty_since is None:
            self._empty_since = now
        self._empty_count += 1
        if now - self._empty_since >= self.empty_confirm and self._empty_count >= 2:
            log.warning("%s keeps answering with no services: believing it", self.name)
            self._empty_since, self._empty_count = None, 0
            return None
        if self._on_suspicious_empty is not None:
            self._on_suspicious_empty()
        self._listener.source_problem(
            f"{self.name} answered with no services while {len(previous)} were known: "
            "keeping them until confirmed"
        )
        log.warning(
            "empty catalog after a non-empty one; keeping the last good state",
            extra={"source": self.name, "known_services": len(previous)},
        )
        return max(self.empty_confirm / 3, 0.1)

    def _publish(self, catalog: Catalog, reason: str) -> None:
        try:
            self._listener.catalog_changed(catalog, reason)
        except Exception:
            log.exception("catalog listener failed")
