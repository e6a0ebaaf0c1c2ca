"""Apply a :class:`~sidecar.haproxy_model.HAProxyModel` to a running HAProxy: runtime API or reload.

Decision per call of :meth:`Applier.apply`:

* **listeners unchanged** (same :func:`~sidecar.haproxy_model.listener_signature` as the running
  config): server changes go through the runtime API, backend by backend, diffing the servers
  HAProxy has (``show servers state``) against the model by name. A new server is
  ``add server`` + ``enable health`` (when it has a check) + ``set server ... state ready``
  (dynamic servers start in maintenance); a weight change is ``set weight``; a server the model
  drains, or that left the model, is set to ``drain`` at once and kept in a small registry;
  :meth:`Applier.tick` finishes it once its sessions reach 0 or ``drain_timeout`` passed (then
  its sessions are shut): a server that never took a session is set to ``maint`` and deleted;
  one that did is set to ``maint`` and kept as a *tombstone* (``del server`` of a server that
  streams may still point at crashes HAProxy 2.6 workers, fixed only in 2.9). Tombstones are
  left out of the config file, so the next reload or restart drops them; when more than
  ``tombstone_limit`` pile up and no reload happened for ``tidy_reload_quiet`` seconds,
  :meth:`Applier.tick` does a validated, seamless tidy-up reload of the running model. The config
  file is rewritten to match (validated with ``haproxy -c``, atomic rename, no reload), draining
  servers included (rendered with ``state="drain"``, i.e. ``disabled``) until they are finished,
  so a later reload or restart keeps the same servers. The rewrite waits ``config_write_delay``
  (default 1 s; done by :meth:`Applier.tick`) so a burst of changes shares one ``haproxy -c``,
  which takes 0.2-0.5 s at a few thousand services while the runtime commands take
  milliseconds; 0 writes at once.
  If HAProxy restarts in between, :meth:`Applier.tick` re-checks every backend against the
  model. Any unexpected runtime failure falls back to a validated reload.
* **listeners changed** (or first start, or a backend whose balance algorithm cannot take dynamic
  servers gets a new one): render, write a candidate next to the target, ``haproxy -c`` it; check
  every *new* listening port is free (a taken port breaks a reload for every port for ~2 s):
  frontends whose port another process holds are left out with the apps behind them (listed
  as skipped, ``waiting_for_ports`` set so the daemon applies again later), and the rest goes on
  (through the runtime API when nothing else needs a reload);
  dump ``show servers state`` to the server-state file; rename the candidate into place; reload
  through the master CLI and confirm the new worker. A reload never starts while the previous one
  is unconfirmed. When HAProxy refuses the config, the running one stays; the apps behind the
  error lines are found from ``haproxy -c``'s messages (line numbers and proxy names mapped to the
  sections of the rendered text), dropped and the rest applied; bisection over the apps is the
  fallback when the messages cannot be mapped.

Draining servers get no new requests: ``retries`` + ``option redispatch`` in the rendered
``defaults`` cover the race of a request already on its way to a server that is going.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Callable, Optional, Union

from sidecar.catalog import Skipped
from sidecar.haproxy.process import HAProxyControl, HAProxyError
from sidecar.haproxy.runtime import (
    ReloadResult,
    RuntimeAPI,
    RuntimeAPIError,
    ServerState,
    add_server_command,
    parse_csv_stat,
    parse_servers_state,
    set_state_command,
)
from sidecar.haproxy_model import BackendSpec, FrontendSpec, HAProxyModel, ServerSpec
from sidecar.haproxy_model import listener_signature as haproxy_listener_signature
from sidecar.render import server_line_options

log = logging.getLogger(__name__)

# balance algorithms that accept "add server" in 2.6; source/uri only with "hash-type consistent",
# which sidecar.render emits for them (with another template a refused add falls back to a reload)
ANY_ADDRESS = "0.0.0.0"  # noqa: S104 -- what an empty or "*" bind address means, never bound here
DYNAMIC_BALANCE = frozenset({"roundrobin", "leastconn", "first", "random", "source", "uri"})
MAX_MAPPING_ROUNDS = 5
MAX_VALIDATIONS = 48
RENDER_SERVER_DRAIN = "drain"
PORT_SKIP_REASON = "its service port cannot be bound"
# HAProxy 2.6 workers crash when a server that streams still point at is deleted (fixed in 2.9):
# a drained server that carried traffic stays in MAINT (a tombstone) until the next reload,
# and a tidy-up reload drops them once more than TOMBSTONE_LIMIT pile up with no reload for
# TIDY_RELOAD_QUIET seconds
TOMBSTONE_LIMIT = 50
TIDY_RELOAD_QUIET = 60.0

Renderer = Callable[[HAProxyModel], str]
ServerOptions = Callable[[BackendSpec, ServerSpec], Union[str, Sequence[str]]]
Signature = Callable[[HAProxyModel], Hashable]


# ----------------------------------------------------------------------------- results, counters


@dataclass(frozen=True)
class ApplyResult:
    """What one :meth:`Applier.apply` did."""

    ok: bool
    action: str  # "none" | "runtime" | "reload" | "start" | "failed"
    reloaded: bool = False
    started: bool = False
    runtime_ops: int = 0
    config_written: bool = False
    skipped: tuple[Skipped, ...] = ()  # apps left out: HAProxy refused them, or port taken
    waiting_for_ports: tuple[str, ...] = ()  # taken ports of apps left out: apply again later
    error: str = ""
    new_worker_pid: Optional[int] = None
    validations: int = 0
    duration: float = 0.0
    config_text: Optional[str] = None  # the text now on disk (None when unchanged or failed)


@dataclass
class ApplyCounters:
    """Totals the daemon exports as metrics."""

    applies: int = 0
    reloads: int = 0
    reload_failures: int = 0
    starts: int = 0
    runtime_ops: int = 0
    runtime_failures: int = 0
    validations: int = 0
    validation_failures: int = 0
    refused_ports: int = 0
    skipped_apps: int = 0
    drains_started: int = 0
    servers_deleted: int = 0  # drained servers that never took a session: "del server"
    servers_tombstoned: int = 0  # drained servers that did: MAINT until the next reload
    tidy_reloads: int = 0  # reloads done only to drop tombstones
    config_writes: int = 0
    old_workers: int = 0
    last_error: str = ""
    last_apply_seconds: float = 0.0


@dataclass
class DrainEntry:
    backend: str
    server: str
    address: str
    port: int
    weight: int
    started_at: float
    task_id: str = ""


# ----------------------------------------------------------------------------- pure helpers


def supports_dynamic_servers(backend: BackendSpec) -> bool:
    """Can HAProxy 2.6 ``add server`` to this backend (a dynamic load-balancing algorithm)?

    Sticky backends qualify: the renderer uses dynamic cookies, not a ``cookie`` per server.
    """
    words = backend.balance.split()
    return bool(words) and words[0] in DYNAMIC_BALANCE


def options_text(options: Union[str, Sequence[str]]) -> str:
    return options if isinstance(options, str) else " ".join(options)


def bind_endpoints(frontend: FrontendSpec) -> list[tuple[str, int]]:
    """The (address, port) pairs a frontend listens on."""
    out: list[tuple[str, int]] = []
    for bind in frontend.binds or ("127.0.0.1",):
        host, port = bind, frontend.port
        if bind.startswith("["):
            host, _, rest = bind[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                port = int(rest[1:])
        elif bind.count(":") == 1:
            head, _, tail = bind.partition(":")
            if tail.isdigit():
                host, port = head, int(tail)
        if host in ("", "*"):
            host = ANY_ADDRESS
        out.append((host, port))
    return out


def model_binds(model: HAProxyModel) -> frozenset[tuple[str, int]]:
    return frozenset(ep for fe in model.frontends for ep in bind_endpoints(fe))


_BIND_LINE = re.compile(r"^\s*bind\s+(\S+)")


def binds_in_config(text: str) -> frozenset[tuple[str, int]]:
    """``bind addr:port`` lines of a config file (for an HAProxy we did not start)."""
    out = set()
    for line in text.splitlines():
        m = _BIND_LINE.match(line)
        if not m:
            continue
        addr, _, port = m.group(1).rpartition(":")
        if port.isdigit():
            out.add((addr.strip("[]") or ANY_ADDRESS, int(port)))
    return frozenset(out)


def port_problem(host: str, port: int) -> Optional[str]:
    """Try to bind ``host:port`` the way a plain listener would; None when it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"{host}:{port} is already in use"
            return f"{host}:{port} cannot be bound: {exc.strerror or exc}"
    return None


