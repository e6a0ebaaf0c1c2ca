"""The sidecar daemon: the imperative shell that wires following, building, applying and status.

:class:`Daemon` runs the main loop on the calling thread:

1. the catalog source (:class:`~sidecar.sources.base.CatalogSource`, its own threads) publishes
   new catalogs;
2. the loop coalesces bursts with a leading-edge debounce: a change that comes after a quiet
   period (no change for ``debounce`` seconds) is applied at once when it changes servers only
   (runtime API); a change that follows another within ``debounce`` waits until ``debounce``
   passes without another (never longer than :data:`MAX_COALESCE` in total). Only a change
   after ``debounce`` seconds of silence goes at once, so a burst costs at most two applies (its
   first change, then the rest) and a steady stream one per :data:`MAX_COALESCE`. A change that
   needs a reload (a change of :func:`~sidecar.haproxy_model.listener_signature`) waits like the
   rest of its burst, so a deploy's events share one reload, and keeps at least
   ``min_reload_interval`` since the last reload;
3. it builds the model (:func:`~sidecar.desired.build_model`, with the caching resolver), and
   hands it to the :class:`~sidecar.apply.Applier` (render, validate, swap, reload or runtime
   API);
4. after a successful apply it saves the catalog as the last known good one, and posts the view
   to the status board;
5. every tick it lets the applier finish deferred work (``tick``), restarts HAProxy if it died,
   and refreshes health facts.

If the source cannot be reached at start, the last known good catalog from ``--state-dir`` is
served and ``/health`` says so. SIGTERM/SIGINT (:meth:`Daemon.stop`) end the loop: stop
following, stop HAProxy if the daemon started it, exit 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from .apply import Applier
from .catalog import Catalog
from .desired import BuildCache, build_model
from .gc_pause import collector_paused
from .haproxy.process import ExternalHAProxy, HAProxyControl, HAProxyProcess
from .haproxy.runtime import RuntimeAPI
from .haproxy_model import HAProxyModel, listener_signature
from .metrics import SidecarMetrics
from .render import RenderCache, render_config
from .render_settings import RenderSettings
from .resolve import Resolver
from .settings import Settings
from .sources.base import CatalogSource
from .sources.factory import legacy_state_reader, make_source
from .state_store import StateStore
from .status import StatusBoard, StatusServer

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
MAX_COALESCE = 1.0  # a steady stream of changes still gets applied at least this often
STARTUP_WAIT = 10.0  # how long to wait for a first snapshot before using the state on disk
RETRY_FIRST = 1.0  # seconds before a failed apply is retried; doubles up to RETRY_MAX
RETRY_MAX = 30.0
DNS_REFRESH_SECONDS = 60.0  # rebuild this often when host names are in use (resolver TTL)
SERVER_POLL_SECONDS = 5.0  # how often HAProxy's own server states are read for /metrics
STATE_SAVE_INTERVAL = 10.0  # at most one write of the last known state per this many seconds
PORT_RETRY_SECONDS = 2.0  # apps left out because their port was taken are tried again this often


@dataclass
class _Pending:
    catalog: Catalog
    reason: str
    first_at: float
    last_at: float
    not_before: float = 0.0  # a reload waits for the minimum interval since the last one
    again: bool = False  # apply even when the model looks unchanged (apps left out for a port)
    leading: bool = False  # the first change after a quiet period: due at once (servers only)
    change_before: float = float("-inf")  # the change before this one (see _forget_no_op)


class Daemon:
    """One sidecar: follower + builder + applier + HAProxy supervision + status server."""

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any = None,
        source: Optional[CatalogSource] = None,
        haproxy: Any = None,
        applier: Any = None,
        resolver: Optional[Resolver] = None,
        metrics: Optional[SidecarMetrics] = None,
        startup_wait: float = STARTUP_WAIT,
        stream_silence: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else SidecarMetrics()
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._build_cache = BuildCache()
        self._logged_problems: frozenset[Any] = frozenset()
        self._pending: Optional[_Pending] = None
        self._last_change_at = float("-inf")  # when the source last published a catalog
        self.startup_wait = startup_wait
        self.source = (
            source
            if source is not None
            else make_source(
                settings, self.metrics, marathon_client=client, stream_silence=stream_silence
            )
        )
        self.resolver = resolver if resolver is not None else Resolver(on_update=self._dns_changed)
        self.state_store = StateStore(settings.state_dir, legacy=legacy_state_reader())
        self.board = StatusBoard(
            self.metrics,
            max_sync_age=settings.max_sync_age,
            haproxy_required=not settings.once,
            source=self.source.name,
        )
        self._haproxy = haproxy
        self._applier = applier
        self._render_settings: Optional[RenderSettings] = None
        self.status_server: Optional[StatusServer] = None
        self.catalog: Optional[Catalog] = None  # the catalog of the last successful apply
        self.model: Optional[HAProxyModel] = None
        self._last_signature: Optional[tuple[Any, ...]] = None
        self._last_reload_at: Optional[float] = None
        self._failures = 0
        self._seen_counters: dict[str, int] = {}
        self._next_server_poll = 0.0
        self._unsaved: Optional[Catalog] = None
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-save")
        self._last_save_at: Optional[float] = None
        self._next_dns_refresh = self._clock() + DNS_REFRESH_SECONDS

    # --- lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to end (thread- and signal-safe)."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start_status_server(self) -> StatusServer:
        if self.status_server is None:
            self.status_server = StatusServer(
                self.board, self.settings.status_host, self.settings.status_port
            ).start()
            log.info("status server listening", extra={"address": self.status_server_address})
        return self.status_server

    @property
    def status_server_address(self) -> str:
        server = self.status_server
        return "" if server is None else f"{server.host}:{server.port}"

    def run(self) -> int:
        """Run until :meth:`stop`; returns the process exit code."""
        self.start_status_server()
        try:
            self.source.start(self)
            self._wait_for_first_state()
            if not self.stopping:
                self._start_haproxy()
                self._loop()
        finally:
            self._shutdown()
        return 0

    def run_once(self) -> int:
        """``--once``: one snapshot, build, render, validate, write; no HAProxy. 0 when written."""
        try:
            catalog = self.source.snapshot_once()
        except Exception as exc:
            log.error(f"cannot read {self.source.name}", extra={"error": str(exc)[:300]})
            return 1
        model = self._build(catalog)
        ok = bool(self.applier.write_only(model))
        self.resolver.close()
        if ok:
            log.info(
                "config written",
                extra={"path": self.settings.haproxy_config_path, "backends": len(model.backends)},
            )
        else:
            error = getattr(getattr(self.applier, "counters", None), "last_error", "")
            log.error("config not written", extra={"error": str(error)[:1000]})
        return 0 if ok else 1

    # --- main loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = self._clock()
        while not self.stopping:
            timeout = max(0.0, min(next_tick, self._apply_due_at()) - self._clock())
            self._wake.wait(timeout)
            self._wake.clear()
            if self.stopping:
                return
            now = self._clock()
            if now >= self._apply_due_at():
                self._guarded(self._apply_pending, "apply")
            if now >= next_tick:
                self._guarded(self._tick, "tick")
                next_tick = now + TICK_SECONDS

    def _guarded(self, step: Callable[[], None], name: str) -> None:
        """Run one loop step; a bug in it is logged and counted, the daemon keeps serving."""
        try:
            step()
        except Exception as exc:
            self.metrics.apply_failures.inc()
            self.board.set_problem(name, f"internal error in {name}: {str(exc)[:200]}")
            log.exception("daemon step failed; HAProxy keeps its running config")
        else:
            if name == "tick":
                self.board.set_problem(name, None)

    def _apply_due_at(self) -> float:
        """When the pending state should be applied (inf: nothing pending)."""
        with self._lock:
            pending = self._pending
        if pending is None:
            return float("inf")
        if pending.leading:
            settled = pending.first_at
        else:
            settled = min(pending.last_at + self.settings.debounce, pending.first_at + MAX_COALESCE)
        return max(settled, pending.not_before)

    def resync(self) -> None:
        """Take a fresh snapshot of the source now (SIGHUP)."""
        self.source.request_resync("requested")

    def _dns_changed(self) -> None:
        """A host name resolved late or to a new address: build the current catalog again."""
        self._rebuild("dns")

    def _rebuild(self, reason: str) -> None:
        with self._lock:
            if self._pending is not None:
                return  # a build is coming anyway
        current = self.source.catalog if self.source.catalog is not None else self.catalog
        if current is not None:
            self.catalog_changed(current, reason)

    # --- the source's listener (called from its threads) ----------------------------------------
    def source_problem(self, problem: Optional[str]) -> None:
        self.board.set_problem("source", problem)

    def source_contact(self) -> None:
        self.board.record_sync()

    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        """Remember the newest catalog, wake the loop."""
        now = self._clock()
        with self._lock:
            before = self._last_change_at
            quiet = now - before >= self.settings.debounce
            self._last_change_at = now
            old = self._pending
            if old is None:
                self._pending = _Pending(
                    catalog, reason, now, now, leading=quiet, change_before=before
                )
            elif old.again:  # a newer state does not wait for the retry time
                self._pending = _Pending(
                    catalog, reason, now, now, again=True, leading=quiet, change_before=before
                )
            else:
                self._pending = _Pending(
                    catalog,
                    reason,
                    old.first_at,
                    now,
                    old.not_before,
                    leading=old.leading,
                    change_before=old.change_before,
                )
        self._wake.set()

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            model = self._build(pending.catalog)
        except Exception:
            self._retry_later(pending.catalog, pending.reason)
            raise
        if model == self.model and not pending.again:  # only refresh the view
            self._forget_no_op(pending)
            self.catalog = pending.catalog
            self.board.set_view(pending.catalog, model, self.board.config_text())
            return
        if pending.leading and self._signature(model) != self._last_signature:
            # a reload: wait for the rest of the burst (a deploy sends several events)
            with self._lock:
                if self._pending is None:
                    pending.leading = False
                    self._pending = pending
            return
        wait_until = self._reload_allowed_at(model)
        if wait_until > self._clock():
            with self._lock:
                if self._pending is None:  # nothing newer arrived: retry this one later
                    pending.not_before = wait_until
                    self._pending = pending
                else:
                    self._pending.not_before = wait_until
            return
        self.apply_catalog(pending.catalog, pending.reason, model=model)

    def _forget_no_op(self, pending: _Pending) -> None:
        """Changes HAProxy does not see (deployment events, instance counts...) do not end a
        quiet period: the next change that matters is still applied at once."""
        with self._lock:
            if self._last_change_at == pending.last_at:  # nothing newer arrived meanwhile
                self._last_change_at = pending.change_before

    def _reload_allowed_at(self, model: HAProxyModel) -> float:
        """Now for runtime-only changes; else not before the minimum reload interval."""
        if self._last_reload_at is None or self._signature(model) == self._last_signature:
            return 0.0
        return self._last_reload_at + self.settings.min_reload_interval

    def apply_catalog(
        self, catalog: Catalog, reason: str = "", model: Optional[HAProxyModel] = None
    ) -> bool:
        """Build, render and apply ``catalog``; ``True`` when HAProxy now runs it."""
        if model is None:
            model = self._build(catalog)
        signature = self._signature(model)
        started = self._clock()
        try:
            result = self.applier.apply(model)
        except Exception as exc:
            self.metrics.apply_failures.inc()
            self.board.set_problem("apply", f"apply failed: {str(exc)[:300]}")
            log.exception("apply failed; HAProxy keeps its running config")
            self._retry_later(catalog, reason)
            return False
        finally:
            self.metrics.apply_seconds.observe(self._clock() - started)
        if getattr(result, "reload_failed", False):
            self._last_reload_at = self._clock()
        if not self._record_result(result):
            log.warning(
                "apply failed; HAProxy keeps its running config",
                extra={"reason": reason, "error": str(getattr(result, "error", ""))[:500]},
            )
            self._retry_later(catalog, reason)
            return False
        self._failures = 0
        if _reloaded(result):
            self._last_reload_at = self._clock()
        if getattr(result, "waiting_for_ports", ()):
            self._try_again_later(catalog, reason, PORT_RETRY_SECONDS)
        running = getattr(self.applier, "running_config", None)
        if isinstance(running, HAProxyModel):
            model = running  # what HAProxy runs: apps it refused are left out (and listed)
        self._last_signature = signature
        self.catalog, self.model = catalog, model
        self._record_model(model)
        self.board.set_view(catalog, model, self._config_text(result))
        self._save_catalog(catalog)
        log.info(
            "applied",
            extra={
                "reason": reason,
                "backends": len(model.backends),
                "reloaded": _reloaded(result),
            },
        )
        return True

    def _try_again_later(self, catalog: Catalog, reason: str, delay: float) -> None:
        """Apply ``catalog`` again after ``delay`` (apps left out for a taken port may fit then),
        unless something newer arrives first."""
        now = self._clock()
        with self._lock:
            if self._pending is None:
                self._pending = _Pending(catalog, reason, now, now, now + delay, again=True)

    def _retry_later(self, catalog: Catalog, reason: str) -> None:
        """Try a failed catalog again after a backoff, unless something newer arrives first."""
        self._failures += 1
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** min(self._failures - 1, 10))
        now = self._clock()
        with self._lock:
            if self._pending is None:
                self._pending = _Pending(catalog, f"retry: {reason}", now, now, now + delay)

    def _tick(self) -> None:
        tick = getattr(self.applier, "tick", None)
        if tick is not None:
            try:
                tick()
            except Exception:
                log.exception("applier tick failed")
            sync_counters(
                getattr(self.applier, "counters", None), self._seen_counters, self.metrics
            )
        self._supervise_haproxy()
        if self._save_due():
            self._flush_state()
        if self._clock() >= self._next_dns_refresh:
            self._next_dns_refresh = self._clock() + DNS_REFRESH_SECONDS
            if self.resolver.cached():
                self._rebuild("dns refresh")  # stale names are looked up again in the background
        if self._clock() >= self._next_server_poll:
            self._next_server_poll = self._clock() + SERVER_POLL_SECONDS
            self._observe_servers()
        if self.source.health().connected:
            self.board.record_sync()
        self.metrics.dns_failures.set(self.resolver.failures)

    # --- pieces ----------------------------------------------------------------------------------
    def _build(self, catalog: Catalog) -> HAProxyModel:
        started = self._clock()
        try:
            # the cache reuses what unchanged services derived last time
            with self._build_lock, collector_paused():
                return build_model(
                    catalog, self.render_settings, self.resolver, cache=self._build_cache
                )
        finally:
            self.metrics.render_seconds.observe(self._clock() - started)

    @property
    def render_settings(self) -> RenderSettings:
        if self._render_settings is None:
            self._render_settings = make_render_settings(self.settings)
        return self._render_settings

    def _signature(self, model: HAProxyModel) -> tuple[Any, ...]:
        return tuple(listener_signature(model))

    def _wait_for_first_state(self) -> Optional[Catalog]:
        deadline = self._clock() + self.startup_wait
        while not self.stopping and self._clock() < deadline:
            with self._lock:
                if self._pending is not None:
                    return self._pending.catalog
            self._wake.wait(0.05)
        stored = self.state_store.load()
        name = self.source.name
        if stored is None:
            log.warning(f"no {name} snapshot and no saved catalog: starting with no services")
            return None
        log.warning(
            f"{name} unreachable: serving the last known catalog",
            extra={"saved_at": stored.describe_time(), "services": len(stored.catalog)},
        )
        self.board.set_loaded_from_disk(stored.describe_time())
        self.source.seed(stored.catalog)
        with self._lock:
            if self._pending is None:
                now = self._clock()
                self._pending = _Pending(stored.catalog, "saved catalog", now, now)
        return stored.catalog

    def _start_haproxy(self) -> None:
        """Write a first config (from the first catalog, or empty) and start HAProxy on it."""
        with self._lock:
            pending, self._pending = self._pending, None
        catalog = pending.catalog if pending is not None else Catalog()
        reason = pending.reason if pending is not None else "start with no services"
        self.apply_catalog(catalog, reason)
        self._supervise_haproxy()

    def _supervise_haproxy(self) -> None:
        haproxy = self.haproxy
        try:
            if haproxy.restart_if_dead():
                self.metrics.haproxy_restarts.inc()
        except Exception as exc:
            log.error("cannot restart haproxy", extra={"error": str(exc)[:500]})
        running = bool(haproxy.running())
        self.board.set_haproxy_running(running, haproxy.origin)
        status = None
        try:
            status = haproxy.proc_status()
        except Exception:
            status = None
        if status is not None:
            self.metrics.old_workers.set(len(status.old_workers))

    def _observe_servers(self) -> None:
        """Read HAProxy's view of its servers (up/down/drain/maint) for /metrics and /services."""
        runtime = getattr(self.applier, "runtime", None)
        if runtime is None or not self.haproxy.running():
            return
        try:
            states = runtime.show_servers_state()
        except Exception as exc:
            log.debug("server states unavailable", extra={"error": str(exc)[:200]})
            return
        seen: dict[tuple[str, str], str] = {}
        for server in states:
            seen[(server.backend, server.name)] = server_status(server)
        counts = {status: 0 for status in ("up", "down", "drain", "maint")}
        for status in seen.values():
            counts[status] = counts.get(status, 0) + 1
        for status, count in counts.items():
            self.metrics.haproxy_servers.labels(status=status).set(count)
        self.board.set_haproxy_states(seen)

    def _record_result(self, result: Any) -> bool:
        sync_counters(getattr(self.applier, "counters", None), self._seen_counters, self.metrics)
        return record_apply_result(result, self.metrics, self.board)

    def _record_model(self, model: HAProxyModel) -> None:
        self.metrics.services.set(len(model.backends))
        ready = sum(1 for b in model.backends for s in b.servers if s.state == "ready")
        drain = sum(1 for b in model.backends for s in b.servers if s.state != "ready")
        self.metrics.servers.labels(state="ready").set(ready)
        self.metrics.servers.labels(state="drain").set(drain)
        self.metrics.skipped_apps.set(len(model.skipped))
        problems = frozenset(getattr(model, "problems", ()))
        self.metrics.label_problems.set(len(problems))
        for problem in sorted(problems - self._logged_problems, key=repr):  # each one once
            log.warning(
                "label not honored",
                extra={"app_id": problem.app_id, "label": problem.label, "reason": problem.reason},
            )
        self._logged_problems = problems

    def _save_catalog(self, catalog: Catalog) -> None:
        """Remember ``catalog`` as the last applied; written at once the first time, then at
        most every :data:`STATE_SAVE_INTERVAL` seconds (a big cluster's catalog is large)."""
        if self.board_loaded_from_disk_only():
            return  # do not refresh the file's time with data that did not come from the source
        self._unsaved = catalog
        if self._last_save_at is None or self._clock() - self._last_save_at >= STATE_SAVE_INTERVAL:
            self._flush_state()

    def _save_due(self) -> bool:
        saved_at = self._last_save_at
        if self._unsaved is None or saved_at is None:
            return False
        return self._clock() - saved_at >= STATE_SAVE_INTERVAL

    def _flush_state(self) -> None:
        """Write the unsaved catalog in the background (the loop never waits for the disk)."""
        catalog, self._unsaved = self._unsaved, None
        if catalog is None:
            return
        self._last_save_at = self._clock()
        self._saver.submit(self._write_catalog, catalog)

    def _write_catalog(self, catalog: Catalog) -> None:
        if self.state_store.save(catalog):
            self.board.set_problem("state_dir", None)
        else:
            self.metrics.state_write_errors.inc()
            self.board.set_problem(
                "state_dir", f"last known state not saved: {self.state_store.last_error}"
            )

    def board_loaded_from_disk_only(self) -> bool:
        return not self.source.health().synced

    def _config_text(self, result: Any) -> str:
        text = getattr(result, "config_text", None)
        if isinstance(text, str):
            return text
        try:
            return Path(self.settings.haproxy_config_path).read_text(encoding="utf-8")
        except OSError:
            return ""

    def _shutdown(self) -> None:
        log.info("stopping")
        self.source.stop()
        self._flush_state()
        self._saver.shutdown(wait=True)
        try:
            if self._haproxy is not None:
                self._haproxy.stop()
        except Exception:
            log.exception("stopping haproxy failed")
        if self.status_server is not None:
            self.status_server.stop()
            self.status_server = None
        self.resolver.close()

    # --- lazily built collaborators --------------------------------------------------------------
    @property
    def haproxy(self) -> Any:
        if self._haproxy is None:
            self._haproxy = make_haproxy(self.settings, self.render_settings)
        return self._haproxy

    @property
    def applier(self) -> Any:
        if self._applier is None:
            self._applier = make_applier(self.settings, self.haproxy, self.render_settings)
        return self._applier


