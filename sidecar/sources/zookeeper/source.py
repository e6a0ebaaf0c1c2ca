"""ZooKeeper as a :class:`~sidecar.sources.base.CatalogSource`: the watched catalog, no Marathon.

Where each rule lives (one place each):

- **keep the previous instances when a service's list comes back empty**: the watcher, per
  service (:mod:`.update`; synapse's ``use_previous_backends``). A deleted service node is
  believed.
- **an empty catalog after a non-empty one needs confirmation**: the
  :class:`~sidecar.sources.base.CatalogKeeper`, as for every source. Every catalog this source
  builds is complete, so each one is offered as a snapshot; one the keeper holds back is offered
  again until the keeper believes it or something else arrives.
- **through SUSPENDED and LOST nothing changes**: the watcher delivers nothing while the session
  is away, so the last catalog stays; kazoo's recipes read again once connected (a new session
  included) and only differences are delivered.

Threads: the watcher's worker calls :meth:`_on_update` per changed service and :meth:`_on_batch`
once per batch; the batch becomes one catalog, made copy-on-write from the one before by the
services it changed (:class:`.translate.Assembly`), so unchanged services keep their very objects
and the catalog is tagged with the changed keys: the sidecar's pipeline looks at those only. A
monitor thread turns the connection state and the publisher's heartbeat into ``/health``
reasons every second and offers a held-back empty catalog again when due. Nothing here ever
writes to ZooKeeper.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState
from kazoo.retry import KazooRetry

from marathon_bridge.errors import MarathonBridgeError
from sidecar.catalog import Catalog, ServiceOptions
from sidecar.metrics import SidecarMetrics
from sidecar.sources.base import CatalogKeeper, CatalogListener, SourceHealth

from . import health as zk_health
from . import layout
from .heartbeat import HeartbeatWatch
from .local_services import LocalService
from .translate import Assembly, ServiceEntry, assemble, service_entry
from .update import ServiceUpdate
from .watcher import CatalogWatcher

log = logging.getLogger(__name__)

NAME = "ZooKeeper"
MONITOR_INTERVAL = 1.0
SESSION_TIMEOUT = 10.0  # asked for; the servers clamp it to 2-20 ticks
RECONNECT_MAX_DELAY = 2.0  # kazoo's default backoff grows to an hour


class ZooKeeperUnavailable(MarathonBridgeError):
    """ZooKeeper could not be read in time (``--once``)."""


def make_client(hosts: Sequence[str], session_timeout: float = SESSION_TIMEOUT) -> KazooClient:
    """A kazoo client that keeps reconnecting every few seconds, forever."""
    retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=RECONNECT_MAX_DELAY)
    return KazooClient(hosts=",".join(hosts), timeout=session_timeout, connection_retry=retry)


class _Relay:
    """Between the keeper and the daemon: the keeper's problem and the source's own (connection,
    heartbeat) reach the daemon as one reason, sent only when it changes."""

    def __init__(self) -> None:
        self.listener: Optional[CatalogListener] = None
        self._lock = threading.Lock()
        self._keeper: Optional[str] = None
        self._own: tuple[str, ...] = ()
        self._sent: Optional[str] = None

    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        if self.listener is not None:
            self.listener.catalog_changed(catalog, reason)

    def source_contact(self) -> None:
        if self.listener is not None:
            self.listener.source_contact()

    def source_problem(self, problem: Optional[str]) -> None:
        with self._lock:
            self._keeper = problem
        self._send()

    def set_own(self, problems: Sequence[str]) -> None:
        with self._lock:
            self._own = tuple(problems)
        self._send()

    def _send(self) -> None:
        with self._lock:
            parts = [p for p in (self._keeper, *self._own) if p]
            text = "; ".join(parts) if parts else None
            if text == self._sent or self.listener is None:
                return
            self._sent = text
            self.listener.source_problem(text)  # the daemon's board: never calls back


class ZooKeeperSource:
    """Watches the catalog under ``zk_path`` and publishes catalogs (module doc)."""

    def __init__(
        self,
        hosts: Sequence[str],
        zk_path: str = layout.DEFAULT_ZK_PATH,
        *,
        local_services: Sequence[LocalService] = (),
        metrics: Optional[SidecarMetrics] = None,
        empty_confirm: float = 5.0,
        keep_on_empty: bool = True,
        connect_timeout: float = 15.0,
        heartbeat_stale: float = zk_health.DEFAULT_STALE_AFTER,
        client_factory: Callable[[Sequence[str]], Any] = make_client,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hosts = tuple(hosts)
        self.zk_path = layout.check_zk_path(zk_path)
        self.local: dict[str, ServiceOptions] = {s.name: s.options for s in local_services}
        self.metrics = metrics if metrics is not None else SidecarMetrics()
        self.keep_on_empty = keep_on_empty
        self.connect_timeout = connect_timeout
        self.heartbeat_stale = heartbeat_stale
        self._client_factory = client_factory
        self._clock = clock
        self._relay = _Relay()
        self.keeper = CatalogKeeper(NAME, empty_confirm=empty_confirm, clock=clock)
        self.keeper.attach(self._relay)
        self.client: Any = None
        self.watcher: Optional[CatalogWatcher] = None
        self.heartbeat: Optional[HeartbeatWatch] = None
        self._assembly = Assembly()
        self._pending: dict[str, ServiceUpdate] = {}
        self._bad_names: dict[str, str] = {}  # znodes that are no service names -> why
        self._offer_lock = threading.Lock()
        self._latest: Optional[Catalog] = None  # the newest catalog built
        self._reoffer_at: Optional[float] = None  # a held-back empty catalog is offered again
        self._state = zk_health.CONNECTING
        self._state_since = clock()
        self._left_connected_at: Optional[float] = None
        self.session_losses = 0
        self._logged_state = zk_health.CONNECTING  # the monitor's: what it logged and counted
        self._counted_losses = 0
        self._stop = threading.Event()
        self._wake = threading.Event()  # the monitor reports at once (a state change)
        self._monitor: Optional[threading.Thread] = None

    # --- CatalogSource ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return NAME

    @property
    def catalog(self) -> Optional[Catalog]:
        return self.keeper.catalog

    def start(self, listener: CatalogListener) -> None:
        """Connect in the background (never blocks: ZooKeeper may be down) and watch."""
        self._relay.listener = listener
        self.client = self._client_factory(self.hosts)
        self.watcher = CatalogWatcher(
            self.client,
            self.zk_path,
            self._on_update,
            keep_on_empty=self.keep_on_empty,
            on_batch=self._on_batch,
        )
        self.heartbeat = HeartbeatWatch(
            self.client, layout.heartbeat_path(self.zk_path), clock=self._clock
        )
        self.client.add_listener(self._on_state)  # before connecting: no state change missed
        self.client.start_async()
        self.watcher.start()
        self.heartbeat.start()
        self._monitor = threading.Thread(target=self._watch_health, name="zookeeper-health")
        self._monitor.daemon = True
        self._monitor.start()
        log.info(
            "watching ZooKeeper", extra={"zookeeper": ",".join(self.hosts), "path": self.zk_path}
        )

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self._monitor is not None:
            self._monitor.join(5)
        if self.client is not None:
            self.client.remove_listener(self._on_state)
            self.client.stop()
            self.client.close()

    def snapshot_once(self) -> Catalog:
        """Connect, read everything once (``--once``), disconnect; raises on any failure."""
        client = self._client_factory(self.hosts)
        hosts = ",".join(self.hosts)
        try:
            if not client.start_async().wait(self.connect_timeout) or not client.connected:
                raise ZooKeeperUnavailable(
                    f"ZooKeeper {hosts}: no connection within {self.connect_timeout:.0f} s"
                )
            watcher = CatalogWatcher(client, self.zk_path, _ignore, self.keep_on_empty)
            watcher.start()
            try:
                if not watcher.wait_synced(self.connect_timeout):
                    raise ZooKeeperUnavailable(
                        f"ZooKeeper {hosts}: {self.zk_path} not read within "
                        f"{self.connect_timeout:.0f} s"
                    )
                updates = sorted(watcher.snapshot().items())
            finally:
                watcher.stop()
        finally:
            client.stop()
            client.close()
        return assemble((name, service_entry(u, self.local)) for name, u in updates)

    def request_resync(self, reason: str) -> None:
        """The watches are live, there is nothing to read again: offer the newest catalog (a
        held-back empty one counts as seen once more)."""
        log.info("resync asked for: the ZooKeeper watches are live", extra={"reason": reason})
        with self._offer_lock:
            if self._latest is not None:
                self._offer(self._latest, reason)

    def seed(self, catalog: Catalog) -> None:
        self.keeper.seed(catalog)

    def health(self) -> SourceHealth:
        facts = self._facts()
        connected = facts.state == zk_health.CONNECTED
        return SourceHealth(
            name=NAME,
            mode="watch",
            connected=connected,
            synced=self.keeper.synced,
            last_contact=facts.now if connected else self._left_connected_at,
            last_error=self.keeper.last_error,
            details=zk_health.details(facts),
        )

    # --- the watcher's callbacks (its worker thread) -----------------------------------------
    def _on_update(self, update: ServiceUpdate) -> None:
        self._pending[update.service] = update
        self.metrics.zookeeper_updates.inc()

    def _on_batch(self) -> None:
        watcher = self.watcher
        if watcher is None or not watcher.synced:
            return  # the first catalog is the whole first read
        bad_names = dict(watcher.problems)  # replaced, never changed, by the worker
        if not self._pending and self._latest is not None and bad_names == self._bad_names:
            return
        self._bad_names = bad_names
        changed = sorted(self._pending)
        entries: dict[str, Optional[ServiceEntry]] = {}
        for name in changed:
            update = self._pending[name]
            previous = self._assembly.entry(name)
            entries[name] = service_entry(update, self.local, previous) if update.exists else None
        self._pending.clear()
        catalog = self._assembly.update(entries, bad_names)
        self.metrics.zookeeper_problems.set(len(catalog.problems) + len(catalog.skipped))
        first = self._latest is None
        reason = "first read" if first else _describe(changed)
        with self._offer_lock:
            self._latest = catalog
            self._offer(catalog, reason)

    def _offer(self, catalog: Catalog, reason: str) -> None:
        """Hand a catalog to the keeper (the offer lock is held)."""
        hold = self.keeper.offer_snapshot(catalog, f"zookeeper: {reason}")
        self._reoffer_at = None if hold is None else self._clock() + hold

    # --- kazoo's connection thread: record and wake the monitor, never block ------------------
    def _on_state(self, state: str) -> None:
        now = self._clock()
        previous = self._state
        if state == previous:
            return
        if previous == zk_health.CONNECTED:
            self._left_connected_at = now
        if state == KazooState.LOST:
            self.session_losses += 1
        self._state, self._state_since = state, now
        self._wake.set()

    # --- the monitor thread ------------------------------------------------------------------
    def _watch_health(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(MONITOR_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._report_health()
                self._offer_again_if_due()
            except Exception:
                log.exception("ZooKeeper health check failed")

    def _report_health(self) -> None:
        facts = self._facts()
        if facts.state != self._logged_state:
            _log_state(facts.state, self.hosts)
            self._logged_state = facts.state
        if facts.session_losses > self._counted_losses:
            self.metrics.zookeeper_session_losses.inc(facts.session_losses - self._counted_losses)
            self._counted_losses = facts.session_losses
        self._relay.set_own(zk_health.problems(facts))
        self.metrics.zookeeper_connected.set(1 if facts.state == zk_health.CONNECTED else 0)
        age = facts.heartbeat_age
        self.metrics.zookeeper_heartbeat_age.set(-1 if age is None else age)

    def _offer_again_if_due(self) -> None:
        with self._offer_lock:
            due = self._reoffer_at
            if due is not None and self._clock() >= due and self._latest is not None:
                self._offer(self._latest, "still empty")

    def _facts(self) -> zk_health.ZooKeeperFacts:
        beat = self.heartbeat.heartbeat if self.heartbeat is not None else None
        latest = self._latest
        skipped = len(latest.problems) + len(latest.skipped) if latest is not None else 0
        return zk_health.ZooKeeperFacts(
            now=self._clock(),
            hosts=",".join(self.hosts),
            state=self._state,
            state_since=self._state_since,
            synced=self.keeper.synced,
            heartbeat=beat,
            stale_after=self.heartbeat_stale,
            skipped_entries=skipped,
            session_losses=self.session_losses,
        )


def _ignore(update: ServiceUpdate) -> None:
    pass


def _log_state(state: str, hosts: Sequence[str]) -> None:
    level = logging.INFO if state == zk_health.CONNECTED else logging.WARNING
    what = {
        zk_health.CONNECTED: "ZooKeeper connected",
        zk_health.SUSPENDED: "ZooKeeper connection suspended: serving the last known catalog",
        zk_health.LOST: "ZooKeeper session lost: reconnecting, serving the last known catalog",
    }.get(state, f"ZooKeeper connection {state}")
    log.log(level, what, extra={"zookeeper": ",".join(hosts)})


def _describe(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    more = len(names) - limit
    return (shown + (f" and {more} more" if more > 0 else "")) or "no change"