def apps_of(model: HAProxyModel) -> list[str]:
    return sorted({b.app_id for b in model.backends})


def without_apps(model: HAProxyModel, drop: Iterable[str], reason: str = "") -> HAProxyModel:
    """The model without the backends of ``drop`` (and routes/frontends left with nothing)."""
    dropped = set(drop)
    if not dropped:
        return model
    backends = tuple(b for b in model.backends if b.app_id not in dropped)
    kept = {b.name for b in backends}
    frontends = []
    for fe in model.frontends:
        routes = tuple(r for r in fe.routes if r.backend in kept)
        default = fe.default_backend if fe.default_backend in kept else None
        if routes or default:
            frontends.append(replace(fe, routes=routes, default_backend=default))
    skipped = model.skipped
    if reason:
        skipped += tuple(Skipped(app_id=a, reason=reason) for a in sorted(dropped))
    return replace(model, frontends=tuple(frontends), backends=backends, skipped=skipped)


def frontend_backends(frontend: FrontendSpec) -> set[str]:
    """The backends a frontend sends traffic to."""
    names = {r.backend for r in frontend.routes}
    if frontend.default_backend:
        names.add(frontend.default_backend)
    return names


def without_frontends(model: HAProxyModel, blocked: Mapping[str, str]) -> HAProxyModel:
    """The model without the frontends in ``blocked`` (name -> why it cannot listen).

    Backends only those frontends served go too; every app that lost a route is listed in
    ``skipped`` with the reason, like an app HAProxy refused.
    """
    if not blocked:
        return model
    frontends = tuple(fe for fe in model.frontends if fe.name not in blocked)
    still_served = {name for fe in frontends for name in frontend_backends(fe)}
    lost: dict[str, str] = {}  # backend -> reason
    for fe in model.frontends:
        if fe.name in blocked:
            for name in sorted(frontend_backends(fe)):
                lost.setdefault(name, blocked[fe.name])
    backends = tuple(b for b in model.backends if b.name not in lost or b.name in still_served)
    reasons: dict[str, str] = {}
    for b in model.backends:
        if b.name in lost:
            reasons.setdefault(b.app_id, lost[b.name])
    skipped = tuple(
        Skipped(app_id=app, reason=f"{PORT_SKIP_REASON}: {reason}")
        for app, reason in sorted(reasons.items())
    )
    return replace(model, frontends=frontends, backends=backends, skipped=model.skipped + skipped)


