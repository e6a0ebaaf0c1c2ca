"""The decide-and-reload core: apply an HAProxy model to a running HAProxy.

Decision per call of :meth:`Applier.apply`:

* **listeners unchanged** (same :func:`~sidecar.haproxy_model.listener_signature` as the running
  config): server changes go through the runtime API, backend by backend, diffing the servers
  HAProxy has (``show servers state``) against the model by name
  (:mod:`~sidecar.apply.runtime_plan`); servers that leave are drained
  (:mod:`~sidecar.apply.drains`). When more than ``tombstone_limit`` tombstones pile up and no
  reload happened for ``tidy_reload_quiet`` seconds, :meth:`Applier.tick` does a validated,
  seamless tidy-up reload of the running model. The config file is rewritten to match
  (validated with ``haproxy -c``, atomic rename, no reload), draining servers included until
  they are finished. The rewrite waits ``config_write_delay`` (default 1 s; started by
  :meth:`Applier.tick`) so a burst of changes shares one ``haproxy -c``; 0 writes at once. A
  big config waits longer (:class:`~sidecar.apply.rewriter.DeferredWrites`), so a storm of
  server changes spends about 2 % of the time rewriting a file that only a restart reads; with
  ``background_rewrites`` (the daemon's setting) it renders and checks in a thread of its own.
  Draining servers are finished by the tick too, asking HAProxy without the lock. If
  HAProxy restarts in between, :meth:`Applier.tick` re-checks every backend against the model.
  Any unexpected runtime failure falls back to a validated reload.
* **listeners changed** (or first start, or a backend whose balance algorithm cannot take dynamic
  servers gets a new one): leave out new frontends whose port another process holds
  (:mod:`~sidecar.apply.ports`; listed as skipped, ``waiting_for_ports`` set so the daemon
  applies again later), render and check a candidate (:mod:`~sidecar.apply.validation`: the apps
  HAProxy refuses are found and left out), dump ``show servers state`` to the server-state file,
  rename the candidate into place, reload through the master CLI and confirm the new worker. A
  reload never starts while the previous one is unconfirmed. When HAProxy refuses the config,
  the running one stays.

Draining servers get no new requests: ``retries`` + ``option redispatch`` in the rendered
``defaults`` cover the race of a request already on its way to a server that is going.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import replace
from typing import Callable, NamedTuple, Optional

from sidecar.catalog import Skipped
from sidecar.changes import Changes, changed_between
from sidecar.files import write_atomically
from sidecar.haproxy.process import HAProxyControl, HAProxyError
from sidecar.haproxy.runtime import (
    ReloadResult,
    RuntimeAPI,
    RuntimeAPIError,
    ServerState,
    parse_servers_state,
)
from sidecar.haproxy_model import (
    BackendSpec,
    HAProxyModel,
    ServerSpec,
    backend_positions,
    backends_named,
    changed_backends,
    listener_signature,
)
from sidecar.render import server_line_options

from .config_file import ConfigFile
from .drains import DrainCheck, DrainRegistry
from .ports import binds_in_config, leave_out_taken_ports, model_binds, taken_ports
from .results import ApplyCounters, ApplyResult
from .rewriter import ConfigRewriter, DeferredWrites
from .runtime_plan import (
    ServerOptions,
    options_text,
    passive_backends,
    plan_backend,
    server_state_for_reload,
    supports_dynamic_servers,
    wanted_admin_states,
)
from .validation import Renderer, Validated, Validator

log = logging.getLogger(__name__)

# HAProxy 2.6 workers crash when a server that streams still point at is deleted (fixed in 2.9):
# a drained server that carried traffic stays in MAINT (a tombstone) until the next reload,
# and a tidy-up reload drops them once more than TOMBSTONE_LIMIT pile up with no reload for
# TIDY_RELOAD_QUIET seconds
TOMBSTONE_LIMIT = 50
TIDY_RELOAD_QUIET = 60.0

Signature = Callable[[HAProxyModel], Hashable]


class Rewrite(NamedTuple):
    """What a config rewrite did: written, or refused by ``haproxy -c`` (``error``)."""

    written: bool
    error: str


def joined_server_options(backend: BackendSpec, server: ServerSpec) -> str:
    """The renderer's keywords of a server line, for ``add server``."""
    return options_text(server_line_options(backend, server))