def server_status(server: Any) -> str:
    """``maint``, ``drain``, ``up`` or ``down`` for one ``show servers state`` line."""
    if server.in_maintenance:
        return "maint"
    if server.draining:
        return "drain"
    return "up" if server.operational == "running" else "down"


def _reloaded(result: Any) -> bool:
    return bool(getattr(result, "reloaded", False) or getattr(result, "started", False))


def record_apply_result(result: Any, metrics: SidecarMetrics, board: StatusBoard) -> bool:
    """Post the outcome of one apply to the status board; ``True`` when HAProxy runs the model.

    Counters come from the applier's own totals (:func:`sync_counters`); this reads ``ok``,
    ``error`` and ``skipped`` (apps left out: refused by HAProxy, or their port is taken) by
    attribute.
    """
    ok = bool(getattr(result, "ok", True))
    error = getattr(result, "error", "") or ""
    skipped = tuple(getattr(result, "skipped", ()) or ())
    if not ok:
        board.set_problem("apply", f"HAProxy keeps its running config: {str(error)[:300]}")
    elif skipped:
        board.set_problem("apply", f"left out apps: {describe_skipped(skipped)}")
    else:
        board.set_problem("apply", None)
    return ok


def describe_skipped(skipped: Sequence[Any], limit: int = 5) -> str:
    """``/a (reason); /b (reason)`` for the first ``limit`` apps left out of the config."""
    reasons: dict[str, str] = {}
    for entry in skipped:
        app_id = str(getattr(entry, "app_id", entry))
        reasons.setdefault(app_id, str(getattr(entry, "reason", ""))[:160])
    shown = [f"{app} ({why})" if why else app for app, why in sorted(reasons.items())[:limit]]
    more = len(reasons) - limit
    return "; ".join(shown) + (f" and {more} more" if more > 0 else "")


