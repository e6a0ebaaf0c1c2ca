"""marathon-publisher's daemon: stands by, or leads and keeps ZooKeeper equal to Marathon's catalog.

One kazoo client carries the session, the election and every write (:class:`Publisher`). Marathon
is followed only while this publisher leads: when a term begins (:meth:`term_began`, before the
term writes anything) the daemon reads back the catalog the publishers wrote before
(:mod:`publisher.seed`), hands it to a fresh Marathon source as its seed (the "in rotation
before" memory, and the catalog an empty Marathon answer is compared with) and starts the source;
when the term ends (:meth:`term_ended`) it stops the source, which closes every Marathon
connection. A standby holds none.

Each catalog the source accepts (the source's keeper has applied the shared rules: last known
good, an empty answer believed only once confirmed, only changes) goes through
:class:`~publisher.feed.CatalogSpecs` to the publisher, tagged with its term: a catalog that
arrives after its term ended is dropped. The last one is also saved to ``<state-dir>`` (the seed
when ZooKeeper holds none of ours, e.g. a new ensemble).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Optional

from kazoo.protocol.states import KazooState

from publisher.feed import CatalogSpecs, Published
from publisher.leadership import LEADER, Term
from publisher.metrics import PublisherFigures, PublisherMetrics
from publisher.publisher import Publisher
from publisher.seed import read_published
from publisher.settings import PublisherSettings
from publisher.status import HealthFacts, HealthReport, PublisherStatusServer, evaluate_health
from sidecar.catalog import Catalog
from sidecar.metrics import FollowerMetrics
from sidecar.sources.base import CatalogSource
from sidecar.state_store import StateStore, ThrottledSaver

log = logging.getLogger(__name__)

CONNECTING = "CONNECTING"  # before the first connection (kazoo says LOST)

SourceFactory = Callable[[FollowerMetrics], CatalogSource]


class _TermFeed:
    """The source's listener for one term (CatalogListener)."""

    def __init__(self, daemon: PublisherDaemon, term: Term) -> None:
        self.daemon = daemon
        self.term = term

    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        self.daemon.catalog_changed(self.term, catalog, reason)

    def source_problem(self, problem: Optional[str]) -> None:
        self.daemon.source_problem(self.term, problem)

    def source_contact(self) -> None:
        self.daemon.source_contact(self.term)