class Applier:
    """The imperative shell between the pure model and a running HAProxy."""

    def __init__(
        self,
        haproxy: HAProxyControl,
        runtime: RuntimeAPI,
        config_path: str,
        render: Renderer,
        *,
        haproxy_bin: str = "haproxy",
        validate_cmd: Optional[Sequence[str]] = None,
        state_file: Optional[str] = None,
        drain_timeout: float = 30.0,
        reload_timeout: float = 30.0,
        retry_failed_after: float = 30.0,
        server_options: ServerOptions = joined_server_options,
        signature: Signature = listener_signature,
        check_ports: bool = True,
        config_write_delay: float = 1.0,
        tombstone_limit: int = TOMBSTONE_LIMIT,
        tidy_reload_quiet: float = TIDY_RELOAD_QUIET,
        on_started: Optional[Callable[[], None]] = None,
        background_rewrites: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.haproxy = haproxy
        self.runtime = runtime
        self.config = ConfigFile(config_path)
        self.render = render
        self.state_file = state_file
        self.reload_timeout = reload_timeout
        self.retry_failed_after = retry_failed_after
        self.server_options = server_options
        self.signature = signature
        self.check_ports = check_ports
        self.tombstone_limit = tombstone_limit
        self.tidy_reload_quiet = tidy_reload_quiet
        self.on_started = on_started  # called once HAProxy we started or adopted serves
        self.clock = clock
        self.counters = ApplyCounters()
        self.drains = DrainRegistry(runtime, self.counters, drain_timeout, clock)
        self.validator = Validator(
            render, self.config, validate_cmd or [haproxy_bin, "-c", "-f"], self.counters
        )
        self._last_reload_try = clock()
        self._lock = threading.RLock()
        self._running_signature: Optional[Hashable] = None
        self._running_binds: Optional[frozenset[tuple[str, int]]] = None
        self._model: Optional[HAProxyModel] = None  # the last model applied (after skips)
        self._synced: dict[str, BackendSpec] = {}  # backends whose runtime state matches
        # the builder's tag of a model all of whose backends are in _synced: the next model's
        # tag says which backends to compare (None: compare them all)
        self._synced_changes: Optional[Changes] = None
        self._failed: Optional[tuple[str, float, str]] = None  # text, when, error
        self._unconfirmed = False
        self._generation = 0  # counts the reloads and restarts HAProxy made here
        self.writes = self._deferred_writes(render, config_write_delay, background_rewrites)
        self._starts_seen = haproxy.starts

    # -- public

    def apply(self, model: HAProxyModel) -> ApplyResult:
        started = self.clock()
        with self._lock:
            try:
                result = self._apply(model)
            except (RuntimeAPIError, HAProxyError) as exc:  # HAProxy cannot be reached at all
                result = ApplyResult(False, "failed", error=str(exc))
            duration = self.clock() - started
            result = replace(result, duration=duration)
            self._count(result, duration)
            return result

    def tick(self) -> int:
        """Periodic work (the daemon calls it about once a second): advance drains, write a
        deferred config file, resync everything after HAProxy was restarted, tidy-up reload when
        tombstones pile up. Returns the number of drained servers finished (deleted or
        tombstoned)."""
        checked = self._check_drains()
        if checked is None:
            return 0
        check, generation = checked
        with self._lock:
            if generation != self._generation:
                return 0  # HAProxy reloaded or restarted meanwhile: the answer is stale
            deleted = self.drains.finish(check) if check is not None else 0
            if deleted and self.writes.delay > 0:
                self.writes.dirty()  # the file follows when a write is due
            immediate = deleted and self.writes.delay <= 0
            if self._model is not None and (immediate or self.writes.due()):
                self.writes.start(self.drains.effective(self._model))
            if self._tidy_due():
                self._tidy_reload()
            return deleted

    def _check_drains(self) -> Optional[tuple[Optional[DrainCheck], int]]:
        """HAProxy's answer on the draining servers, asked without the lock (applies go on
        meanwhile), and the reload generation it belongs to; None when HAProxy cannot tell."""
        with self._lock:
            if not self.haproxy.running():
                return None
            try:
                if self.haproxy.starts != self._starts_seen:
                    self._after_restart()
            except RuntimeAPIError as exc:
                log.warning("applier tick failed", extra={"error": str(exc)})
                return None
            asked, generation = self.drains.backends_to_check(), self._generation
        try:
            return (self.drains.check(asked) if asked[0] else None), generation
        except RuntimeAPIError as exc:
            log.warning("applier tick failed", extra={"error": str(exc)})
            return None

    def close(self) -> None:
        """Stop the background rewriter (a rewrite it runs finishes first)."""
        self.writes.close()

    @property
    def running_config(self) -> Optional[HAProxyModel]:
        return self._model

    @property
    def tombstones(self) -> dict[tuple[str, str], float]:
        return self.drains.tombstones

    # -- decision

    def _apply(self, model: HAProxyModel) -> ApplyResult:
        if self._unconfirmed and not self._settle_unconfirmed():
            return ApplyResult(False, "failed", error="the previous reload is still unconfirmed")
        if not self._runs_listeners_of(model):
            return self._reload(model)
        if self.haproxy.starts != self._starts_seen:
            try:
                self._after_restart()
            except RuntimeAPIError:
                return self._reload(model)
        return self._apply_runtime(model)

    def _runs_listeners_of(self, model: HAProxyModel) -> bool:
        """Whether the running HAProxy has what ``model`` needs apart from servers."""
        return (
            self.haproxy.running()
            and self._running_signature is not None
            and self.signature(model) == self._running_signature
            and not self._needs_reload_for_servers(model)
        )

    def _needs_reload_for_servers(self, model: HAProxyModel) -> bool:
        """A backend whose balance algorithm cannot take dynamic servers gets a new one."""
        last = self._model
        names = changed_backends(last, model) if last is not None else None
        backends = model.backends if names is None else backends_named(model, names)
        at = backend_positions(last) if last is not None else {}
        for backend in backends:
            if supports_dynamic_servers(backend):
                continue
            i = at.get(backend.name)
            known = {s.name for s in last.backends[i].servers} if last and i is not None else ()
            if any(s.state == "ready" and s.name not in known for s in backend.servers):
                return True
        return False

    # -- runtime path

    def _apply_runtime(self, model: HAProxyModel, fallback: bool = True) -> ApplyResult:
        """Servers through the runtime API, then the file rewritten to match (no reload)."""
        try:
            ops = self._sync_runtime(model, only_changed=True)
        except RuntimeAPIError as exc:
            self.counters.runtime_failures += 1
            log.warning("runtime API failed; reloading instead", extra={"error": str(exc)})
            self._running_signature = None
            return self._reload(model) if fallback else ApplyResult(False, "failed", error=str(exc))
        self._model = model
        if self.writes.delay > 0 and self._running_signature is not None:
            # the file follows on a later tick; bursts of server changes share one write
            if ops:
                self.writes.dirty()
            return ApplyResult(True, "runtime" if ops else "none", runtime_ops=ops)
        rewrite = self._rewrite_config(model)
        if rewrite.error:
            # HAProxy refuses the file although listeners did not change: go the long way,
            # which finds and drops the apps at fault
            if fallback:
                return self._reload(model)
            return ApplyResult(False, "failed", runtime_ops=ops, error=rewrite.error)
        return ApplyResult(
            True,
            "runtime" if ops or rewrite.written else "none",
            runtime_ops=ops,
            config_written=rewrite.written,
            config_text=self.config.read() if rewrite.written else None,
        )

    def _sync_runtime(self, model: HAProxyModel, only_changed: bool) -> int:
        backends = self._backends_to_sync(model) if only_changed else list(model.backends)
        if not backends:
            self._synced_changes = model.changes
            return 0
        running = self._servers_state(
            [b.name for b in backends], everything=not only_changed, total=len(model.backends)
        )
        commands: list[str] = []
        drains: list[tuple[BackendSpec, list[ServerState]]] = []
        for backend in backends:
            plan = plan_backend(backend, running.get(backend.name, []), self.server_options)
            commands.extend(plan.commands)
            drains.append((backend, plan.to_drain))
            self.drains.ready_again(backend.name, plan.ready)
        if commands:
            errors = [e for e in self.runtime.write_many(commands) if e is not None]
            self.counters.runtime_ops += len(commands) - len(errors)
            if errors:
                self._forget_synced()
                raise errors[0]
        for backend, going in drains:
            self.drains.start(backend, going)
        for backend in backends:
            self._synced[backend.name] = backend
        self._synced_changes = model.changes
        if commands:
            log.info("runtime changes applied", extra={"commands": len(commands)})
        return len(commands)

    def _backends_to_sync(self, model: HAProxyModel) -> list[BackendSpec]:
        """The backends of ``model`` whose runtime state may not match: those the builder
        changed since the model synced last, or every one that differs when it cannot tell."""
        synced = self._synced
        names = changed_between(self._synced_changes, model.changes)
        backends = model.backends if names is None else backends_named(model, names)
        return [b for b in backends if synced.get(b.name) is not b and synced.get(b.name) != b]

    def _forget_synced(self) -> None:
        self._synced = {}
        self._synced_changes = None

    def _servers_state(
        self, names: Sequence[str], everything: bool, total: int
    ) -> dict[str, list[ServerState]]:
        """The running servers of ``names``: one ``show servers state <name>`` each (pipelined),
        or the whole dump when most backends are asked for. The dump costs HAProxy and the parse
        time in proportion to every server (0.2 s at 30,000): under a storm at 10k services a
        batch touching a few dozen backends must not pay for all of them."""
        out: dict[str, list[ServerState]] = {}
        if everything or len(names) > max(16, total // 8):
            for state in self.runtime.show_servers_state():
                out.setdefault(state.backend, []).append(state)
            return out
        answers = self.runtime.execute_many([f"show servers state {n}" for n in names])
        for name, answer in zip(names, answers):
            if answer.strip().startswith("Can't find backend"):
                raise RuntimeAPIError(f"show servers state {name}", answer.strip())
            out[name] = parse_servers_state(answer)
        return out

    def _rewrite_config(self, model: HAProxyModel) -> Rewrite:
        """Write the effective config if it changed (checked first)."""
        self.writes.decided(rewritten=True)  # a deferred rewrite of an older model must not follow
        started = cpu_seconds()
        text = self.render(self.drains.effective(model))
        if text == self.config.read():
            return Rewrite(False, "")
        error = self.validator.install(text)
        self.writes.cost = cpu_seconds() - started
        return Rewrite(not error, error)

    def _deferred_writes(self, render: Renderer, delay: float, background: bool) -> DeferredWrites:
        return DeferredWrites(
            lambda finish: ConfigRewriter(
                render, self.validator, self.config, finish, background=background
            ),
            self.config,
            self.counters,
            self._lock,
            self._forget_running_config,
            delay,
            self.clock,
        )

    def _forget_running_config(self) -> None:
        """HAProxy refused the file of the running model: the next apply takes the long way
        (validate, drop the apps at fault, reload)."""
        self._running_signature = None

    def _after_restart(self) -> None:
        """HAProxy was restarted from the file: check every backend against the model again."""
        self._starts_seen = self.haproxy.starts
        self._generation += 1
        self._forget_synced()
        self.drains.forget_tombstones()  # the file it started from has none
        if self._model is not None:
            self._sync_runtime(self._model, only_changed=False)

    # -- reload path

    def _reload(self, model: HAProxyModel) -> ApplyResult:
        # a master of an earlier run serves until it is adopted or hands its listeners over
        # (HAProxyProcess.start); its ports count as ours in the free-port checks (_known_binds)
        ports = leave_out_taken_ports(model, self._known_binds()) if self.check_ports else None
        waiting: tuple[str, ...] = ()
        port_skips: tuple[Skipped, ...] = ()
        if ports is not None and ports.problems:
            self.counters.refused_ports += 1
            model, port_skips, waiting = ports
            if port_skips and self._runs_listeners_of(model):
                # only the blocked listeners were new: the rest goes through the runtime API
                result = self._apply_runtime(model, fallback=False)
                if result.ok:
                    return replace(result, skipped=port_skips, waiting_for_ports=waiting)
        checked = self.validator.validated(model, self.drains.effective)
        if checked.candidate is None:
            self.counters.validation_failures += 1
            return ApplyResult(
                False,
                "failed",
                error=checked.error,
                validations=checked.validations,
                waiting_for_ports=waiting,
            )
        try:
            result = self._load_checked(checked, port_skips + checked.skipped)
            return replace(result, waiting_for_ports=waiting)
        finally:
            self.config.discard(checked.candidate)

    def _load_checked(self, checked: Validated, skipped: tuple[Skipped, ...]) -> ApplyResult:
        """Run a checked candidate: through the runtime API when HAProxy's listeners already
        fit (apps at fault were left out), else by swapping the file and reloading."""
        assert checked.model is not None and checked.text is not None
        assert checked.candidate is not None
        if skipped and self._runs_listeners_of(checked.model):
            result = self._apply_runtime(checked.model, fallback=False)
            if result.ok:
                return replace(result, skipped=skipped, validations=checked.validations)
        return self._swap_and_reload(checked._replace(skipped=skipped))

    def _swap_and_reload(self, checked: Validated) -> ApplyResult:
        assert checked.model is not None and checked.text is not None
        assert checked.candidate is not None
        model, text = checked.model, checked.text
        running = self.haproxy.running()
        if not running and self.haproxy.adopt(self.reload_timeout):
            # an earlier run's master is adopted, not replaced: reloaded below like ours
            running = True
            self._serving()
        refusal = self._refusal(checked, running)
        if refusal:
            return self._failure(checked, refusal)
        previous_text = self.config.read()
        self.writes.decided(rewritten=False)
        if running:
            self._dump_server_state(self.drains.effective(model))
        self.config.install(checked.candidate)
        try:
            if not running and self.haproxy.ensure_started(self.reload_timeout):
                self._serving()
                return self._loaded(checked, started=True)
            result = self.haproxy.reload(self.reload_timeout)
        except (RuntimeAPIError, HAProxyError) as exc:
            result = ReloadResult(False, message=str(exc))
        if result.ok:
            self.counters.old_workers = result.old_workers
            return self._loaded(checked, new_pid=result.new_pid)
        if "not confirmed" in result.message:
            self._unconfirmed = True  # outcome unknown: settle it first, then try again
        elif self.haproxy.running():
            # the master is alive and refused this config; a master that died meanwhile is a
            # crash, not a verdict on the config, and the restart must be free to load it
            self._failed = (text, self.clock(), result.message)
        if previous_text is not None:
            self.config.write(previous_text)  # a restart must load what actually runs
        return self._failure(checked, f"reload failed: {result.message}")

    def _serving(self) -> None:
        """HAProxy we started (or adopted) serves from now on: say so before the slow part."""
        if self.on_started is not None:
            self.on_started()

    def _refusal(self, checked: Validated, running: bool) -> str:
        """Why not to reload with this candidate now ("" when nothing stops it)."""
        failed = self._failed
        if (
            failed
            and failed[0] == checked.text
            and self.clock() - failed[1] < self.retry_failed_after
        ):
            return f"this config failed to load recently: {failed[2]}"
        assert checked.model is not None
        if self.check_ports:  # ports taken since the check in _reload
            problems = taken_ports(checked.model, self._known_binds(running))
            if problems:
                self.counters.refused_ports += 1
                return "not reloading, new listeners cannot bind: " + "; ".join(problems)
        return ""

    @staticmethod
    def _failure(checked: Validated, error: str) -> ApplyResult:
        return ApplyResult(
            False,
            "failed",
            skipped=checked.skipped,
            validations=checked.validations,
            error=error,
        )

    def _loaded(
        self, checked: Validated, started: bool = False, new_pid: Optional[int] = None
    ) -> ApplyResult:
        """HAProxy runs the candidate now: remember it and converge the runtime state to it."""
        assert checked.model is not None and checked.text is not None
        model = checked.model
        self._running_signature = self.signature(model)
        self._running_binds = model_binds(model)
        self._model = model
        self._generation += 1
        self._forget_synced()
        self._failed = None
        self._forget_server_state()
        self._starts_seen = self.haproxy.starts
        self.drains.forget_tombstones()  # the new worker has only the servers of the file
        self._last_reload_try = self.clock()
        ops = 0
        try:
            # the server-state file may have restored a drain/maint the model no longer wants
            ops = self._sync_runtime(model, only_changed=False)
            self.drains.advance()
            self._rewrite_config(model)
        except RuntimeAPIError as exc:
            log.warning("runtime sync after reload failed", extra={"error": str(exc)})
            self._forget_synced()
        return ApplyResult(
            True,
            "start" if started else "reload",
            reloaded=not started,
            started=started,
            runtime_ops=ops,
            config_written=True,
            skipped=checked.skipped,
            new_worker_pid=new_pid,
            validations=checked.validations,
            config_text=self.config.read() or checked.text,
        )

    def _settle_unconfirmed(self) -> bool:
        status = self.haproxy.proc_status()
        if status is None:
            return False
        self._unconfirmed = False
        self._running_signature = None  # unknown outcome: converge with a fresh reload
        return True

    def _known_binds(self, running: Optional[bool] = None) -> frozenset[tuple[str, int]]:
        """Ports HAProxy serves already (no news): after HAProxy died they may still be held
        for a moment by its exiting workers, and a restart shares them (SO_REUSEPORT)."""
        current = self._running_binds
        if current is None:
            serving = self.haproxy.running() if running is None else running
            if serving or self.haproxy.leftover_master_pid() is not None:
                current = binds_in_config(self.config.read() or "")
            else:
                current = frozenset()
        return current

    # -- tidy-up reloads

    def _tidy_due(self) -> bool:
        return (
            len(self.drains.tombstones) > self.tombstone_limit
            and self._model is not None
            and not self._unconfirmed
            and self.clock() - self._last_reload_try >= self.tidy_reload_quiet
        )

    def _tidy_reload(self) -> None:
        """A validated, seamless reload of the running model: it drops the tombstones."""
        assert self._model is not None
        log.info("reloading to drop tombstones", extra={"tombstones": len(self.tombstones)})
        self._last_reload_try = self.clock()
        try:
            result = self._reload(self._model)
        except (RuntimeAPIError, HAProxyError) as exc:
            result = ApplyResult(False, "failed", error=str(exc))
        if result.reloaded:
            self.counters.reloads += 1
            self.counters.tidy_reloads += 1
        elif not result.ok:
            self.counters.last_error = result.error
            if result.error.startswith("reload failed"):
                self.counters.reload_failures += 1
            log.warning("tidy-up reload failed", extra={"error": result.error[:2000]})

    # -- the server-state file

    def _forget_server_state(self) -> None:
        """Once loaded, the dump is stale: a later restart must not restore old admin states."""
        if self.state_file:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state_file)

    def _dump_server_state(self, model: HAProxyModel) -> None:
        """Save the servers' states for the new worker, with the admin states ``model`` wants
        (the effective model: draining servers included, tombstones not)."""
        if not self.state_file:
            return
        try:
            text = self.runtime.servers_state_text()
        except RuntimeAPIError as exc:
            log.warning("server state not saved before reload", extra={"error": str(exc)})
            return
        dump = server_state_for_reload(text, wanted_admin_states(model), passive_backends(model))
        write_atomically(self.state_file, dump)

    # -- bookkeeping

    def _count(self, result: ApplyResult, duration: float) -> None:
        c = self.counters
        c.applies += 1
        c.last_apply_seconds = duration
        if result.reloaded:
            c.reloads += 1
        if result.started:
            c.starts += 1
        if not result.ok:
            c.last_error = result.error
            if result.error.startswith("reload failed"):
                c.reload_failures += 1
            log.warning("apply failed", extra={"error": result.error[:2000]})
        if result.ok and result.skipped:
            c.last_error = "; ".join(f"{s.app_id}: {s.reason}" for s in result.skipped)[:2000]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (``haproxy -c``)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime
