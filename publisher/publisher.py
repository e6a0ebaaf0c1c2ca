"""The publisher: the wanted catalog in, ZooKeeper kept equal to it while this one leads.

`publish(catalog)` hands over the whole wanted catalog (service -> ServiceSpec) and returns at
once; the leading loop writes the latest one. Before the first `publish` a leader writes nothing:
a publisher that has not yet heard from Marathon must not empty the catalog. Standbys keep the
latest catalog too, so a standby that wins the election writes at once.

With `terms` (a TermListener, what marathon-publisher uses) the catalog belongs to one term
instead: `term_began(term)` is called when a term begins, before anything is written (the
command starts following Marathon there), `term_ended(term)` when it is over (it stops). A
catalog is accepted only with the term it was made for (`publish(catalog, term)`), and is dropped
when that term ends: a publisher that leads again writes nothing until it has heard from Marathon
again, never a catalog from before it lost the lead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional, Protocol

import orjson
from kazoo.exceptions import KazooException

from publisher.leadership import Leadership, Term
from publisher.plan import MAX_TRANSACTION_BYTES, ServiceSpec
from publisher.writer import CatalogWriter, Conflict, Deposed
from sidecar.changes import Changes
from sidecar.persistent_map import ShardedMap
from sidecar.sources.zookeeper import layout

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 5.0
RETRY_PAUSE = 0.2


class TermListener(Protocol):
    """Told when this publisher's terms as leader begin and end (on the election thread)."""

    def term_began(self, term: Term) -> None:
        """Before the term writes anything; raising ends the term."""

    def term_ended(self, term: Term) -> None: ...


# the wanted catalog (None: only a heartbeat is due) and its changes, its number, whether to read
# everything first, whether a heartbeat is due
_Work = tuple[Optional[Mapping[str, ServiceSpec]], Optional[Changes], int, bool, bool]


def default_identifier() -> str:
    """`<host>:<pid>`, stored in the lock node and the heartbeat."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Publisher:
    """Leader-elected catalog writer over one kazoo client."""

    def __init__(
        self,
        client: Any,
        zk_path: str = layout.DEFAULT_ZK_PATH,
        identifier: Optional[str] = None,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        max_transaction_bytes: int = MAX_TRANSACTION_BYTES,
        on_role: Optional[Callable[[str], None]] = None,
        terms: Optional[TermListener] = None,
    ) -> None:
        self.client = client
        self.terms = terms
        self.identifier = identifier or default_identifier()
        self.heartbeat_interval = heartbeat_interval
        self.writer = CatalogWriter(client, zk_path, max_transaction_bytes)
        self._cond = threading.Condition()
        self._wanted: Optional[Mapping[str, ServiceSpec]] = None
        self._wanted_changes: Optional[Changes] = None
        self._version = 0
        self._written_version = -1
        self._term: Optional[Term] = None
        self.last_error: Optional[str] = None  # the last failed write, until one succeeds
        self.leadership = Leadership(
            client, layout.leader_path(zk_path), self.identifier, self._lead, self._wake, on_role
        )

    @property
    def role(self) -> str:
        """`leader` or `standby` (what /health says)."""
        return self.leadership.role

    def start(self) -> None:
        self.leadership.start()

    def stop(self) -> None:
        self.leadership.stop()

    def publish(
        self,
        catalog: Mapping[str, ServiceSpec],
        term: Optional[Term] = None,
        changes: Optional[Changes] = None,
    ) -> int:
        """Hand over the whole wanted catalog; returns its number (see `wait_written`).

        With `term`, the catalog is taken only while that term lasts (0 is returned otherwise).
        `changes` tags it with the services changed since earlier catalogs (`sidecar.changes`):
        the writer then looks at those only. A `ShardedMap` is kept as it is (it never changes),
        any other mapping is copied.
        """
        with self._cond:
            if term is not None and (term is not self._term or term.ended.is_set()):
                return 0
            self._wanted = ShardedMap.of(catalog)
            self._wanted_changes = changes
            self._version += 1
            self._cond.notify_all()
            return self._version

    def wait_written(self, number: int, timeout: Optional[float] = None) -> bool:
        """Wait until catalog `number` (or a later one) is in ZooKeeper, written by this one."""
        with self._cond:
            return self._cond.wait_for(lambda: self._written_version >= number, timeout)

    def written(self) -> bool:
        """The latest published catalog is in ZooKeeper (by this publisher, as leader)."""
        with self._cond:
            return self._written_version == self._version and self._wanted is not None

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _lead(self, term: Term) -> None:
        with self._cond:
            self._term = term
        try:
            if self.terms is not None:
                self.terms.term_began(term)
            self._write_while_leading(term)
        finally:
            with self._cond:
                self._term = None
                self.last_error = None  # a standby reports no write error of its old term
                if self.terms is not None:
                    self._wanted, self._wanted_changes = None, None
            if self.terms is not None:
                self.terms.term_ended(term)

    def _write_while_leading(self, term: Term) -> None:
        next_heartbeat = 0.0
        prepared = False
        while not term.ended.is_set():
            work = self._next_work(term, next_heartbeat)
            if work is None:
                continue
            wanted, changes, version, full, heartbeat_due = work
            try:
                if not prepared:
                    self.writer.prepare()
                    prepared = True
                if wanted is not None:
                    self.writer.sync(wanted, term.fence, full, changes)
                    self.last_error = None
                    self._mark_written(version)
                if heartbeat_due:
                    next_heartbeat = time.monotonic() + self.heartbeat_interval
                    self.writer.write_heartbeat(self._heartbeat(wanted), term.fence)
            except Deposed as exc:
                term.end(str(exc))
            except (KazooException, Conflict) as exc:
                self.last_error = f"ZooKeeper write failed: {exc!r}"[:300]
                term.resync = True
                prepared = False
                log.warning("write failed; will read again", extra={"error": repr(exc)})
                term.ended.wait(RETRY_PAUSE)  # pacing retries against a failing ensemble

    def _mark_written(self, version: int) -> None:
        with self._cond:
            self._written_version = version
            self._cond.notify_all()

    def _next_work(self, term: Term, next_heartbeat: float) -> Optional[_Work]:
        """What the leading loop does next, or None after waiting for a reason to act."""
        with self._cond:
            now = time.monotonic()
            if term.ended.is_set():
                return None
            if not self.client.connected:
                self._cond.wait(1.0)
                return None
            wanted = self._wanted
            dirty = wanted is not None and (term.resync or self._version != self._written_version)
            heartbeat_due = now >= next_heartbeat
            if not dirty and not heartbeat_due:
                self._cond.wait(max(0.0, next_heartbeat - now))
                return None
            full = dirty and term.resync
            if dirty:
                term.resync = False
            changes = self._wanted_changes if dirty else None
            return (wanted if dirty else None, changes, self._version, full, heartbeat_due)

    def _heartbeat(self, wanted: Optional[Mapping[str, ServiceSpec]]) -> bytes:
        catalog = wanted if wanted is not None else self._wanted or {}
        return orjson.dumps(
            {
                "leader": self.identifier,
                "time": round(time.time(), 3),
                "services": len(catalog),
                "instances": sum(len(spec.instances) for spec in catalog.values()),
            }
        )

    def stats(self) -> dict[str, Any]:
        """Figures for /health and /metrics."""
        counters = self.writer.counters
        return {
            "role": self.role,
            "leadership_changes": self.leadership.changes,
            "transactions": counters.transactions,
            "created": counters.created,
            "deleted": counters.deleted,
            "options_set": counters.options_set,
            "conflicts": counters.conflicts,
            "problems": dict(counters.problems),
        }