class PublisherDaemon:
    """Leader election, Marathon while leading, ZooKeeper writes, status (module doc)."""

    def __init__(
        self,
        settings: PublisherSettings,
        client: Any,
        make_source: SourceFactory,
        *,
        identifier: Optional[str] = None,
        state_store: Optional[StateStore] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.client = client
        self._make_source = make_source
        self._clock = clock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._source: Optional[CatalogSource] = None
        self._term: Optional[Term] = None
        self._term_started: Optional[float] = None
        self._last_sync: Optional[float] = None
        self._source_problem: Optional[str] = None
        self._published = Published()
        self._specs = CatalogSpecs()
        self._zk_state: str = KazooState.CONNECTED if client.connected else CONNECTING
        self._zk_since = clock()
        self._store = state_store
        self._saver = ThrottledSaver(state_store, self._saved) if state_store else None
        self.publisher = Publisher(client, settings.zk_path, identifier, terms=self)
        self.metrics = PublisherMetrics(self.figures)  # reads the publisher at registration
        self.server: Optional[PublisherStatusServer] = None

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Serve the status, connect to ZooKeeper (in the background), join the election."""
        self.server = PublisherStatusServer(
            self, self.settings.status_host, self.settings.status_port
        ).start()
        self.client.add_listener(self._zookeeper_state)
        self.client.start_async()
        self.publisher.start()
        log.info(
            "standing by",
            extra={"identifier": self.publisher.identifier, "status": self.server.port},
        )

    def run(self) -> int:
        """Until :meth:`stop`; returns the exit status."""
        self.start()
        while not self._stopping.wait(1.0):
            if self._saver is not None:
                self._saver.flush_if_due()
        self.shutdown()
        return 0

    def stop(self) -> None:
        self._stopping.set()

    def shutdown(self) -> None:
        """Leave the lead (the standby takes over at once), stop everything, close the session."""
        self.publisher.stop()
        self.client.remove_listener(self._zookeeper_state)
        self.client.stop()
        self.client.close()
        if self._saver is not None:
            self._saver.close()
        if self.server is not None:
            self.server.stop()
        log.info("stopped")

    def resync(self) -> None:
        """SIGHUP: a fresh Marathon snapshot, when leading."""
        with self._lock:
            source = self._source
        if source is not None:
            source.request_resync("requested")

    # --- terms (the publisher's TermListener, on the election thread) -------------------------

    def term_began(self, term: Term) -> None:
        seed = read_published(self.publisher.writer)
        origin = "ZooKeeper"
        if not len(seed) and self._store is not None:
            stored = self._store.load()
            if stored is not None:
                seed, origin = stored.catalog, stored.path
        source = self._make_source(self.metrics)
        if len(seed):
            source.seed(seed)
        with self._lock:
            self._term, self._source = term, source
            self._term_started, self._last_sync, self._source_problem = self._clock(), None, None
        log.info(
            "leading: following Marathon",
            extra={"fence": term.fence, "seed_services": len(seed), "seed_from": origin},
        )
        source.start(_TermFeed(self, term))

    def term_ended(self, term: Term) -> None:
        with self._lock:
            source, self._source = self._source, None
            self._term = self._term_started = self._last_sync = None
            self._published = Published()
        if source is not None:
            source.stop()
        self._specs = CatalogSpecs()
        self.metrics.forget_sync()
        log.info("standing by: no Marathon connection", extra={"reason": term.reason})

    # --- what the source tells (its own threads) ---------------------------------------------

    def catalog_changed(self, term: Term, catalog: Catalog, reason: str) -> None:
        if term.ended.is_set():
            return
        published = self._specs.publish(catalog)
        if not self.publisher.publish(published.specs, term, published.changes):
            return
        with self._lock:
            before, self._published = self._published, published
        if published.refused is not before.refused:
            for problem in set(published.refused) - set(before.refused):
                log.warning(
                    "service not published",
                    extra={"app_id": problem.app_id, "reason": problem.reason},
                )
        log.log(
            logging.DEBUG if reason.startswith("event") else logging.INFO,  # a storm: 100s a second
            "catalog handed to ZooKeeper",
            extra={"reason": reason, "services": len(published.specs)},
        )
        if self._saver is not None:
            self._saver.offer(catalog)

    def source_problem(self, term: Term, problem: Optional[str]) -> None:
        with self._lock:
            if term is self._term:
                self._source_problem = problem

    def source_contact(self, term: Term) -> None:
        with self._lock:
            if term is not self._term:
                return
            self._last_sync = self._clock()
        self.metrics.record_sync()

    # --- status ------------------------------------------------------------------------------

    def _zookeeper_state(self, state: str) -> None:
        """kazoo's connection thread: record only."""
        with self._lock:
            if state != self._zk_state:
                self._zk_state, self._zk_since = state, self._clock()

    def _saved(self, ok: bool) -> None:
        if not ok and self._store is not None:
            log.warning("last catalog not saved", extra={"error": self._store.last_error})

    def figures(self) -> PublisherFigures:
        counters = self.publisher.writer.counters
        with self._lock:
            published = self._published
        return PublisherFigures(
            leader=self.publisher.role == LEADER,
            leader_changes=self.publisher.leadership.changes,
            zookeeper_connected=bool(self.client.connected),
            transactions=counters.transactions,
            created=counters.created,
            deleted=counters.deleted,
            options_set=counters.options_set,
            conflicts=counters.conflicts,
            services=len(published.specs),
            instances=published.instances,
            refused_services=len(published.refused) + len(counters.problems),
            skipped_apps=len(published.skipped),
            label_problems=len(set(published.problems)),
        )

    def metrics_text(self) -> bytes:
        return self.metrics.render()

    def health(self) -> tuple[HealthReport, dict[str, Any]]:
        now = self._clock()
        role = self.publisher.role
        with self._lock:
            source, published = self._source, self._published
            zk_state, zk_since = self._zk_state, self._zk_since
            term_started, last_sync = self._term_started, self._last_sync
            problems = tuple(p for p in (self._source_problem, self.publisher.last_error) if p)
        facts = HealthFacts(
            now, role, zk_state, zk_since, self.settings.max_sync_age, term_started, last_sync,
            problems,
        )  # fmt: skip
        report = evaluate_health(facts)
        marathon = None
        if source is not None:
            found = source.health()
            marathon = {"mode": found.mode, "connected": found.connected, "synced": found.synced}
        document = {
            "status": report.status,
            "reasons": list(report.reasons),
            "role": role,
            "identifier": self.publisher.identifier,
            "sync_age_seconds": None if report.sync_age is None else round(report.sync_age, 3),
            "zookeeper": {
                "state": zk_state,
                "since_seconds": round(now - zk_since, 3),
                "servers": list(self.settings.zookeeper),
                "zk_path": self.settings.zk_path,
            },
            "marathon": marathon,
            "catalog": {
                "services": len(published.specs),
                "instances": published.instances,
                "written": self.publisher.written(),
                **published.report(),
                "unwritable": dict(self.publisher.writer.counters.problems),
            },
            "leader_changes": self.publisher.leadership.changes,
            "last_error": problems[-1] if problems else None,
        }
        return report, document