def only_apps(model: HAProxyModel, keep: Iterable[str]) -> HAProxyModel:
    kept = set(keep)
    return without_apps(model, [a for a in apps_of(model) if a not in kept])


@dataclass(frozen=True)
class Section:
    first_line: int  # 1-based line of the section keyword
    kind: str  # "global" | "defaults" | "frontend" | "backend" | "listen" | ...
    name: str


_SECTION_KINDS = (
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "cache",
    "program",
    "http-errors",
    "ring",
    "mailers",
)


def config_sections(text: str) -> list[Section]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line[0].isspace() or line.startswith("#"):
            continue
        words = line.split()
        if words and words[0] in _SECTION_KINDS:
            out.append(Section(number, words[0], words[1] if len(words) > 1 else ""))
    return out


def section_at(sections: Sequence[Section], line: int) -> Optional[Section]:
    found = None
    for section in sections:
        if section.first_line > line:
            break
        found = section
    return found


_LINE_REF = re.compile(r"\[[^\]\s]*:(\d+)\]")
_PROXY_REF = re.compile(r"(?:backend|frontend|proxy|listen)\s+'([^']+)'", re.IGNORECASE)
_SERVER_REF = re.compile(r"'server ([^/' ]+)/")
_FOR_PROXY = re.compile(r"for (?:frontend|backend|proxy|listen) ([^\s:'\"]+)", re.IGNORECASE)


def proxy_apps(model: HAProxyModel) -> dict[str, set[str]]:
    """Section name -> the app ids it serves."""
    by_backend = {b.name: b.app_id for b in model.backends}
    out: dict[str, set[str]] = {name: {app} for name, app in by_backend.items()}
    for fe in model.frontends:
        names = [r.backend for r in fe.routes] + (
            [fe.default_backend] if fe.default_backend else []
        )
        out.setdefault(fe.name, set()).update(by_backend[n] for n in names if n in by_backend)
    return out


def blame_apps(model: HAProxyModel, text: str, errors: str) -> tuple[set[str], bool]:
    """Map ``haproxy -c`` messages to app ids: (apps, every error line was mapped)."""
    sections = config_sections(text)
    lines = text.splitlines()
    apps_by_proxy = proxy_apps(model)
    backend_app = {b.name: b.app_id for b in model.backends}
    blamed: set[str] = set()
    complete = True
    for message in errors.splitlines():
        if "[ALERT]" not in message:
            continue
        found: set[str] = set()
        for ref in _LINE_REF.findall(message):
            number = int(ref)
            section = section_at(sections, number)
            if section is None or section.name not in apps_by_proxy:
                continue
            found |= apps_by_proxy[section.name]
            if section.kind == "frontend" and 0 < number <= len(lines):
                words = set(re.split(r"[\s,()]+", lines[number - 1]))
                named = {backend_app[w] for w in words if w in backend_app}
                if named:
                    found = (found - apps_by_proxy[section.name]) | named
        for pattern in (_PROXY_REF, _SERVER_REF, _FOR_PROXY):
            for name in pattern.findall(message):
                found |= apps_by_proxy.get(name, set())
        if found:
            blamed |= found
        elif not _is_summary(message):
            complete = False
    return blamed, complete


def _is_summary(message: str) -> bool:
    summaries = (
        "Error(s) found in configuration file",
        "Fatal errors found in configuration",
        "Failed to initialize server(s) addr",
        "Some warnings were found",
    )
    return any(s in message for s in summaries)


def wanted_admin_states(model: HAProxyModel) -> dict[tuple[str, str], str]:
    """(backend, server) -> the admin state the model wants: ``ready``, ``drain`` or ``maint``
    (a going server of a sticky backend, see :func:`plan_backend`)."""
    out: dict[tuple[str, str], str] = {}
    for backend in model.backends:
        going = "maint" if backend.sticky else "drain"
        for server in backend.servers:
            out[(backend.name, server.name)] = "ready" if server.state == "ready" else going
    return out


def server_state_for_reload(dump: str, wanted: Mapping[tuple[str, str], str]) -> str:
    """The ``show servers state`` dump with only the lines whose admin state is what the new
    config wants.

    HAProxy restores a server's admin state from this file after a reload; a stale drain or
    maint would keep a server the new model wants ready out of rotation until the runtime sync
    after the reload (a moment with no server at all when it was the last one). A server the
    new config does not have, or whose state differs, loses its line: the new worker then
    starts it as the config says (no ``disabled``: ready; ``disabled``: maint). Lines that
    match keep the old worker's operational and health-check state.
    """
    out: list[str] = []
    header: list[str] = []
    for line in dump.splitlines():
        if line.startswith("#"):
            header = line.lstrip("#").split()
        if not header or line.startswith("#") or not line.strip():
            out.append(line)
            continue
        parsed = parse_servers_state("# " + " ".join(header) + "\n" + line)
        if not parsed:
            continue
        state = parsed[0]
        if wanted.get((state.backend, state.name)) == state.admin:
            out.append(line)
    return "\n".join(out) + "\n"


