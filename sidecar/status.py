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

The status page ``/`` is plain HTML rendered here (every value escaped) with one static CSS file
from ``sidecar/static``; it refreshes itself every few seconds.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

from .catalog import READY, Catalog, Instance, Service
from .haproxy_model import BackendSpec, HAProxyModel, ServerSpec
from .metrics import CONTENT_TYPE_LATEST, SidecarMetrics
from .probes import (
    HAPROXY_GRACE,
    LOOP_STALL_LIMIT,
    ProbeFacts,
    ProbeReport,
    evaluate_liveness,
    evaluate_readiness,
)
from .status_http import TEXT, StatusHandler, StatusHTTPServer

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_REFRESH_SECONDS = 3


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

    @property
    def http_status(self) -> int:
        return 503 if self.status == "failing" else 200

    def as_dict(self) -> dict[str, Any]:
        age = None if self.sync_age is None else round(self.sync_age, 3)
        return {
            "status": self.status,
            "reasons": list(self.reasons),
            "sync_age_seconds": age,
            "haproxy_origin": self.haproxy_origin,
        }


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
    # for /livez and /readyz (sidecar.probes)
    loop_beat: float = 0.0
    haproxy_supervised: bool = True
    haproxy_attempted: bool = False  # a start was attempted, or one was seen running
    haproxy_down_since: Optional[float] = None
    catalog_served_at: Optional[float] = None
    apply_failing_since: Optional[float] = None


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
        return replace(evaluate_health(facts), haproxy_origin=origin)

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
        return {
            "last_sync": _iso(last_sync_wall),
            "last_apply": _iso(last_apply_wall),
            "reloads": _counter_value(self.metrics.reloads),
            "reload_failures": _counter_value(self.metrics.reload_failures),
        }


# --- the /services view (pure) -----------------------------------------------------------------


def services_view(
    catalog: Optional[Catalog],
    model: Optional[HAProxyModel],
    haproxy_states: Optional[Mapping[tuple[str, str], str]] = None,
) -> list[dict[str, Any]]:
    """One entry per backend: its port and app, every instance of the services behind it with
    its state, health, in/out and why (the verdicts the catalog holds).

    ``haproxy_states`` (backend, server) -> status adds what HAProxy itself reports.
    """
    if catalog is None or model is None:
        return []
    seen = haproxy_states or {}
    out: list[dict[str, Any]] = []
    for backend in sorted(model.backends, key=lambda b: (b.service_port, b.app_id, b.name)):
        servers = {s.task_id: s for s in backend.servers}
        endpoints = []
        for service in _services_of(catalog, backend):
            for instance in service.instances:
                server = servers.get(instance.id)
                entry = _endpoint_entry(instance, server)
                if server is not None:
                    entry["haproxy"] = seen.get((backend.name, server.name), "")
                endpoints.append(entry)
        out.append(
            {
                "service_port": backend.service_port,
                "app_id": backend.app_id,
                "backend": backend.name,
                "mode": backend.mode,
                "balance": backend.balance,
                "servers_in": sum(1 for s in backend.servers if s.state == "ready"),
                "endpoints": endpoints,
            }
        )
    return out


def _services_of(catalog: Catalog, backend: BackendSpec) -> list[Service]:
    """The catalog services behind a backend (several for a deployment group), by app id."""
    found = [catalog.services[k] for k in backend.service_keys if k in catalog.services]
    return sorted(found, key=lambda s: (s.app_id, s.port_index))


def _endpoint_entry(instance: Instance, server: Optional[ServerSpec]) -> dict[str, Any]:
    in_rotation = server is not None and server.state == "ready"
    if in_rotation:
        reason = ""
    elif server is None and instance.state == READY:
        reason = "not in the config"
    else:
        reason = instance.reason
    address, port = (
        (server.address, server.port) if server is not None else (instance.host, instance.port)
    )
    return {
        "task_id": instance.id,
        "host": instance.host,
        "address": address,
        "port": port,
        "state": instance.status,
        "healthy": instance.healthy,
        "in_rotation": in_rotation,
        "server_state": server.state if server is not None else "out",
        "reason": reason,
    }


def _iso(wall: Optional[float]) -> Optional[str]:
    if wall is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _counter_value(counter: Any) -> float:
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                return float(sample.value)
    return 0.0


# --- the HTML page (pure) -----------------------------------------------------------------------