_COUNTER_METRICS = (
    ("reloads", "reloads"),
    ("reload_failures", "reload_failures"),
    ("validation_failures", "validation_failures"),
    ("starts", "haproxy_restarts"),
)


def sync_counters(counters: Any, seen: dict[str, int], metrics: SidecarMetrics) -> None:
    """Add what the applier counted since the last call to the Prometheus counters."""
    if counters is None:
        return
    for field_name, metric_name in _COUNTER_METRICS:
        _add_delta(counters, field_name, seen, getattr(metrics, metric_name))
    ops_delta = _delta(counters, "runtime_ops", seen)
    if ops_delta > 0:
        metrics.runtime_ops.labels(op="server").inc(ops_delta)
    fail_delta = _delta(counters, "runtime_failures", seen)
    if fail_delta > 0:
        metrics.runtime_ops.labels(op="failed").inc(fail_delta)
    deleted = _delta(counters, "servers_deleted", seen)
    if deleted > 0:
        metrics.runtime_ops.labels(op="delete").inc(deleted)
    tombstoned = _delta(counters, "servers_tombstoned", seen)
    if tombstoned > 0:
        metrics.runtime_ops.labels(op="tombstone").inc(tombstoned)
    old = getattr(counters, "old_workers", None)
    if isinstance(old, int):
        metrics.old_workers.set(old)