def plan_backend(
    backend: BackendSpec,
    running: Sequence[ServerState],
    options_for: ServerOptions,
) -> tuple[list[str], list[ServerState], set[str]]:
    """The runtime commands that bring ``running`` to ``backend``'s servers.

    Returns (commands, servers to drain, names now wanted in rotation). Additions come first so
    a backend never passes through an empty state while one server replaces another.
    """
    have = {s.name: s for s in running}
    wanted = {s.name: s for s in backend.servers}
    commands: list[str] = []
    to_drain: list[ServerState] = []
    ready: set[str] = set()
    added = False
    be = backend.name
    for name, spec in sorted(wanted.items()):
        if spec.state != "ready":
            continue
        ready.add(name)
        current = have.get(name)
        if current is None:
            options = options_text(options_for(backend, spec))
            commands.append(add_server_command(be, name, spec.address, spec.port, options))
            if spec.check:
                commands.append(f"enable health {be}/{name}")
            commands.append(set_state_command(be, name, "ready"))
            added = True
            continue
        if current.address != spec.address or current.port != spec.port:
            commands.append(f"set server {be}/{name} addr {spec.address} port {spec.port}")
        if current.uweight != spec.weight:
            commands.append(f"set server {be}/{name} weight {spec.weight}")
        if current.admin != "ready":
            commands.append(set_state_command(be, name, "ready"))
    # "drain" keeps a server out of load balancing, but requests carrying its persistence cookie
    # still reach it: on sticky backends a going server goes to "maint" at once, and
    # "option redispatch" sends such requests elsewhere. Requests in flight finish either way.
    going = "maint" if backend.sticky else "drain"
    for name, current in sorted(have.items()):
        if name in ready:
            continue
        if current.admin == "ready" or (going == "maint" and current.admin == "drain"):
            commands.append(set_state_command(be, name, going))
        to_drain.append(current)
    if added and backend.sticky:
        commands.append(f"enable dynamic-cookie backend {be}")  # cookies for the new servers
    return commands, to_drain, ready


