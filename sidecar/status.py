"""The status HTTP server: ``/``, ``/health``, ``/livez``, ``/readyz``, ``/metrics``, ``/config``,
``/services``.

:class:`StatusBoard` is the thread-safe place where the daemon posts what it knows (HAProxy up,
last sync, the running config, the current cluster state and model, problems); the server only
reads it. ``/livez`` and ``/readyz`` follow the rules of :mod:`sidecar.probes`. The health rule of
``/health``, kept for compatibility (:func:`evaluate_health`, pure):

- ``failing`` (HTTP 503): HAProxy is not running (or still starting: it may already accept
  connections, but the sidecar has not seen it ready); or nothing was ever synced from the catalog
  source (Marathon) nor loaded from disk; or the last successful sync (or the start, when serving
  a catalog loaded from disk) is older than the allowed age;
- ``degraded`` (HTTP 200): traffic is served, but something needs attention: serving the last
  known catalog from disk, the source failing since some time, a config HAProxy refused, an
  unwritable state directory...;
- ``ok`` (HTTP 200) otherwise.

The status page ``/`` is rendered by :mod:`sidecar.status_page` with one static CSS file from
``sidecar/static``; its traffic figures come from the poller (:mod:`sidecar.traffic_poller`),
which reads HAProxy's counters once per interval whatever the number of page views.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from .catalog import Catalog
from .fd_budget import FdBudget
from .haproxy_model import HAProxyModel
from .metrics import CONTENT_TYPE_LATEST, SidecarMetrics
from .probes import (
    HAPROXY_GRACE,
    LOOP_STALL_LIMIT,
    ProbeFacts,
    ProbeReport,
    evaluate_liveness,
    evaluate_readiness,
)
from .services_view import services_view
from .sources.base import SourceHealth
from .status_http import TEXT, StatusHandler, StatusHTTPServer
from .status_page import Listing, PageQuery, iso_time, parse_page_query, render_page, with_traffic
from .traffic import TrafficReader, TrafficSnapshot, busiest, matches

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class HealthFacts:
    """What the health rule looks at (monotonic times in seconds)."""

    now: float
    started_at: float
    haproxy_required: bool
    haproxy_running: bool
    last_sync: Optional[float]
    loaded_from_disk: Optional[str]  # when the state served came from disk: its save time
    max_sync_age: float
    problems: tuple[str, ...] = ()
    source: str = "Marathon"  # the catalog source's name, for the reasons
    haproxy_starting: bool = False  # the sidecar is starting HAProxy right now


@dataclass(frozen=True)
class HealthReport:
    status: str  # "ok" | "degraded" | "failing"
    reasons: tuple[str, ...]
    sync_age: Optional[float]
    haproxy_origin: Optional[str] = None  # "started" | "adopted" | "external" while it runs
    descriptors: Optional[Mapping[str, Any]] = None  # the open-files budget (FdBudget.as_dict)
    source: Optional[Mapping[str, Any]] = None  # source_view() of the catalog source

    @property
    def http_status(self) -> int:
        return 503 if self.status == "failing" else 200

    def as_dict(self) -> dict[str, Any]:
        age = None if self.sync_age is None else round(self.sync_age, 3)
        out: dict[str, Any] = {
            "status": self.status,
            "reasons": list(self.reasons),
            "sync_age_seconds": age,
            "haproxy_origin": self.haproxy_origin,
        }
        if self.descriptors is not None:  # once a config was applied
            out["descriptors"] = dict(self.descriptors)
        if self.source is not None:  # once the daemon posted it
            out["source"] = dict(self.source)
        return out


def evaluate_health(facts: HealthFacts) -> HealthReport:
    """The /health verdict (see the module doc)."""
    failing: list[str] = []
    degraded: list[str] = list(facts.problems)
    sync_age = None if facts.last_sync is None else max(0.0, facts.now - facts.last_sync)
    if facts.haproxy_required and not facts.haproxy_running:
        failing.append(
            "HAProxy is starting" if facts.haproxy_starting else "HAProxy is not running"
        )
    if facts.loaded_from_disk is not None and facts.last_sync is None:
        degraded.insert(0, f"serving last known state from {facts.loaded_from_disk}")
        since_start = facts.now - facts.started_at
        if since_start > facts.max_sync_age:
            failing.append(f"no {facts.source} sync for {since_start:.0f} s since start")
    elif sync_age is None:
        failing.append(f"no {facts.source} snapshot yet")
    elif sync_age > facts.max_sync_age:
        failing.append(
            f"last {facts.source} sync {sync_age:.0f} s ago (limit {facts.max_sync_age:.0f} s)"
        )
    if failing:
        return HealthReport("failing", tuple(failing + degraded), sync_age)
    if degraded:
        return HealthReport("degraded", tuple(degraded), sync_age)
    return HealthReport("ok", (), sync_age)


def source_view(health: SourceHealth, now: float) -> dict[str, Any]:
    """The catalog source's state for /health: link, sync, last contact, its own figures."""
    contact = health.last_contact
    return {
        "name": health.name,
        "mode": health.mode,
        "connected": health.connected,
        "synced": health.synced,
        "last_contact_age_seconds": None if contact is None else round(max(0.0, now - contact), 3),
        "last_error": health.last_error,
        **health.details,
    }