def render_page(
    health: HealthReport,
    summary: Mapping[str, Any],
    services: Sequence[Mapping[str, Any]],
    skipped: Sequence[Mapping[str, Any]],
) -> str:
    """The status page; every dynamic value goes through :func:`html.escape`."""
    e = _escape
    reasons = "".join(f"<li>{e(r)}</li>" for r in health.reasons)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{PAGE_REFRESH_SECONDS}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>marathon-sidecar</title>",
        '<link rel="icon" href="data:,">',
        '<link rel="stylesheet" href="/static/status.css"></head><body>',
        "<header><h1>marathon-sidecar</h1>",
        f'<p class="health {e(health.status)}" id="health">{e(health.status)}</p></header>',
        f'<ul class="reasons">{reasons}</ul>' if reasons else "",
        '<dl class="summary">',
        f'<dt>last sync</dt><dd id="last-sync">{e(summary.get("last_sync") or "never")}</dd>',
        f"<dt>last apply</dt><dd>{e(summary.get('last_apply') or 'never')}</dd>",
        f'<dt>reloads</dt><dd id="reloads">{e(int(summary.get("reloads") or 0))}</dd>',
        f"<dt>failed reloads</dt><dd>{e(int(summary.get('reload_failures') or 0))}</dd>",
        f"<dt>services</dt><dd>{len(services)}</dd>",
        "</dl>",
        "<h2>Services</h2>",
        _services_table(services) if services else '<p class="empty">no services</p>',
    ]
    if skipped:
        rows = "".join(
            f"<tr><td>{e(s.get('app_id'))}</td><td>{e(_what(s))}</td>"
            f"<td>{e(s.get('reason'))}</td></tr>"
            for s in skipped
        )
        parts += [
            "<h2>Left out and not honored</h2>",
            '<table class="skipped"><thead><tr><th>app</th><th>what</th><th>why</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>",
        ]
    parts += [
        '<footer><a href="/health">/health</a> <a href="/services">/services</a> '
        '<a href="/config">/config</a> <a href="/metrics">/metrics</a>',
        f'<span class="refresh">refreshes every {PAGE_REFRESH_SECONDS} s; rendered '
        f"{e(_iso(time.time()))}</span></footer>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _services_table(services: Sequence[Mapping[str, Any]]) -> str:
    e = _escape
    rows: list[str] = []
    for service in services:
        endpoints = service.get("endpoints") or []
        span = max(1, len(endpoints))
        head = (
            f'<td rowspan="{span}" class="port">{e(service.get("service_port"))}</td>'
            f'<td rowspan="{span}" class="app">{e(service.get("app_id"))}</td>'
            f'<td rowspan="{span}">{e(service.get("mode"))}</td>'
        )
        if not endpoints:
            rows.append(
                f'<tr class="service">{head}<td colspan="5" class="empty">no tasks</td></tr>'
            )
            continue
        for i, endpoint in enumerate(endpoints):
            cls = "in" if endpoint.get("in_rotation") else "out"
            address = f"{endpoint.get('address') or '?'}:{_none(endpoint.get('port'))}"
            verdict = e(endpoint.get("server_state"))
            if endpoint.get("haproxy"):
                seen = e(endpoint.get("haproxy"))
                css = "seen" if endpoint.get("haproxy") in ("up", "drain") else "seen warn"
                verdict += f' <span class="{css}">(haproxy: {seen})</span>'
            if endpoint.get("reason"):
                verdict += f" - {e(endpoint.get('reason'))}"
            rows.append(
                f'<tr class="{cls}">{head if i == 0 else ""}'
                f'<td class="task">{e(endpoint.get("task_id"))}</td>'
                f"<td>{e(address)}</td>"
                f"<td>{e(endpoint.get('state'))}</td>"
                f"<td>{e(_health_word(endpoint.get('healthy')))}</td>"
                f'<td class="verdict">{verdict}</td></tr>'
            )
    return (
        '<table class="services"><thead><tr><th>port</th><th>app</th><th>mode</th><th>task</th>'
        "<th>address</th><th>state</th><th>health</th><th>in rotation / why not</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _what(item: Mapping[str, Any]) -> str:
    if item.get("label"):
        return f"label {item['label']}"
    if item.get("task_id"):
        return f"task {item['task_id']}"
    if item.get("port_index") is not None:
        return f"port index {item['port_index']}"
    return "app"


def _health_word(healthy: Any) -> str:
    if healthy is None:
        return "no checks"
    return "healthy" if healthy else "unhealthy"


def _none(value: Any) -> str:
    return "" if value is None else str(value)


def _escape(value: Any) -> str:
    return html.escape(_none(value), quote=True)


# --- the server ---------------------------------------------------------------------------------


class StatusServer(StatusHTTPServer):
    """The sidecar's status server over a :class:`StatusBoard` (loopback by default)."""

    def __init__(self, board: StatusBoard, host: str = "127.0.0.1", port: int = 9090) -> None:
        super().__init__(_make_handler(board), host, port)
        self.board = board


def _make_handler(board: StatusBoard) -> type[StatusHandler]:
    return type("Handler", (_StatusHandler,), {"board": board})


class _StatusHandler(StatusHandler):
    """One request to the status server; ``board`` is set by :func:`_make_handler`."""

    board: StatusBoard
    server_version = "marathon-sidecar"
    log = log  # requests are logged as the status module's

    def route(self, path: str) -> None:
        board = self.board
        if path == "/health":
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
            page = render_page(board.health(), board.summary(), board.services(), board.skipped())
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
