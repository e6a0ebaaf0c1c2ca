"""The sidecar daemon: the imperative shell that runs following, building, applying and status.

:class:`Daemon` runs the main loop on the calling thread:

1. the catalog source (:class:`~sidecar.sources.base.CatalogSource`, its own threads) publishes
   new catalogs to the daemon, its listener;
2. the loop coalesces bursts (:class:`~sidecar.debounce.Coalescer`: server changes are applied
   at once, at most once per ``debounce`` under a storm; a change that needs a reload waits for
   the end of its burst and keeps ``min_reload_interval`` since the last reload);
3. it builds the model (:func:`~sidecar.desired.build_model`, with the caching resolver and the
   garbage collector paused) and hands it to the applier (render, validate, swap, reload or
   runtime API);
4. after a successful apply it saves the catalog as the last known good one (in the background,
   throttled) and posts the view to the status board;
5. every tick it lets the applier finish deferred work, restarts HAProxy if it died, and
   refreshes health facts and metrics.

If the source cannot be reached at start, the last known good catalog from ``--state-dir`` is
served and ``/health`` says so. SIGTERM/SIGINT (:meth:`Daemon.stop`) end the loop: stop
following, stop HAProxy if the daemon started it, exit 0. The parts are built and wired by
:func:`sidecar.main.build_daemon`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

from .apply.results import ApplierControl, ApplyResult
from .catalog import Catalog, Problem, Skipped
from .debounce import Coalescer, Pending
from .desired import BuildCache, build_model
from .fd_budget import BudgetFacts, FdBudget, FitCache, fit_model
from .gc_pause import collector_paused
from .haproxy.process import HAProxyControl
from .haproxy_model import HAProxyModel, listener_signature
from .metrics import SidecarMetrics
from .option_table import parse_listen
from .periodic import Periodic
from .render_settings import RenderSettings
from .resolve import Resolver
from .server_poller import ServerStatePoller, ServerStatuses
from .settings import Settings
from .sources.base import CatalogSource
from .state_store import StateStore, ThrottledSaver
from .status import StatusBoard, StatusServer
from .systemd_notify import SystemdReporter
from .traffic_poller import TrafficPoller

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
STARTUP_WAIT = 10.0  # how long to wait for a first snapshot before using the catalog on disk
RETRY_FIRST = 1.0  # seconds before a failed apply is retried; doubles up to RETRY_MAX
RETRY_MAX = 30.0
DNS_REFRESH_SECONDS = 60.0  # rebuild this often when host names are in use (resolver TTL)
PORT_RETRY_SECONDS = 2.0  # apps left out because their port was taken are tried again this often


class Daemon:
    """One sidecar: source + builder + applier + HAProxy supervision + status server."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: CatalogSource,
        haproxy: HAProxyControl,
        applier: ApplierControl,
        resolver: Resolver,
        state_store: StateStore,
        render_settings: RenderSettings,
        metrics: SidecarMetrics,
        traffic: Optional[TrafficPoller] = None,
        systemd: Optional[SystemdReporter] = None,
        startup_wait: float = STARTUP_WAIT,
        fd_facts: Optional[Callable[[], BudgetFacts]] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.source = source
        self.haproxy = haproxy
        self.applier = applier
        self.resolver = resolver
        self.state_store = state_store
        self.render_settings = render_settings
        self.metrics = metrics
        self.startup_wait = startup_wait
        unknown = BudgetFacts(None, render_settings.maxconn, 1)
        self._fd_facts = fd_facts if fd_facts is not None else (lambda: unknown)
        self._reported_budget: Optional[FdBudget] = None
        self._clock = clock
        self.board = StatusBoard(
            metrics,
            max_sync_age=settings.max_sync_age,
            haproxy_required=not settings.once,
            haproxy_supervised=not settings.master_socket,
            source=source.name,
        )
        if not settings.master_socket:  # one the sidecar runs: its pid is checked cheaply
            self.board.master_alive = haproxy.running
        self.traffic = traffic
        self.board.traffic = traffic
        self.server_states, self._applier_ticks = self._background_work()
        self.systemd = systemd
        self.status_server: Optional[StatusServer] = None
        self.probe_server: Optional[StatusServer] = None  # --probe-listen
        self._saver = ThrottledSaver(state_store, self._saved, clock=clock)
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._lock = threading.Lock()  # guards the coalescer (the source's threads offer to it)
        self._coalescer: Coalescer[Catalog] = Coalescer(settings.debounce)
        self._build_lock = threading.Lock()
        self._build_cache, self._fit_cache = BuildCache(), FitCache()
        self._logged_problems: frozenset[Problem] = frozenset()
        self._problems_seen: tuple[Problem, ...] = ()
        self.catalog: Optional[Catalog] = None  # the catalog of the last successful apply
        self.model: Optional[HAProxyModel] = None
        self._last_signature: Optional[tuple[Any, ...]] = None
        self._last_reload_at: Optional[float] = None
        self._failures = self._config_writes_seen = 0
        self._next_dns_refresh = self._clock() + DNS_REFRESH_SECONDS

    def _background_work(self) -> tuple[ServerStatePoller, Periodic]:
        """HAProxy's view of its servers (for /metrics and /services), and the applier's
        periodic work (drains, the deferred file: it asks HAProxy about every draining backend,
        4 ms each at 10k services), each in a thread of its own, off the loop that applies."""
        server_states = ServerStatePoller(
            self.applier.runtime.show_servers_state, self.haproxy.running, self._record_servers
        )
        return server_states, Periodic("applier-tick", self._tick_applier, TICK_SECONDS)

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
        if self.probe_server is None and self.settings.probe_listen:
            host, port = parse_listen(self.settings.probe_listen)
            self.probe_server = StatusServer(self.board, host, port, probes_only=True).start()
            address = f"{self.probe_server.host}:{self.probe_server.port}"
            log.info("probe listener (/livez, /readyz) listening", extra={"address": address})
        return self.status_server

    @property
    def status_server_address(self) -> str:
        server = self.status_server
        return "" if server is None else f"{server.host}:{server.port}"

    def run(self) -> int:
        """Run until :meth:`stop`; returns the process exit code."""
        haproxy = self.haproxy
        self.board.set_haproxy_running(haproxy.running(), haproxy.origin)  # one run elsewhere
        self.start_status_server()
        if self.traffic is not None:
            self.traffic.start()
        try:
            self.source.start(self)
            self._wait_for_first_catalog()
            if not self.stopping:
                self._start_haproxy()
                self.server_states.start()
                self._applier_ticks.start()
                self._loop()
        finally:
            self._shutdown()
        return 0

    def resync(self) -> None:
        """Take a fresh snapshot of the source now (SIGHUP)."""
        self.source.request_resync("requested")

    # --- the source's listener (called from its threads) ----------------------------------------
    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        """Remember the newest catalog, wake the loop."""
        with self._lock:
            self._coalescer.offer(catalog, reason, self._clock())
        self._wake.set()

    def source_problem(self, problem: Optional[str]) -> None:
        self.board.set_problem("source", problem)

    def source_contact(self) -> None:
        self.board.record_sync()

    # --- callbacks of the other parts -----------------------------------------------------------
    def dns_changed(self) -> None:
        """A host name resolved late or to a new address: build the current catalog again."""
        self._rebuild("dns")

    def haproxy_started(self) -> None:
        """The HAProxy we started serves its ports (its first runtime sync is still to come)."""
        self.board.set_haproxy_running(True, self.haproxy.origin)

    # --- main loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        next_tick = self._clock()
        while not self.stopping:
            timeout = max(0.0, min(next_tick, self.apply_due_at()) - self._clock())
            self._wake.wait(timeout)
            self._wake.clear()
            if self.stopping:
                return
            self.board.beat()
            now = self._clock()
            if now >= self.apply_due_at():
                self._guarded(self.apply_pending, "apply")
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

    def apply_due_at(self) -> float:
        """When the pending catalog should be applied (inf: nothing pending)."""
        with self._lock:
            return self._coalescer.due_at()

    def apply_pending(self) -> None:
        """Build the pending catalog and apply it, unless it has to wait (see the module doc)."""
        with self._lock:
            pending = self._coalescer.take(self._clock())
        if pending is None:
            return
        try:
            model = self._build(pending.item)
        except Exception:
            self._retry_later(pending.item, pending.reason)
            raise
        if model == self.model and not pending.again:  # only refresh the view
            with self._lock:
                self._coalescer.forget_no_op(pending)
            self.catalog = pending.item
            self.board.set_view(pending.item, model, self.board.config_text())
            self.board.record_catalog_served()  # HAProxy runs what this catalog makes
            return
        if self._must_wait(pending, model):
            return
        if self.apply_catalog(pending.item, pending.reason, model=model):
            self.metrics.change_latency_seconds.observe(self._clock() - pending.first_at)

    def _must_wait(self, pending: Pending[Catalog], model: HAProxyModel) -> bool:
        """A reload waits for the end of its burst and the minimum interval since the last."""
        reload = listener_signature(model) != self._last_signature
        if reload and not pending.settle:  # a deploy sends several events: one reload for all
            with self._lock:
                self._coalescer.wait_for_burst(pending)
            return True
        if not reload or self._last_reload_at is None:
            return False
        wait_until = self._last_reload_at + self.settings.min_reload_interval
        if wait_until <= self._clock():
            return False
        with self._lock:
            self._coalescer.hold(pending, wait_until)
        return True

    def apply_catalog(
        self,
        catalog: Catalog,
        reason: str = "",
        model: Optional[HAProxyModel] = None,
        *,
        placeholder: bool = False,
    ) -> bool:
        """Build, render and apply ``catalog``; ``True`` when HAProxy now runs it.

        ``placeholder``: the empty catalog HAProxy starts on when no catalog came in time; it
        does not make the sidecar ready."""
        if model is None:
            model = self._build(catalog)
        signature = listener_signature(model)
        started = self._clock()
        try:
            result = self.applier.apply(model)
        except Exception as exc:
            self.metrics.apply_failures.inc()
            self.board.set_problem("apply", f"apply failed: {str(exc)[:300]}")
            self.board.record_apply(False)
            log.exception("apply failed; HAProxy keeps its running config")
            self._retry_later(catalog, reason)
            return False
        finally:
            self.metrics.apply_seconds.observe(self._clock() - started)
        self.metrics.sync_apply_counters(self.applier.counters)
        if not self._record_result(result):
            log.warning(
                "apply failed; HAProxy keeps its running config",
                extra={"reason": reason, "error": result.error[:500]},
            )
            self._retry_later(catalog, reason)
            return False
        self._applied(catalog, model, signature, result, reason)
        if not placeholder:
            self.board.record_catalog_served()
        return True

    def _applied(
        self,
        catalog: Catalog,
        model: HAProxyModel,
        signature: tuple[Any, ...],
        result: ApplyResult,
        reason: str,
    ) -> None:
        self._failures = 0
        reloaded = result.reloaded or result.started
        if reloaded:
            self._last_reload_at = self._clock()
        if result.waiting_for_ports:
            with self._lock:  # apps left out for a taken port may fit later
                self._coalescer.later(catalog, reason, self._clock(), PORT_RETRY_SECONDS, True)
        running = self.applier.running_config
        if running is not None:
            model = running  # what HAProxy runs: apps it refused are left out (and listed)
        self._last_signature = signature
        self.catalog, self.model = catalog, model
        self._report_budget(model.budget)
        self._log_new_problems(model)  # before the metrics count them (tests wait on those)
        self.metrics.record_model(model, catalog)  # counted when /metrics is read
        self.board.set_view(catalog, model, self._config_text(result))
        if self.source.health().synced:  # not what was only loaded from disk
            self._saver.offer(catalog)
        log.info(
            "applied",
            extra={"reason": reason, "backends": len(model.backends), "reloaded": reloaded},
        )

    def _retry_later(self, catalog: Catalog, reason: str) -> None:
        """Try a failed catalog again after a backoff, unless something newer arrives first."""
        self._failures += 1
        delay = min(RETRY_MAX, RETRY_FIRST * 2 ** min(self._failures - 1, 10))
        with self._lock:
            self._coalescer.later(catalog, f"retry: {reason}", self._clock(), delay)

    def _rebuild(self, reason: str) -> None:
        with self._lock:
            if self._coalescer.pending is not None:
                return  # a build is coming anyway
        current = self.source.catalog if self.source.catalog is not None else self.catalog
        if current is not None:
            self.catalog_changed(current, reason)

    # --- periodic work ---------------------------------------------------------------------------
    def _tick_applier(self) -> float:
        try:
            self.applier.tick()
        except Exception:
            log.exception("applier tick failed")
        return TICK_SECONDS

    def _tick(self) -> None:
        self.metrics.sync_apply_counters(self.applier.counters)
        self._refresh_config_text()
        self._supervise_haproxy()
        self._saver.flush_if_due()
        if self._clock() >= self._next_dns_refresh:
            self._next_dns_refresh = self._clock() + DNS_REFRESH_SECONDS
            if self.resolver.cached():
                self._rebuild("dns refresh")  # stale names are looked up again in the background
        health = self.source.health()
        if health.connected:
            self.board.record_sync()
        self.board.set_source_health(health)
        self.metrics.dns_failures.set(self.resolver.failures)
        if self.systemd is not None:
            self.systemd.report(self.board.readiness(), self.board.liveness(), self._clock())

    def _supervise_haproxy(self) -> None:
        haproxy = self.haproxy
        if not haproxy.running():
            self.board.set_haproxy_starting()  # a restart follows (when the sidecar runs it)
        try:
            if haproxy.restart_if_dead():
                self.metrics.haproxy_restarts.inc()
        except Exception as exc:
            log.error("cannot restart haproxy", extra={"error": str(exc)[:500]})
        self.board.set_haproxy_running(haproxy.running(), haproxy.origin)
        try:
            status = haproxy.proc_status()
        except Exception:
            status = None
        if status is not None:
            self.metrics.old_workers.set(len(status.old_workers))

    def _record_servers(self, seen: ServerStatuses) -> None:
        """HAProxy's view of its servers (the poller's thread)."""
        self.metrics.record_haproxy_servers(seen)
        self.board.set_haproxy_states(seen)

    # --- pieces ----------------------------------------------------------------------------------
    def _build(self, catalog: Catalog) -> HAProxyModel:
        started = self._clock()
        try:
            # the cache reuses what unchanged services derived last time
            running = self.model.budget if self.model is not None else None
            with self._build_lock, collector_paused():
                model = build_model(
                    catalog, self.render_settings, self.resolver, cache=self._build_cache
                )
                fitted = fit_model(model, self._fd_facts(), running, self._fit_cache)
            return fitted[0]  # the maxconn that fits
        finally:
            self.metrics.render_seconds.observe(self._clock() - started)

    def _wait_for_first_catalog(self) -> None:
        deadline = self._clock() + self.startup_wait
        while not self.stopping and self._clock() < deadline:
            self.board.beat()
            with self._lock:
                if self._coalescer.pending is not None:
                    return
            self._wake.wait(0.05)
        stored = self.state_store.load()
        name = self.source.name
        if stored is None:
            log.warning(f"no {name} snapshot and no saved catalog: starting with no services")
            return
        log.warning(
            f"{name} unreachable: serving the last known catalog",
            extra={"saved_at": stored.describe_time(), "services": len(stored.catalog)},
        )
        self.board.set_loaded_from_disk(stored.describe_time())
        self.source.seed(stored.catalog)
        with self._lock:
            if self._coalescer.pending is None:
                self._coalescer.offer(stored.catalog, "saved catalog", self._clock())

    def _start_haproxy(self) -> None:
        """Write a first config (from the first catalog, or empty) and start HAProxy on it."""
        if not self.haproxy.running():
            self.board.set_haproxy_starting()
        with self._lock:
            pending = self._coalescer.take(self._clock())
        if pending is not None:
            self.apply_catalog(pending.item, pending.reason)
        else:
            self.apply_catalog(Catalog(), "start with no services", placeholder=True)
        self._supervise_haproxy()

    def _record_result(self, result: ApplyResult) -> bool:
        """Post the outcome of one apply to the status board; ``True`` when HAProxy runs it."""
        self.board.record_apply(result.ok)
        if not result.ok:
            error = result.error[:300]
            self.board.set_problem("apply", f"HAProxy keeps its running config: {error}")
        elif result.skipped:
            self.board.set_problem("apply", f"left out apps: {describe_skipped(result.skipped)}")
        else:
            self.board.set_problem("apply", None)
        return result.ok

    def _report_budget(self, budget: Optional[FdBudget]) -> None:
        """Post the descriptor budget of what runs; log it when it changes (not every apply)."""
        if budget is None:
            return
        self.metrics.record_budget(budget)
        self.board.set_budget(budget)
        previous, self._reported_budget = self._reported_budget, budget
        if previous is not None and previous.key == budget.key:
            return
        numbers = budget.as_dict()
        if budget.reason():
            log.warning("open-files limit too low", extra={**numbers, "reason": budget.reason()})
        elif previous is not None and previous.reason():
            log.info("maxconn as wanted again", extra=numbers)
        elif previous is None:
            log.info("open-files budget", extra=numbers)

    def _log_new_problems(self, model: HAProxyModel) -> None:
        if self.model is not None and model.problems is self._problems_seen:
            return  # the same tuple: nothing new (the builder keeps it while it holds)
        self._problems_seen = model.problems
        problems = frozenset(model.problems)
        for problem in sorted(problems - self._logged_problems, key=repr):  # each one once
            log.warning(
                "label not honored",
                extra={"app_id": problem.app_id, "label": problem.label, "reason": problem.reason},
            )
        self._logged_problems = problems

    def _saved(self, ok: bool) -> None:
        """The state saver's report (from its thread)."""
        if ok:
            self.board.set_problem("state_dir", None)
        else:
            self.metrics.state_write_errors.inc()
            error = self.state_store.last_error
            self.board.set_problem("state_dir", f"last known state not saved: {error}")

    def _config_text(self, result: ApplyResult) -> str:
        """The text on disk after an apply: the one it wrote, else what the board shows (a
        deferred rewrite reaches the board on the tick, :meth:`_refresh_config_text`)."""
        if result.config_text is not None:
            return result.config_text
        return self.board.config_text() or self._read_config()

    def _read_config(self) -> str:
        self._config_writes_seen = self.applier.counters.config_writes
        try:
            with open(self.settings.haproxy_config_path, encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return ""

    def _refresh_config_text(self) -> None:
        """The applier rewrote the file on its own (a deferred write): show the new text."""
        if self.applier.counters.config_writes == self._config_writes_seen:
            return
        text = self._read_config()
        if self.catalog is not None and self.model is not None:
            self.board.set_view(self.catalog, self.model, text)

    def _shutdown(self) -> None:
        log.info("stopping")
        if self.systemd is not None:
            self.systemd.stopping()
        self.source.stop()
        if self.traffic is not None:
            self.traffic.stop()
        self.server_states.stop()
        self._applier_ticks.stop()
        self._saver.close()
        self.applier.close()
        try:
            self.haproxy.stop()
        except Exception:
            log.exception("stopping haproxy failed")
        for server in (self.status_server, self.probe_server):
            if server is not None:
                server.stop()
        self.status_server = self.probe_server = None
        self.resolver.close()


def describe_skipped(skipped: Sequence[Skipped], limit: int = 5) -> str:
    """``/a (reason); /b (reason)`` for the first ``limit`` apps left out of the config."""
    reasons: dict[str, str] = {}
    for entry in skipped:
        reasons.setdefault(entry.app_id, entry.reason[:160])
    shown = [f"{app} ({why})" if why else app for app, why in sorted(reasons.items())[:limit]]
    more = len(reasons) - limit
    return "; ".join(shown) + (f" and {more} more" if more > 0 else "")