# ----------------------------------------------------------------------------- the applier


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
        server_options: Optional[ServerOptions] = None,
        listener_signature: Optional[Signature] = None,
        check_ports: bool = True,
        config_write_delay: float = 1.0,
        tombstone_limit: int = TOMBSTONE_LIMIT,
        tidy_reload_quiet: float = TIDY_RELOAD_QUIET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.haproxy = haproxy
        self.runtime = runtime
        self.config_path = str(config_path)
        self.render = render
        self.validate_cmd = list(validate_cmd or [haproxy_bin, "-c", "-f"])
        self.state_file = state_file
        self.drain_timeout = drain_timeout
        self.reload_timeout = reload_timeout
        self.retry_failed_after = retry_failed_after
        self.server_options = server_options or _joined_server_options
        self.signature = listener_signature or haproxy_listener_signature
        self.check_ports = check_ports
        self.config_write_delay = config_write_delay
        self.clock = clock
        self.counters = ApplyCounters()
        self.tombstone_limit = tombstone_limit
        self.tidy_reload_quiet = tidy_reload_quiet
        self.draining: dict[tuple[str, str], DrainEntry] = {}
        # (backend, server) -> when it went to MAINT for good; dropped by the next reload
        self.tombstones: dict[tuple[str, str], float] = {}
        self._last_reload_try = clock()
        self._lock = threading.RLock()
        self._running_signature: Optional[Hashable] = None
        self._running_binds: Optional[frozenset[tuple[str, int]]] = None
        self._model: Optional[HAProxyModel] = None  # the last model applied (after skips)
        self._synced: dict[str, BackendSpec] = {}  # backends whose runtime state matches
        self._failed: Optional[tuple[str, float, str]] = None  # text, when, error
        self._unconfirmed = False
        self._dirty_since: Optional[float] = None  # runtime changed, file not rewritten yet
        self._starts_seen = _starts(haproxy)

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
        with self._lock:
            if not self.haproxy.running():
                return 0
            deleted = 0
            try:
                if _starts(self.haproxy) != self._starts_seen:
                    self._after_restart()
                if self.draining:
                    deleted = self._advance_drains()
            except RuntimeAPIError as exc:
                log.warning("applier tick failed", extra={"error": str(exc)})
                return 0
            if self._model is not None and (deleted or self._write_due()):
                _, error = self._rewrite_config(self._model)
                if error:  # the next apply takes the long way: validate, drop bad apps, reload
                    self._running_signature = None
            if self._tidy_due():
                self._tidy_reload()
            return deleted

    def _tidy_due(self) -> bool:
        return (
            len(self.tombstones) > self.tombstone_limit
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

    def _write_due(self) -> bool:
        return self._dirty_since is not None and (
            self.clock() - self._dirty_since >= self.config_write_delay
        )

    def _after_restart(self) -> None:
        """HAProxy was restarted from the file: check every backend against the model again."""
        self._starts_seen = _starts(self.haproxy)
        self._synced = {}
        self.tombstones = {}  # the file it started from has none
        if self._model is not None:
            self._sync_runtime(self._model, only_changed=False)

    def write_only(self, model: HAProxyModel) -> bool:
        """``--once``: render, validate and write the config; no HAProxy involved."""
        with self._lock:
            text = self.render(model)
            ok, error = self._install(text)
            if not ok:
                self.counters.last_error = error
            return ok

    @property
    def running_config(self) -> Optional[HAProxyModel]:
        return self._model

    # -- decision

    def _apply(self, model: HAProxyModel) -> ApplyResult:
        if self._unconfirmed and not self._settle_unconfirmed():
            return ApplyResult(False, "failed", error="the previous reload is still unconfirmed")
        if not self.haproxy.running() or self._running_signature is None:
            return self._reload(model)
        if self.signature(model) != self._running_signature:
            return self._reload(model)
        if self._needs_reload_for_servers(model):
            return self._reload(model)
        if _starts(self.haproxy) != self._starts_seen:
            try:
                self._after_restart()
            except RuntimeAPIError:
                return self._reload(model)
        return self._apply_runtime(model)

    def _apply_runtime(self, model: HAProxyModel, fallback: bool = True) -> ApplyResult:
        """Servers through the runtime API, then the file rewritten to match (no reload)."""
        try:
            ops = self._sync_runtime(model, only_changed=True)
            deleted = self._advance_drains()
        except RuntimeAPIError as exc:
            self.counters.runtime_failures += 1
            log.warning("runtime API failed; reloading instead", extra={"error": str(exc)})
            self._running_signature = None
            return self._reload(model) if fallback else ApplyResult(False, "failed", error=str(exc))
        self._model = model
        if self.config_write_delay > 0 and self._running_signature is not None:
            # the file follows on a later tick; bursts of server changes share one write
            if (ops or deleted) and self._dirty_since is None:
                self._dirty_since = self.clock()
            return ApplyResult(True, "runtime" if ops else "none", runtime_ops=ops)
        written, error = self._rewrite_config(model)
        if error:
            # HAProxy refuses the file although listeners did not change: go the long way,
            # which finds and drops the apps at fault
            if fallback:
                return self._reload(model)
            return ApplyResult(False, "failed", runtime_ops=ops, error=error)
        text = self._read_config() if written else None
        return ApplyResult(
            True,
            "runtime" if ops or written else "none",
            runtime_ops=ops,
            config_written=written,
            config_text=text,
        )

    def _needs_reload_for_servers(self, model: HAProxyModel) -> bool:
        previous = {b.name: b for b in self._model.backends} if self._model else {}
        for backend in model.backends:
            if supports_dynamic_servers(backend):
                continue
            before = previous.get(backend.name)
            known = {s.name for s in before.servers} if before else set()
            if any(s.state == "ready" and s.name not in known for s in backend.servers):
                return True
        return False

    # -- runtime path

    def _sync_runtime(self, model: HAProxyModel, only_changed: bool) -> int:
        backends = [b for b in model.backends if not only_changed or self._synced.get(b.name) != b]
        if not backends:
            return 0
        running = self._servers_state([b.name for b in backends], everything=not only_changed)
        commands: list[str] = []
        drains: list[tuple[BackendSpec, ServerState]] = []
        for backend in backends:
            cmds, to_drain, ready = plan_backend(
                backend, running.get(backend.name, []), self.server_options
            )
            commands.extend(cmds)
            drains.extend((backend, s) for s in to_drain)
            for name in ready:
                self.draining.pop((backend.name, name), None)
                self.tombstones.pop((backend.name, name), None)
        if commands:
            errors = [e for e in self.runtime.write_many(commands) if e is not None]
            self.counters.runtime_ops += len(commands) - len(errors)
            if errors:
                self._synced = {}
                raise errors[0]
        now = self.clock()
        for backend, state in drains:
            key = (backend.name, state.name)
            if key not in self.draining and key not in self.tombstones:
                task_id = next((s.task_id for s in backend.servers if s.name == state.name), "")
                self.draining[key] = DrainEntry(
                    backend.name,
                    state.name,
                    state.address,
                    state.port,
                    state.uweight,
                    now,
                    task_id,
                )
                self.counters.drains_started += 1
        for backend in backends:
            self._synced[backend.name] = backend
        if commands:
            log.info("runtime changes applied", extra={"commands": len(commands)})
        return len(commands)

    def _servers_state(
        self, names: Sequence[str], everything: bool
    ) -> dict[str, list[ServerState]]:
        out: dict[str, list[ServerState]] = {}
        if everything or len(names) > 16:
            for state in self.runtime.show_servers_state():
                out.setdefault(state.backend, []).append(state)
            return out
        answers = self.runtime.execute_many([f"show servers state {n}" for n in names])
        for name, answer in zip(names, answers):
            if answer.strip().startswith("Can't find backend"):
                raise RuntimeAPIError(f"show servers state {name}", answer.strip())
            out[name] = parse_servers_state(answer)
        return out

    def _advance_drains(self) -> int:
        """Finish draining servers whose sessions ended (or whose time is up).

        One that never took a session is deleted; one that did goes to MAINT and stays as a
        tombstone until the next reload (``del server`` of a server that carried traffic can
        crash an HAProxy 2.6 worker). Returns the number of servers taken out of the running
        config this way (deleted or tombstoned): the file is rewritten without them.
        """
        if not self.draining:
            return 0
        names = sorted({be for be, _ in self.draining})
        answers = self.runtime.execute_many([f"show stat {be} 4 -1" for be in names])
        rows = {(r["pxname"], r["svname"]): r for a in answers for r in parse_csv_stat(a)}
        now = self.clock()
        finished = 0
        for key, entry in sorted(self.draining.items()):
            row = rows.get(key)
            if row is None:
                del self.draining[key]  # gone already (reload, restart, someone else)
                continue
            sessions = _stat_int(row, "scur")
            timed_out = now - entry.started_at >= self.drain_timeout
            if sessions + _stat_int(row, "qcur") > 0 and not timed_out:
                continue
            if self._finish_drain(key, row, shut=timed_out and sessions > 0):
                finished += 1
        return finished

    def _finish_drain(self, key: tuple[str, str], row: Mapping[str, str], shut: bool) -> bool:
        """MAINT (sessions shut when asked); deleted if it never took a session, else a
        tombstone. ``True`` when the server is out of the running config now."""
        be, srv = key
        commands = []
        if not row.get("status", "").startswith("MAINT"):
            commands.append(set_state_command(be, srv, "maint"))
        if shut:
            commands.append(f"shutdown sessions server {be}/{srv}")
        delete = _stat_int(row, "stot") == 0 and not shut
        if delete:
            commands.append(f"del server {be}/{srv}")
        errors = self.runtime.write_many(commands) if commands else []
        self.counters.runtime_ops += sum(1 for e in errors if e is None)
        failed = next((e for e in errors if e is not None), None)
        if failed is not None:
            if "No such server" in failed.message:
                del self.draining[key]
            else:
                log.debug("drained server not finished yet", extra={"error": failed.message})
            return False
        del self.draining[key]
        if delete:
            self.counters.servers_deleted += 1
            log.info("server removed", extra={"backend": be, "server": srv})
        else:
            self.tombstones[key] = self.clock()
            self.counters.servers_tombstoned += 1
            log.info(
                "server in maintenance until the next reload", extra={"backend": be, "server": srv}
            )
        return True

    def _effective(self, model: HAProxyModel) -> HAProxyModel:
        """The model as HAProxy runs it: draining servers kept until they are deleted."""
        if not self.draining and all(s.state == "ready" for b in model.backends for s in b.servers):
            return model
        by_backend: dict[str, dict[str, DrainEntry]] = {}
        for (be, name), entry in self.draining.items():
            by_backend.setdefault(be, {})[name] = entry
        backends = []
        for backend in model.backends:
            draining = by_backend.get(backend.name, {})
            # a server the model wants ready again is ready, even before the runtime sync
            # takes it off the drain registry
            servers = [
                s if s.state == "ready" else s._replace(state=RENDER_SERVER_DRAIN)
                for s in backend.servers
                if s.state == "ready" or s.name in draining
            ]
            known = {s.name for s in servers}
            servers += [
                ServerSpec(
                    name=name,
                    address=entry.address,
                    port=entry.port,
                    task_id=entry.task_id,
                    weight=max(entry.weight, 1),
                    state=RENDER_SERVER_DRAIN,
                )
                for name, entry in sorted(draining.items())
                if name not in known
            ]
            backends.append(replace(backend, servers=tuple(servers)))
        return replace(model, backends=tuple(backends))

    def _rewrite_config(self, model: HAProxyModel) -> tuple[bool, str]:
        """Write the effective config if it changed: (written, validation error)."""
        self._dirty_since = None
        text = self.render(self._effective(model))
        if text == self._read_config():
            return False, ""
        ok, error = self._install(text)
        return ok, error

    # -- reload path

    def _reload(self, model: HAProxyModel) -> ApplyResult:
        # a master of an earlier run serves until it is adopted or hands its listeners over
        # (HAProxyProcess.start); its ports count as ours in the free-port checks (_known_binds)
        model, port_skips, waiting = self._leave_out_taken_ports(model)
        if port_skips and self._runs_listeners_of(model):
            # only the blocked listeners were new: the rest goes through the runtime API
            result = self._apply_runtime(model, fallback=False)
            if result.ok:
                return replace(result, skipped=port_skips, waiting_for_ports=waiting)
        accepted, skipped, text, candidate, error, validations = self._validated(model)
        skipped = port_skips + skipped
        if candidate is None or text is None or accepted is None:
            self.counters.validation_failures += 1
            return ApplyResult(
                False, "failed", error=error, validations=validations, waiting_for_ports=waiting
            )
        try:
            if skipped and self._runs_listeners_of(accepted):
                # the apps at fault were left out and the rest has the running listeners
                result = self._apply_runtime(accepted, fallback=False)
                if result.ok:
                    return replace(
                        result, skipped=skipped, validations=validations, waiting_for_ports=waiting
                    )
            result = self._swap_and_reload(accepted, skipped, text, candidate, validations)
            return replace(result, waiting_for_ports=waiting)
        finally:
            if os.path.exists(candidate):
                os.unlink(candidate)

    def _runs_listeners_of(self, model: HAProxyModel) -> bool:
        return (
            self.haproxy.running()
            and self._running_signature is not None
            and self.signature(model) == self._running_signature
            and not self._needs_reload_for_servers(model)
        )

    def _swap_and_reload(
        self,
        model: HAProxyModel,
        skipped: tuple[Skipped, ...],
        text: str,
        candidate: str,
        validations: int,
    ) -> ApplyResult:
        # an earlier run's master is adopted, not replaced: reloaded below like ours
        running = self.haproxy.running() or self.haproxy.adopt(self.reload_timeout)
        failed = self._failed
        if failed and failed[0] == text and self.clock() - failed[1] < self.retry_failed_after:
            return ApplyResult(
                False,
                "failed",
                skipped=skipped,
                validations=validations,
                error=f"this config failed to load recently: {failed[2]}",
            )
        problems = self._new_port_problems(model, running)  # taken since the check in _reload
        if problems:
            self.counters.refused_ports += 1
            return ApplyResult(
                False,
                "failed",
                skipped=skipped,
                validations=validations,
                error="not reloading, new listeners cannot bind: " + "; ".join(problems),
            )
        previous_text = self._read_config()
        if running:
            self._dump_server_state(self._effective(model))
        os.replace(candidate, self.config_path)
        try:
            if not running and self.haproxy.ensure_started(self.reload_timeout):
                return self._loaded(model, skipped, text, validations, started=True)
            result = self.haproxy.reload(self.reload_timeout)
        except (RuntimeAPIError, HAProxyError) as exc:
            result = ReloadResult(False, message=str(exc))
        if result.ok:
            self.counters.old_workers = result.old_workers
            return self._loaded(model, skipped, text, validations, new_pid=result.new_pid)
        if "not confirmed" in result.message:
            self._unconfirmed = True  # outcome unknown: settle it first, then try again
        elif self.haproxy.running():
            # the master is alive and refused this config; a master that died meanwhile is a
            # crash, not a verdict on the config, and the restart must be free to load it
            self._failed = (text, self.clock(), result.message)
        if previous_text is not None:
            self._write_atomically(previous_text)  # a restart must load what actually runs
        return ApplyResult(
            False,
            "failed",
            skipped=skipped,
            validations=validations,
            error=f"reload failed: {result.message}",
        )

    def _loaded(
        self,
        model: HAProxyModel,
        skipped: tuple[Skipped, ...],
        text: str,
        validations: int,
        started: bool = False,
        new_pid: Optional[int] = None,
    ) -> ApplyResult:
        """HAProxy runs ``text`` now: remember it and converge the runtime state to the model."""
        self._running_signature = self.signature(model)
        self._running_binds = model_binds(model)
        self._model = model
        self._synced = {}
        self._failed = None
        self._forget_server_state()
        self._starts_seen = _starts(self.haproxy)
        self.tombstones = {}  # the new worker has only the servers of the file
        self._last_reload_try = self.clock()
        ops = 0
        try:
            # the server-state file may have restored a drain/maint the model no longer wants
            ops = self._sync_runtime(model, only_changed=False)
            self._advance_drains()
            self._rewrite_config(model)
        except RuntimeAPIError as exc:
            log.warning("runtime sync after reload failed", extra={"error": str(exc)})
            self._synced = {}
        return ApplyResult(
            True,
            "start" if started else "reload",
            reloaded=not started,
            started=started,
            runtime_ops=ops,
            config_written=True,
            skipped=skipped,
            new_worker_pid=new_pid,
            validations=validations,
            config_text=self._read_config() or text,
        )

    def _settle_unconfirmed(self) -> bool:
        status = self.haproxy.proc_status()
        if status is None:
            return False
        self._unconfirmed = False
        self._running_signature = None  # unknown outcome: converge with a fresh reload
        return True

    def _known_binds(self, running: bool) -> frozenset[tuple[str, int]]:
        # ports HAProxy serves already are no news; after HAProxy died they may still be held
        # for a moment by its exiting workers, and a restart shares them (SO_REUSEPORT)
        current = self._running_binds
        if current is None:
            serving = running or self._leftover_serving()
            current = binds_in_config(self._read_config() or "") if serving else frozenset()
        return current

    def _leftover_serving(self) -> bool:
        """A master an earlier run left behind serves the config on disk (its ports are ours)."""
        leftover = getattr(self.haproxy, "leftover_master_pid", None)
        return callable(leftover) and leftover() is not None

    def _new_port_problems(self, model: HAProxyModel, running: bool) -> list[str]:
        if not self.check_ports:
            return []
        current = self._known_binds(running)
        problems = []
        for host, port in sorted(model_binds(model) - current):
            problem = port_problem(host, port)
            if problem:
                problems.append(problem)
        return problems

    def _leave_out_taken_ports(
        self, model: HAProxyModel
    ) -> tuple[HAProxyModel, tuple[Skipped, ...], tuple[str, ...]]:
        """The model without the new frontends whose ports another process holds.

        A taken port would fail the whole reload (every port for ~2 s), so only those
        frontends (and the apps behind them) wait; the daemon applies again later.
        Returns (model, apps left out, the problems).
        """
        if not self.check_ports:
            return model, (), ()
        current = self._known_binds(self.haproxy.running())
        checked: dict[tuple[str, int], Optional[str]] = {}
        blocked: dict[str, str] = {}
        for fe in model.frontends:
            for endpoint in bind_endpoints(fe):
                if endpoint in current:
                    continue
                if endpoint not in checked:
                    checked[endpoint] = port_problem(*endpoint)
                problem = checked[endpoint]
                if problem:
                    blocked[fe.name] = problem
                    break
        if not blocked:
            return model, (), ()
        self.counters.refused_ports += 1
        reduced = without_frontends(model, blocked)
        skipped = reduced.skipped[len(model.skipped) :]
        problems = tuple(sorted(set(blocked.values())))
        log.warning(
            "listeners left out, their ports are taken",
            extra={"frontends": sorted(blocked), "problems": list(problems)},
        )
        return reduced, skipped, problems

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
        _write_file_atomically(
            self.state_file, server_state_for_reload(text, wanted_admin_states(model))
        )

    # -- validation and bad apps

    def _validated(
        self, model: HAProxyModel
    ) -> tuple[Optional[HAProxyModel], tuple[Skipped, ...], Optional[str], Optional[str], str, int]:
        """Render and ``haproxy -c`` the model, dropping apps HAProxy refuses.

        Returns (accepted model, skipped apps, text, candidate path, first error, validations).
        """
        budget = _Budget(MAX_VALIDATIONS)
        text = self.render(self._effective(model))
        candidate, error = self._check_text(text, budget)
        if candidate is not None:
            return model, (), text, candidate, "", budget.used
        first_error = error
        log.warning("haproxy refused the config", extra={"error": error[:2000]})
        current = model
        reasons: dict[str, str] = {}  # app id -> the message that condemned it
        for _ in range(MAX_MAPPING_ROUNDS):
            blamed, _complete = blame_apps(current, text, error)
            blamed &= set(apps_of(current))
            if not blamed:
                break
            reasons.update(dict.fromkeys(blamed, _first_alert(error)))
            current = without_apps(current, blamed)
            text = self.render(self._effective(current))
            candidate, error = self._check_text(text, budget)
            if candidate is not None:
                return self._with_skips(model, reasons, text, candidate, budget)
        bad = self._bisect(current, budget)
        if bad:
            reasons.update(dict.fromkeys(bad, _first_alert(error)))
            current = without_apps(current, bad)
            text = self.render(self._effective(current))
            candidate, error = self._check_text(text, budget)
            if candidate is not None:
                return self._with_skips(model, reasons, text, candidate, budget)
        self.counters.last_error = first_error
        return None, (), None, None, first_error, budget.used

    def _with_skips(
        self,
        model: HAProxyModel,
        reasons: dict[str, str],
        text: str,
        candidate: str,
        budget: _Budget,
    ) -> tuple[HAProxyModel, tuple[Skipped, ...], str, str, str, int]:
        skipped = tuple(
            Skipped(app_id=app, reason="haproxy refused its configuration: " + reason)
            for app, reason in sorted(reasons.items())
        )
        accepted = without_apps(model, reasons)
        accepted = replace(accepted, skipped=accepted.skipped + skipped)
        self.counters.skipped_apps += len(skipped)
        log.warning("apps left out of the config", extra={"apps": sorted(reasons)})
        return accepted, skipped, text, candidate, "", budget.used

    def _bisect(self, model: HAProxyModel, budget: _Budget) -> set[str]:
        """Apps whose config HAProxy refuses, by halving (each probe is one ``haproxy -c``)."""
        apps = apps_of(model)
        if not apps or not self._probe(only_apps(model, []), budget):
            return set()  # even without apps the config fails: not an app's fault

        def search(group: list[str]) -> set[str]:
            if len(group) == 1:
                return set(group)
            half = len(group) // 2
            found: set[str] = set()
            for part in (group[:half], group[half:]):
                if budget.left() <= 0:
                    return found
                if not self._probe(only_apps(model, part), budget):
                    found |= search(part)
            return found

        return search(apps)

    def _probe(self, model: HAProxyModel, budget: _Budget) -> bool:
        candidate, _ = self._check_text(self.render(self._effective(model)), budget)
        if candidate is not None:
            os.unlink(candidate)
            return True
        return False

    def _check_text(self, text: str, budget: _Budget) -> tuple[Optional[str], str]:
        """Write a candidate and validate it: (candidate path, "") or (None, error text)."""
        if budget.left() <= 0:
            return None, "validation budget exhausted"
        budget.used += 1
        self.counters.validations += 1
        candidate = self._write_candidate(text)
        ok, error = self._validate(candidate)
        if ok:
            return candidate, ""
        os.unlink(candidate)
        return None, error

    def _validate(self, path: str) -> tuple[bool, str]:
        try:
            proc = subprocess.run(
                [*self.validate_cmd, path],
                capture_output=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"cannot run {self.validate_cmd[0]}: {exc}"
        output = (proc.stderr + proc.stdout).decode("utf-8", "replace")
        if proc.returncode != 0:
            return False, output.strip() or f"exit status {proc.returncode}"
        return True, ""

    def _install(self, text: str) -> tuple[bool, str]:
        """Validate ``text`` and rename it into place (no reload)."""
        candidate, error = self._check_text(text, _Budget(1))
        if candidate is None:
            self.counters.validation_failures += 1
            self.counters.last_error = error
            return False, error
        os.replace(candidate, self.config_path)
        self.counters.config_writes += 1
        return True, ""

    # -- files

    def _write_candidate(self, text: str) -> str:
        directory = os.path.dirname(os.path.abspath(self.config_path))
        base = os.path.basename(self.config_path)
        fd, path = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(path, self._config_mode())
        return path

    def _config_mode(self) -> int:
        try:
            return os.stat(self.config_path).st_mode & 0o777
        except OSError:
            return 0o644

    def _write_atomically(self, text: str) -> None:
        candidate = self._write_candidate(text)
        os.replace(candidate, self.config_path)

    def _read_config(self) -> Optional[str]:
        try:
            with open(self.config_path, encoding="utf-8") as fh:
                return fh.read()
        except OSError:
            return None

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


@dataclass
class _Budget:
    limit: int
    used: int = 0

    def left(self) -> int:
        return self.limit - self.used


def _first_alert(error: str) -> str:
    """HAProxy's first complaint, without its prefix and the (temporary) file name and line."""
    for line in error.splitlines():
        if "[ALERT]" in line and not _is_summary(line):
            text = line.split(" : config : ", 1)[-1]
            if "] : " in text:
                text = text.rsplit("] : ", 1)[-1]
            return text.strip()[:300]
    return error.strip().splitlines()[0][:300] if error.strip() else "invalid configuration"


def _stat_int(row: Mapping[str, str], column: str) -> int:
    value = row.get(column) or "0"
    return int(value) if value.isdigit() else 0


def _write_file_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _starts(haproxy: HAProxyControl) -> int:
    """How many times a supervised HAProxy was (re)started; 0 for one run elsewhere."""
    starts = getattr(haproxy, "starts", 0)
    return starts if isinstance(starts, int) else 0


def _joined_server_options(backend: BackendSpec, server: ServerSpec) -> str:
    return options_text(server_line_options(backend, server))