def _delta(counters: Any, name: str, seen: dict[str, int]) -> int:
    value = getattr(counters, name, None)
    if not isinstance(value, int):
        return 0
    delta = value - seen.get(name, 0)
    seen[name] = value
    return max(0, delta)


def _add_delta(counters: Any, name: str, seen: dict[str, int], metric: Any) -> None:
    delta = _delta(counters, name, seen)
    if delta > 0:
        metric.inc(delta)


def run_dir(settings: Settings) -> str:
    """Where HAProxy's sockets and pid file live (private to the sidecar)."""
    return str(Path(settings.state_dir) / "run")


def make_render_settings(settings: Settings) -> RenderSettings:
    reserved = (settings.status_port,) if settings.status_port else ()
    return RenderSettings(
        bind_addrs=settings.binds,
        groups=(settings.group,) if settings.group else (),
        vhost_port=settings.vhost_port,
        reserved_ports=reserved,
        admin_socket=str(Path(run_dir(settings)) / "admin.sock"),
        server_state_file=str(Path(settings.state_dir) / "haproxy-server-state"),
        hard_stop_after=f"{max(1, int(settings.drain_timeout))}s",
    )


def make_haproxy(settings: Settings, render_settings: RenderSettings) -> HAProxyControl:
    """The HAProxy we drive: one we start and supervise, or an external one (--master-socket)."""
    if settings.master_socket:
        return ExternalHAProxy(settings.master_socket, render_settings.admin_socket)
    return HAProxyProcess(
        settings.haproxy_bin,
        settings.haproxy_config_path,
        run_dir(settings),
        admin_socket=render_settings.admin_socket,
    )


def make_applier(settings: Settings, haproxy: Any, render_settings: RenderSettings) -> Applier:
    template = Path(settings.template).read_text(encoding="utf-8") if settings.template else None

    cache = RenderCache()
    lock = threading.Lock()

    def render(model: HAProxyModel) -> str:
        with lock:
            return render_config(model, render_settings, template, cache=cache)

    return Applier(
        haproxy,
        RuntimeAPI(
            render_settings.admin_socket, master_socket=getattr(haproxy, "master_socket", None)
        ),
        settings.haproxy_config_path,
        render,
        haproxy_bin=settings.haproxy_bin,
        state_file=render_settings.server_state_file,
        drain_timeout=settings.drain_timeout,
    )
