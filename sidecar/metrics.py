"""Prometheus metrics of one sidecar daemon (its own registry: no global default registry).

Names start with ``marathon_sidecar_``. The daemon and the source update them (the ``record_*``
and ``sync_*`` methods turn the daemon's facts into gauge and counter values); the status server
exposes them on ``/metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sidecar.model_figures import ServedModel

PREFIX = "marathon_sidecar_"
# where the running HAProxy came from (sidecar.haproxy.process.ORIGIN_*)
HAPROXY_ORIGINS = ("started", "adopted", "external")
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

if TYPE_CHECKING:
    from sidecar.apply.results import ApplyCounters
    from sidecar.catalog import Catalog
    from sidecar.fd_budget import FdBudget
    from sidecar.haproxy_model import HAProxyModel

__all__ = ["CONTENT_TYPE_LATEST", "FollowerMetrics", "SidecarMetrics"]

SERVER_STATUSES = ("up", "down", "drain", "maint")


class FollowerMetrics:
    """Following Marathon: the collectors the follower updates, and the sync age.

    The sidecar's and the publisher's metrics both start with these, under their own prefix.
    """

    def __init__(
        self,
        prefix: str,
        registry: Optional[CollectorRegistry] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._last_sync: Optional[float] = None
        r = self.registry
        p = prefix
        self.last_sync_timestamp = Gauge(
            p + "last_sync_timestamp_seconds",
            "Wall-clock time of the last successful Marathon snapshot or event (0: never)",
            registry=r,
        )
        self.sync_age = Gauge(
            p + "sync_age_seconds",
            "Seconds since the last successful Marathon sync (-1: never)",
            registry=r,
        )
        self.sync_age.set_function(self._sync_age)
        self.events = Counter(
            p + "marathon_events", "Marathon events received, by type", ["type"], registry=r
        )
        self.resyncs = Counter(
            p + "marathon_resyncs",
            "Full Marathon snapshots taken, by reason",
            ["reason"],
            registry=r,
        )
        self.snapshot_apps_fetched = Counter(
            p + "marathon_app_fetches", "Single apps re-read from Marathon", registry=r
        )
        self.marathon_errors = Counter(
            p + "marathon_errors",
            "Failed or rejected Marathon answers (the last good state stays), by kind",
            ["kind"],
            registry=r,
        )
        self.stream_connects = Counter(
            p + "marathon_stream_connects", "Event stream (re)connections", registry=r
        )
        self.poll_mode = Gauge(
            p + "marathon_poll_mode", "1 while following Marathon by polling", registry=r
        )

    def record_sync(self, at: Optional[float] = None) -> None:
        now = self._clock() if at is None else at
        self._last_sync = now
        self.last_sync_timestamp.set(now)

    @property
    def last_sync(self) -> Optional[float]:
        return self._last_sync

    def _sync_age(self) -> float:
        if self._last_sync is None:
            return -1.0
        return max(0.0, self._clock() - self._last_sync)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


class SidecarMetrics(FollowerMetrics):
    """Every collector of the sidecar, registered on a registry owned by this object."""

    def __init__(
        self,
        registry: Optional[CollectorRegistry] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(PREFIX, registry, clock)
        self._seen_counters: dict[str, int] = {}  # the applier's totals already counted
        r = self.registry
        p = PREFIX
        self.reloads = Counter(p + "haproxy_reloads", "HAProxy reloads done", registry=r)
        self.reload_failures = Counter(
            p + "haproxy_reload_failures", "HAProxy reloads that failed", registry=r
        )
        self.validation_failures = Counter(
            p + "haproxy_validation_failures",
            "Candidate configs that haproxy -c refused",
            registry=r,
        )
        self.apply_failures = Counter(
            p + "apply_failures", "Applies that raised an error", registry=r
        )
        self.runtime_ops = Counter(
            p + "haproxy_runtime_ops",
            "HAProxy runtime API changes, by operation",
            ["op"],
            registry=r,
        )
        self.haproxy_restarts = Counter(
            p + "haproxy_restarts", "HAProxy (re)starts by the sidecar", registry=r
        )
        self.haproxy_up = Gauge(p + "haproxy_up", "1 while HAProxy runs", registry=r)
        self.haproxy_origin = Gauge(
            p + "haproxy_origin",
            "1 for where the running HAProxy came from: started, adopted (left by an earlier "
            "sidecar run) or external",
            ["origin"],
            registry=r,
        )
        self.set_haproxy_origin(None)
        self.old_workers = Gauge(
            p + "haproxy_old_workers", "Old HAProxy workers still finishing connections", registry=r
        )
        self.services = Gauge(p + "services", "Service ports served", registry=r)
        self.servers = Gauge(
            p + "servers", "Servers in the running config, by state", ["state"], registry=r
        )
        self.haproxy_servers = Gauge(
            p + "haproxy_servers",
            "Servers as HAProxy sees them (show servers state), by status: up, down, drain, maint",
            ["status"],
            registry=r,
        )
        self.tasks_out = Gauge(
            p + "tasks_out_of_rotation", "Known tasks not taking traffic", registry=r
        )
        self.skipped_apps = Gauge(
            p + "skipped_apps", "Apps or ports left out of the config (bad labels...)", registry=r
        )
        self.label_problems = Gauge(
            p + "label_problems",
            "Labels not (fully) honored: bad values, raw templates, unsupported marathon-lb labels",
            registry=r,
        )
        self._served = ServedModel()
        self._count_on_scrape()
        self.state_write_errors = Counter(
            p + "state_write_errors", "Failures writing the last-known-good state file", registry=r
        )
        self.dns_failures = Gauge(
            p + "dns_failures", "Host name lookups that failed so far", registry=r
        )
        self._add_timings()
        self._add_fd_budget()
        self._add_zookeeper()

    def _add_timings(self) -> None:
        """How long the sidecar's steps take, and the collector's pauses."""
        r = self.registry
        p = PREFIX
        self.render_seconds = Histogram(
            p + "render_duration_seconds",
            "Time to build the model and render haproxy.cfg",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.apply_seconds = Histogram(
            p + "apply_duration_seconds",
            "Time to validate and apply a config (reload or runtime API)",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.change_latency_seconds = Histogram(
            p + "change_to_haproxy_seconds",
            "From a catalog change reaching the sidecar to HAProxy running it (the first change "
            "of a coalesced burst; debounce, build and apply)",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.gc_pause_seconds = Histogram(
            p + "gc_pause_seconds",
            "Runs of Python's cyclic garbage collector, by generation (2: a full collection)",
            ["generation"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )

    def _add_fd_budget(self) -> None:
        """The descriptor budget's gauges (docs/operations.md, "Open files")."""
        r = self.registry
        p = PREFIX
        self.fd_limit = Gauge(
            p + "fd_limit", "Hard open-files limit HAProxy runs under (NaN: unknown)", registry=r
        )
        self.fd_limit.set(float("nan"))
        self.fd_needed = Gauge(
            p + "fd_needed",
            "Open files HAProxy needs for the whole catalog at the effective maxconn (above "
            "fd_limit: checks or listeners were given up to fit)",
            registry=r,
        )
        self.maxconn_wanted = Gauge(
            p + "maxconn_wanted", "HAProxy's global maxconn asked for (--maxconn)", registry=r
        )
        self.maxconn_effective = Gauge(
            p + "maxconn_effective",
            "HAProxy's global maxconn in the running config (lowered to fit fd_limit)",
            registry=r,
        )

    def _add_zookeeper(self) -> None:
        """The collectors of ``--source zookeeper`` (registered in either mode, like the rest)."""
        r = self.registry
        p = PREFIX
        self.zookeeper_connected = Gauge(
            p + "zookeeper_connected", "1 while the ZooKeeper session is connected", registry=r
        )
        self.zookeeper_session_losses = Counter(
            p + "zookeeper_session_losses",
            "ZooKeeper sessions lost (expired); every watch is set again on the next",
            registry=r,
        )
        self.zookeeper_heartbeat_age = Gauge(
            p + "zookeeper_publisher_heartbeat_age_seconds",
            "Age of the leading publisher's heartbeat as last seen (-1: none seen)",
            registry=r,
        )
        self.zookeeper_heartbeat_age.set(-1)
        self.zookeeper_updates = Counter(
            p + "zookeeper_service_updates", "Changed services read from ZooKeeper", registry=r
        )
        self.zookeeper_problems = Gauge(
            p + "zookeeper_problems",
            "Entries read from ZooKeeper that were skipped or not honored (bad JSON, names or "
            "options; services without options)",
            registry=r,
        )

    def set_haproxy_origin(self, origin: Optional[str]) -> None:
        """1 for ``origin`` (None: no HAProxy runs), 0 for the others."""
        for known in HAPROXY_ORIGINS:
            self.haproxy_origin.labels(origin=known).set(1 if known == origin else 0)

    def sync_apply_counters(self, counters: ApplyCounters) -> None:
        """Add what the applier counted since the last call to the Prometheus counters."""
        ops = self.runtime_ops
        totals: tuple[tuple[str, int, Counter], ...] = (
            ("reloads", counters.reloads, self.reloads),
            ("reload_failures", counters.reload_failures, self.reload_failures),
            ("validation_failures", counters.validation_failures, self.validation_failures),
            ("starts", counters.starts, self.haproxy_restarts),
            ("runtime_ops", counters.runtime_ops, ops.labels(op="server")),
            ("runtime_failures", counters.runtime_failures, ops.labels(op="failed")),
            ("servers_deleted", counters.servers_deleted, ops.labels(op="delete")),
            ("servers_tombstoned", counters.servers_tombstoned, ops.labels(op="tombstone")),
        )
        for name, value, counter in totals:
            delta = value - self._seen_counters.get(name, 0)
            self._seen_counters[name] = value
            if delta > 0:
                counter.inc(delta)
        self.old_workers.set(counters.old_workers)

    def record_model(self, model: HAProxyModel, catalog: Catalog) -> None:
        """What the running config serves, and the catalog's instances out of rotation (counted
        when /metrics is read: :mod:`sidecar.model_figures`)."""
        self._served.set(model, catalog)

    def _count_on_scrape(self) -> None:
        figures = self._served.figures
        self.services.set_function(lambda: figures().services)
        self.servers.labels(state="ready").set_function(lambda: figures().ready)
        self.servers.labels(state="drain").set_function(lambda: figures().drain)
        self.skipped_apps.set_function(lambda: figures().skipped)
        self.label_problems.set_function(lambda: figures().problems)
        self.tasks_out.set_function(lambda: figures().tasks_out)

    def observe_gc_pause(self, generation: int, seconds: float) -> None:
        self.gc_pause_seconds.labels(generation=str(generation)).observe(seconds)

    def record_budget(self, budget: FdBudget) -> None:
        """The descriptor budget of the running config (sidecar.fd_budget)."""
        self.fd_limit.set(float("nan") if budget.limit is None else budget.limit)
        self.fd_needed.set(budget.needed)
        self.maxconn_wanted.set(budget.wanted)
        self.maxconn_effective.set(budget.effective)

    def record_haproxy_servers(self, statuses: Mapping[tuple[str, str], str]) -> None:
        """HAProxy's own view: (backend, server) -> up/down/drain/maint, counted by status."""
        counts = dict.fromkeys(SERVER_STATUSES, 0)
        for status in statuses.values():
            counts[status] = counts.get(status, 0) + 1
        for status, count in counts.items():
            self.haproxy_servers.labels(status=status).set(count)