@dataclass
class _View:
    catalog: Optional[Catalog] = None
    model: Optional[HAProxyModel] = None
    config_text: str = ""
    haproxy_states: Mapping[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class _Facts:
    started_at: float
    haproxy_required: bool = True
    haproxy_running: bool = False
    haproxy_origin: Optional[str] = None
    haproxy_starting: bool = False
    last_sync: Optional[float] = None
    last_sync_wall: Optional[float] = None
    loaded_from_disk: Optional[str] = None
    problems: dict[str, str] = field(default_factory=dict)
    last_apply_wall: Optional[float] = None
    budget: Optional[FdBudget] = None
    # for /livez and /readyz (sidecar.probes)
    loop_beat: float = 0.0
    haproxy_supervised: bool = True
    haproxy_attempted: bool = False  # a start was attempted, or one was seen running
    haproxy_down_since: Optional[float] = None
    catalog_served_at: Optional[float] = None
    apply_failing_since: Optional[float] = None
    source: Optional[SourceHealth] = None


class StatusBoard:
    """Thread-safe holder of everything the status server shows."""

    def __init__(
        self,
        metrics: SidecarMetrics,
        *,
        max_sync_age: float,
        haproxy_required: bool = True,
        haproxy_supervised: bool = True,
        source: str = "Marathon",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.max_sync_age = max_sync_age
        self.source = source
        self.haproxy_grace = HAPROXY_GRACE
        self.loop_stall_limit = LOOP_STALL_LIMIT
        # a cheap check (no socket) that the master the sidecar runs is alive, asked on every
        # probe: a death shows at once, not only at the daemon's next supervision tick
        self.master_alive: Optional[Callable[[], bool]] = None
        self.traffic: Optional[TrafficReader] = None  # HAProxy's counters, for the page
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        now = clock()
        self._facts = _Facts(
            started_at=now,
            haproxy_required=haproxy_required,
            loop_beat=now,
            haproxy_supervised=haproxy_supervised,
        )
        self._view = _View()

    # --- writers (the daemon) ---------------------------------------------------------------
    def record_sync(self) -> None:
        with self._lock:
            self._facts.last_sync = self._clock()
            self._facts.last_sync_wall = self._wall()
            self._facts.loaded_from_disk = None
        self.metrics.record_sync()

    def set_loaded_from_disk(self, saved_at_text: Optional[str]) -> None:
        with self._lock:
            self._facts.loaded_from_disk = saved_at_text

    def set_haproxy_starting(self) -> None:
        """The sidecar (re)starts HAProxy now: until it is seen ready, it does not count as
        running, and /health says "starting"."""
        with self._lock:
            f = self._facts
            f.haproxy_starting = True
            f.haproxy_attempted = True
            self._haproxy_down(f)
        self.metrics.haproxy_up.set(0)
        self.metrics.set_haproxy_origin(None)

    def set_haproxy_running(self, running: bool, origin: Optional[str] = None) -> None:
        """HAProxy up or not, and where the running one came from (started, adopted...)."""
        with self._lock:
            f = self._facts
            f.haproxy_starting = False
            f.haproxy_origin = origin if running else None
            if running:
                f.haproxy_running, f.haproxy_attempted, f.haproxy_down_since = True, True, None
            else:
                self._haproxy_down(f)
        self.metrics.haproxy_up.set(1 if running else 0)
        self.metrics.set_haproxy_origin(origin if running else None)

    def _notice_master_death(self, f: _Facts) -> None:
        """HAProxy counted as running, but its master is gone: down from now (the daemon's
        supervision restarts it and says so)."""
        if f.haproxy_running and self.master_alive is not None and not self.master_alive():
            self._haproxy_down(f)
            self.metrics.haproxy_up.set(0)
            self.metrics.set_haproxy_origin(None)

    def _haproxy_down(self, f: _Facts) -> None:
        f.haproxy_running = False
        f.haproxy_origin = None
        if f.haproxy_attempted and f.haproxy_down_since is None:
            f.haproxy_down_since = self._clock()

    def beat(self) -> None:
        """The daemon loop took a turn (for /livez)."""
        with self._lock:
            self._facts.loop_beat = self._clock()

    def record_catalog_served(self) -> None:
        """HAProxy runs a config built from a catalog (the source's or the saved one)."""
        with self._lock:
            if self._facts.catalog_served_at is None:
                self._facts.catalog_served_at = self._clock()

    def record_apply(self, ok: bool) -> None:
        """The outcome of one apply: failures since when (for /readyz)."""
        with self._lock:
            f = self._facts
            if ok:
                f.apply_failing_since = None
            elif f.apply_failing_since is None:
                f.apply_failing_since = self._clock()

    def set_problem(self, key: str, reason: Optional[str]) -> None:
        """Add (or with ``None`` clear) a degraded-mode reason under ``key``."""
        with self._lock:
            if reason:
                self._facts.problems[key] = reason
            else:
                self._facts.problems.pop(key, None)

    def set_budget(self, budget: FdBudget) -> None:
        """The open-files budget of the running config: degraded, with its reason, when maxconn
        was lowered or parts were given up (HAProxy serves: still HTTP 200)."""
        with self._lock:
            self._facts.budget = budget
        self.set_problem("descriptors", budget.reason() or None)

    def set_source_health(self, health: SourceHealth) -> None:
        with self._lock:
            self._facts.source = health

    def set_view(self, catalog: Catalog, model: HAProxyModel, config_text: str) -> None:
        with self._lock:
            states = self._view.haproxy_states
            self._view = _View(catalog, model, config_text, states)
            self._facts.last_apply_wall = self._wall()

    def set_haproxy_states(self, states: Mapping[tuple[str, str], str]) -> None:
        """HAProxy's own view of its servers: (backend, server) -> up/down/drain/maint."""
        with self._lock:
            self._view.haproxy_states = dict(states)

    # --- readers (the server) ---------------------------------------------------------------
    def health(self) -> HealthReport:
        with self._lock:
            f = self._facts
            self._notice_master_death(f)
            facts = HealthFacts(
                now=self._clock(),
                started_at=f.started_at,
                haproxy_required=f.haproxy_required,
                haproxy_running=f.haproxy_running,
                haproxy_starting=f.haproxy_starting,
                last_sync=f.last_sync,
                loaded_from_disk=f.loaded_from_disk,
                max_sync_age=self.max_sync_age,
                problems=tuple(f.problems[k] for k in sorted(f.problems)),
                source=self.source,
            )
            origin = f.haproxy_origin
            budget = f.budget
            source = None if f.source is None else source_view(f.source, facts.now)
        descriptors = None if budget is None else budget.as_dict()
        return replace(
            evaluate_health(facts), haproxy_origin=origin, descriptors=descriptors, source=source
        )

    def liveness(self) -> ProbeReport:
        """The /livez verdict (sidecar.probes)."""
        return evaluate_liveness(self._probe_facts())

    def readiness(self) -> ProbeReport:
        """The /readyz verdict (sidecar.probes)."""
        return evaluate_readiness(self._probe_facts())

    def _probe_facts(self) -> ProbeFacts:
        with self._lock:
            f = self._facts
            self._notice_master_death(f)
            return ProbeFacts(
                now=self._clock(),
                loop_beat=f.loop_beat,
                haproxy_required=f.haproxy_required,
                haproxy_supervised=f.haproxy_supervised,
                haproxy_running=f.haproxy_running,
                haproxy_starting=f.haproxy_starting,
                haproxy_down_since=f.haproxy_down_since,
                started_at=f.started_at,
                catalog_served_at=f.catalog_served_at,
                last_sync=f.last_sync,
                loaded_from_disk=f.loaded_from_disk,
                apply_failing_since=f.apply_failing_since,
                haproxy_origin=f.haproxy_origin,
                source=self.source,
                max_sync_age=self.max_sync_age,
                loop_stall_limit=self.loop_stall_limit,
                haproxy_grace=self.haproxy_grace,
            )

    def config_text(self) -> str:
        with self._lock:
            return self._view.config_text

    def services(self) -> list[dict[str, Any]]:
        with self._lock:
            view = self._view
        return services_view(view.catalog, view.model, view.haproxy_states)

    def listing(self, query: PageQuery) -> Listing:
        """What the status page shows: the busiest services (among those the search matches),
        with their traffic; the poller is told to read their servers too."""
        with self._lock:
            view = self._view
        traffic = self.traffic
        snapshot = traffic.snapshot() if traffic is not None else TrafficSnapshot()
        backends = view.model.backends if view.model is not None else ()
        matched = [b for b in backends if matches(b, query.search)]
        chosen = busiest(matched, snapshot.backends, query.top)
        services = services_view(view.catalog, view.model, view.haproxy_states, chosen)
        history = {}
        if traffic is not None:
            names = [b.name for b in chosen]
            traffic.want_servers(names)
            keys: list[object] = list(names)
            keys += [
                (s["backend"], e["server"]) for s in services for e in s["endpoints"] if e["server"]
            ]
            history = traffic.history(keys)
        shown = with_traffic(services, snapshot, history)
        return Listing(shown, len(backends), len(matched), query, snapshot)

    def skipped(self) -> list[dict[str, Any]]:
        """What was left out of the config (apps, ports, servers) and labels not honored."""
        with self._lock:
            model = self._view.model
        if model is None:
            return []
        out: list[dict[str, Any]] = [
            {
                "kind": "server" if s.task_id else "app",
                "app_id": s.app_id,
                "port_index": s.port_index,
                "task_id": s.task_id,
                "label": "",
                "reason": s.reason,
            }
            for s in model.skipped
        ]
        out += [
            {
                "kind": "label",
                "app_id": p.app_id,
                "port_index": None,
                "task_id": "",
                "label": p.label,
                "reason": p.reason,
            }
            for p in model.problems
        ]
        return out

    def summary(self) -> dict[str, Any]:
        with self._lock:
            f = self._facts
            last_sync_wall = f.last_sync_wall
            last_apply_wall = f.last_apply_wall
            budget = f.budget
        return {
            "maxconn": _maxconn_text(budget),
            "last_sync": iso_time(last_sync_wall),
            "last_apply": iso_time(last_apply_wall),
            "reloads": _counter_value(self.metrics.reloads),
            "reload_failures": _counter_value(self.metrics.reload_failures),
        }


def _maxconn_text(budget: Optional[FdBudget]) -> str:
    """``4096 (open files: 8,231 needed of 20,000)`` for the status page."""
    if budget is None:
        return ""
    text = str(budget.effective)
    if budget.lowered:
        text += f" of {budget.wanted} wanted"
    limit = "unknown" if budget.limit is None else f"{budget.limit:,}"
    return f"{text} (open files: {budget.needed:,} needed of {limit})"


def _counter_value(counter: Any) -> float:
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0


# --- the server ---------------------------------------------------------------------------------


PROBE_PATHS = frozenset({"/livez", "/readyz"})


class StatusServer(StatusHTTPServer):
    """The sidecar's status server over a :class:`StatusBoard` (loopback by default).

    ``probes_only``: answer only /livez and /readyz (a listener for checks from other hosts,
    which shows nothing else: no config, no services, no metrics)."""

    def __init__(
        self,
        board: StatusBoard,
        host: str = "127.0.0.1",
        port: int = 9090,
        *,
        probes_only: bool = False,
    ) -> None:
        super().__init__(_make_handler(board, probes_only), host, port)
        self.board = board


def _make_handler(board: StatusBoard, probes_only: bool) -> type[StatusHandler]:
    return type("Handler", (_StatusHandler,), {"board": board, "probes_only": probes_only})


class _StatusHandler(StatusHandler):
    """One request to the status server; ``board`` is set by :func:`_make_handler`."""

    board: StatusBoard
    probes_only: bool
    server_version = "marathon-sidecar"
    log = log  # requests are logged as the status module's

    def route(self, path: str) -> None:
        board = self.board
        if self.probes_only and path not in PROBE_PATHS:
            self.send(404, TEXT, b"not found\n")
        elif path == "/health":
            report = board.health()
            self.send_json(report.http_status, report.as_dict())
        elif path in ("/livez", "/readyz"):
            probe = board.liveness() if path == "/livez" else board.readiness()
            self.send_json(probe.http_status, probe.as_dict())
        elif path == "/metrics":
            self.send(200, CONTENT_TYPE_LATEST, board.metrics.render())
        elif path == "/config":
            self.send(200, TEXT, board.config_text().encode("utf-8"))
        elif path == "/services":
            self.send_json(200, {"services": board.services(), "skipped": board.skipped()})
        elif path == "/":
            listing = board.listing(parse_page_query(self.path.partition("?")[2]))
            page = render_page(board.health(), board.summary(), listing, board.skipped())
            self.send(200, "text/html; charset=utf-8", page.encode("utf-8"))
        elif path == "/static/status.css":
            self._static("status.css", "text/css; charset=utf-8")
        else:
            self.send(404, TEXT, b"not found\n")

    def _static(self, name: str, content_type: str) -> None:
        try:
            body = (STATIC_DIR / name).read_bytes()
        except OSError:
            self.send(404, TEXT, b"not found\n")
            return
        self.send(200, content_type, body)
