"""The desired HAProxy state, as plain frozen data (pure).

``build_model`` turns the sidecar's view of Marathon into an :class:`HAProxyModel`; ``render``
turns that into ``haproxy.cfg`` text and ``apply`` compares two models to decide between runtime
API changes (servers only) and a reload (anything in :func:`listener_signature`).

Everything in the model that reaches the config file is derived and checked here: proxy and server
names are sanitized ids, addresses are IP literals, numbers are ints, modes and algorithms are
members of fixed sets, host names and paths passed the grammars in :mod:`sidecar.labels`.
"""

from __future__ import annotations

import gc
import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from operator import attrgetter
from typing import Any, Callable, NamedTuple, Optional

from marathon_bridge.services import CONTAINER, PortSpec, network_mode, port_specs_in_mode
from sidecar.deployment_groups import GROUP_LABEL, WEIGHT_LABEL, merge_servers, plan_merges
from sidecar.labels import (
    AppOptions,
    LabelMemo,
    LabelProblem,
    PortOptions,
    ip_literal,
    is_check_path,
    parse_app_labels_memo,
)
from sidecar.model import ClusterState
from sidecar.selection import classify_tasks

Resolver = Callable[[str], Optional[str]]

MAX_NAME_LEN = 64
_NAME_UNSAFE_RE = re.compile(r"[^A-Za-z0-9_.:-]")
_NAME_SAFE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_DURATION_RE = re.compile(r"[0-9]{1,9}(?:us|ms|s|m|h|d)?")
_PATH_SETTING_RE = re.compile(r"/[A-Za-z0-9._/@+=,-]*")
_HOST_TEXT_RE = re.compile(r"[A-Za-z0-9._-]{1,253}")


@dataclass(frozen=True)
class ServerSpec:
    """One task behind a backend. ``name`` is derived from the task id and unique in the backend."""

    name: str
    address: str
    port: int
    task_id: str
    weight: int = 1
    state: str = "ready"  # "ready" | "drain"
    check: bool = False  # the server line carries "check" (passive and/or active): `enable health`


@dataclass(frozen=True)
class HealthCheckSpec:
    """An active HAProxy check derived from the app's Marathon health check (opt-in by label)."""

    kind: str  # "http" | "tcp"
    path: str = "/"
    interval_ms: int = 10000
    timeout_ms: int = 5000
    rise: int = 2
    fall: int = 3
    port: Optional[int] = None


@dataclass(frozen=True)
class PassiveCheckSpec:
    """The default check of every server: rare probes plus observing real traffic (layer 4).

    ``inter`` applies while a server is up, ``downinter`` once ``observe`` marked it down after
    ``error_limit`` consecutive connection errors, so a recovered task returns in about
    ``downinter * rise``. docs/health.md has the arithmetic.
    """

    inter_ms: int = 60000
    fastinter_ms: int = 2000
    downinter_ms: int = 2000
    rise: int = 2
    fall: int = 3
    error_limit: int = 3


@dataclass(frozen=True)
class BackendSpec:
    name: str
    app_id: str
    service_port: int
    mode: str  # "http" | "tcp"
    balance: str
    servers: tuple[ServerSpec, ...] = ()
    sticky: bool = False
    health_check: Optional[HealthCheckSpec] = None
    passive_check: Optional[PassiveCheckSpec] = None
    port_index: int = 0


@dataclass(frozen=True)
class RouteSpec:
    """Shared-frontend HTTP routing: ``hosts`` (and the ``path`` prefix) go to ``backend``."""

    backend: str
    hosts: tuple[str, ...] = ()
    path: str = ""


@dataclass(frozen=True)
class FrontendSpec:
    name: str
    port: int
    binds: tuple[str, ...]
    mode: str
    default_backend: Optional[str] = None
    routes: tuple[RouteSpec, ...] = ()


@dataclass(frozen=True)
class SkippedApp:
    """An app (or one of its ports) left out of the config; the reason names no label value."""

    app_id: str
    reason: str
    port_index: Optional[int] = None
    task_id: str = ""  # set when only one task (server) was left out


@dataclass(frozen=True)
class HAProxyModel:
    frontends: tuple[FrontendSpec, ...] = ()
    backends: tuple[BackendSpec, ...] = ()
    skipped: tuple[SkippedApp, ...] = ()
    problems: tuple[LabelProblem, ...] = ()


@dataclass(frozen=True)
class RenderSettings:
    """What the operator chose (flags/env/file); checked on creation, since it reaches the file."""

    bind_addrs: tuple[str, ...] = ("127.0.0.1",)
    label_bind_addrs: tuple[str, ...] = ()  # extra addresses HAPROXY_{n}_BIND_ADDR may pick
    groups: tuple[str, ...] = ()  # () = every app with a service port; "*" = every group
    vhost_port: Optional[int] = None  # shared HTTP frontend for HAPROXY_{n}_VHOST; None: off
    reserved_ports: tuple[int, ...] = ()  # never bound for an app (e.g. the status port)
    admin_socket: str = "/run/marathon-sidecar/haproxy-admin.sock"
    server_state_file: str = "/var/lib/marathon-sidecar/haproxy-server-state"
    hard_stop_after: str = "30s"
    maxconn: int = 4096
    nbthread: Optional[int] = None  # None: HAProxy's default (one per CPU)
    timeout_connect: str = "5s"
    timeout_client: str = "1m"
    timeout_server: str = "1m"
    timeout_tunnel: str = "1h"
    timeout_http_request: str = "10s"
    timeout_http_keep_alive: str = "5s"
    timeout_queue: str = "30s"
    timeout_check: str = "5s"
    retries: int = 3
    spread_checks: int = 50  # percent of random spread on check intervals (HAProxy max 50)
    passive_checks: bool = True
    passive_check: PassiveCheckSpec = field(default_factory=PassiveCheckSpec)
    active_check_min_interval_ms: int = 5000
    active_check_rise: int = 2

    def __post_init__(self) -> None:
        _check_settings(self)


def _check_settings(s: RenderSettings) -> None:
    for name in ("bind_addrs", "label_bind_addrs"):
        for addr in getattr(s, name):
            if ip_literal(addr) is None:
                raise ValueError(f"{name}: not an IP address literal: {addr!r}")
    if not s.bind_addrs:
        raise ValueError("bind_addrs: at least one address is needed")
    for group in s.groups:
        if not isinstance(group, str) or not re.fullmatch(r"\*|[A-Za-z0-9][A-Za-z0-9_.-]*", group):
            raise ValueError(f"groups: not a group name: {group!r}")
    for port in s.reserved_ports:
        _check_int("reserved_ports", port, 1, 65535)
    if s.vhost_port is not None:
        _check_int("vhost_port", s.vhost_port, 1, 65535)
    for name in ("admin_socket", "server_state_file"):
        value = getattr(s, name)
        if not isinstance(value, str) or not _PATH_SETTING_RE.fullmatch(value):
            raise ValueError(f"{name}: needs an absolute path of [A-Za-z0-9._/@+=,-]: {value!r}")
    for name in (
        "hard_stop_after",
        "timeout_connect",
        "timeout_client",
        "timeout_server",
        "timeout_tunnel",
        "timeout_http_request",
        "timeout_http_keep_alive",
        "timeout_queue",
        "timeout_check",
    ):
        value = getattr(s, name)
        if not isinstance(value, str) or not _DURATION_RE.fullmatch(value):
            raise ValueError(f"{name}: not an HAProxy duration like 5s or 500ms: {value!r}")
    _check_int("maxconn", s.maxconn, 1, 10_000_000)
    if s.nbthread is not None:
        _check_int("nbthread", s.nbthread, 1, 64)
    _check_int("retries", s.retries, 0, 100)
    _check_int("spread_checks", s.spread_checks, 0, 50)
    _check_int("active_check_min_interval_ms", s.active_check_min_interval_ms, 100, 86_400_000)
    _check_int("active_check_rise", s.active_check_rise, 1, 100)
    pc = s.passive_check
    for name in ("inter_ms", "fastinter_ms", "downinter_ms"):
        _check_int(f"passive_check.{name}", getattr(pc, name), 100, 86_400_000)
    for name in ("rise", "fall", "error_limit"):
        _check_int(f"passive_check.{name}", getattr(pc, name), 1, 1000)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}: needs an integer {low}..{high}: {value!r}")


# --- names ------------------------------------------------------------------------------------


def _short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]  # noqa: S324


def safe_name(raw: str, max_len: int = MAX_NAME_LEN) -> str:
    """A name HAProxy accepts (``[A-Za-z0-9_.:-]``), stable and injective in practice.

    Unsafe characters become ``_``; when anything was replaced or the text is too long, a hash of
    the original is appended so that different inputs keep different names.
    """
    if len(raw) <= max_len and _NAME_SAFE_RE.fullmatch(raw):
        return raw
    cleaned = _NAME_UNSAFE_RE.sub("_", raw)
    if not cleaned[:1].isalnum():
        cleaned = "x" + cleaned
    if cleaned == raw and len(raw) <= max_len:
        return raw
    suffix = _short_hash(raw)
    return f"{cleaned[: max_len - len(suffix) - 1]}-{suffix}"


def server_name(task_id: str) -> str:
    """The server name of a task: its id when HAProxy accepts it as is, else sanitized + hash."""
    return safe_name(task_id)


def backend_name(app_id: str, service_port: int) -> str:
    stem = app_id.strip("/").replace("/", "_") or "root"
    base = f"be_{stem}_{service_port}"
    return safe_name(base)


def frontend_name(port: int) -> str:
    return f"fe_{port}"


def vhost_frontend_name(port: int) -> str:
    return f"fe_vhost_{port}"


# --- the model --------------------------------------------------------------------------------


class _Candidate:
    """One (app, port) that wants a listener, before port conflicts are settled."""

    __slots__ = ("app_id", "backend_name", "bind_port", "binds", "host_slot", "options", "spec")

    def __init__(
        self,
        app_id: str,
        spec: PortSpec,
        options: PortOptions,
        bind_port: int,
        binds: tuple[str, ...],
        host_slot: Optional[int],
    ) -> None:
        self.app_id = app_id
        self.spec = spec
        self.options = options
        self.bind_port = bind_port
        self.binds = binds
        self.host_slot = host_slot  # where task "ports" has this port; None: container IP
        self.backend_name = backend_name(app_id, spec.service_port)  # before collisions


class _BuiltBackend(NamedTuple):
    """A backend built for one candidate, and the host resolutions it depended on."""

    backend: BackendSpec
    skipped: list[SkippedApp]
    problems: list[LabelProblem]
    hosts: tuple[tuple[str, Optional[str]], ...]


class _AppEntry:
    """Everything build_model derives from one app; reusable while its inputs are unchanged."""

    __slots__ = (
        "app",
        "backends",
        "candidates",
        "frontends",
        "prev",
        "problems",
        "skipped",
        "tasks",
        "verdicts",
    )

    def __init__(
        self,
        app: Mapping[str, Any],
        tasks: Mapping[str, Mapping[str, Any]],
        prev: frozenset[str],
        candidates: list[_Candidate],
        skipped: list[SkippedApp],
        problems: list[LabelProblem],
        verdicts: list[tuple[str, bool, bool, str]],
    ) -> None:
        self.app = app
        self.tasks = tasks
        self.prev = prev  # the app's task ids that were in rotation before
        self.candidates = candidates
        self.skipped = skipped
        self.problems = problems
        self.verdicts = verdicts  # (task id, in rotation, draining, reason), sorted
        self.backends: dict[int, _BuiltBackend] = {}
        self.frontends: dict[int, FrontendSpec] = {}


class BuildCache:
    """Optional memory between :func:`build_model` calls (one per daemon, not shared).

    :class:`ClusterState` is copy-on-write: an app whose definition and tasks did not change keeps
    the very same objects. For those apps, build_model reuses what it derived last time (labels,
    ports, task verdicts, servers) instead of deriving it again, as long as the settings, the
    app's tasks that were in rotation before, and the resolution of its hosts are the same. The
    model is identical with or without a cache; only the time differs.
    """

    def __init__(self) -> None:
        self._settings: Optional[RenderSettings] = None
        self._entries: dict[str, _AppEntry] = {}
        self._resolved: dict[str, Optional[str]] = {}  # host -> address in the last build

    def __len__(self) -> int:
        return len(self._entries)

    def _start(self, settings: RenderSettings) -> None:
        if settings != self._settings:
            self._entries = {}
            self._settings = settings

    def _get(
        self,
        app_id: str,
        app: Mapping[str, Any],
        tasks: Mapping[str, Mapping[str, Any]],
        prev: frozenset[str],
    ) -> Optional[_AppEntry]:
        entry = self._entries.get(app_id)
        if entry is not None and entry.app is app and entry.tasks is tasks and entry.prev == prev:
            return entry
        return None

    def _keep(self, entries: dict[str, _AppEntry]) -> None:
        self._entries = entries

    def _hosts_changed(self, addresses: _AddressMemo) -> bool:
        """Whether any host of the last build resolves differently now (one lookup per host)."""
        return any(addresses.get(host) != address for host, address in self._resolved.items())


def build_model(
    state: ClusterState,
    settings: RenderSettings,
    previously_in: frozenset[str] = frozenset(),
    resolve: Optional[Resolver] = None,
    cache: Optional[BuildCache] = None,
) -> HAProxyModel:
    """Frontends and backends for every served (app, service port) of ``state``.

    Pure: the same inputs give the same model. ``resolve(host) -> ip | None`` turns agent host
    names into addresses (IP literals pass through); a server whose host does not resolve is left
    out, never the whole config. ``cache`` (optional) only makes repeated builds faster.

    The cyclic garbage collector is paused during the build: it allocates hundreds of thousands
    of acyclic objects, and collections triggered by them would traverse the whole state each
    time (the time of a 10k-app build grew faster than the app count because of this).
    """
    with _collector_paused():
        return _build_model(state, settings, previously_in, resolve, cache)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Disable the cyclic GC for the block; restore the previous setting afterwards.

    What the block allocated and kept (the model) is long-lived: it goes to the oldest generation
    directly (freeze + unfreeze moves objects there without traversing them), so re-enabling the
    collector does not start with a young collection over the whole model. Skipped when the
    process froze objects itself (unfreeze would release those too).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _build_model(
    state: ClusterState,
    settings: RenderSettings,
    previously_in: frozenset[str],
    resolve: Optional[Resolver],
    cache: Optional[BuildCache],
) -> HAProxyModel:
    lookup: Resolver = resolve if resolve is not None else (lambda _host: None)
    if cache is not None:
        cache._start(settings)
    entries: dict[str, _AppEntry] = {}
    skipped: list[SkippedApp] = []
    problems: list[LabelProblem] = []
    candidates: list[_Candidate] = []
    context = _BuildContext(settings)
    no_prev: frozenset[str] = frozenset()
    for app_id in sorted(state.apps):
        app = state.apps[app_id]
        tasks = state.app_tasks(app_id)
        prev = frozenset(t for t in tasks if t in previously_in) if previously_in else no_prev
        entry = cache._get(app_id, app, tasks, prev) if cache is not None else None
        if entry is None:
            entry = _app_entry(app_id, app, tasks, prev, context)
        entries[app_id] = entry
        candidates.extend(entry.candidates)
        if entry.skipped:
            skipped.extend(entry.skipped)
        if entry.problems:
            problems.extend(entry.problems)
    if cache is not None:
        cache._keep(entries)
    claims = [
        (c.app_id, c.spec.index, c.bind_port)
        for c in candidates
        if _names_deployment_group(state.apps[c.app_id])  # plan_merges ignores the others
    ]
    plan = plan_merges(claims, state.apps)
    problems.extend(plan.problems)
    joined = {
        (c.app_id, c.spec.index): c for c in candidates if (c.app_id, c.spec.index) in plan.joined
    }
    winners = _settle_ports(
        [c for c in candidates if (c.app_id, c.spec.index) not in joined] if joined else candidates,
        skipped,
    )
    group_backends = plan.backend_names
    backends: list[BackendSpec] = []
    frontends: list[FrontendSpec] = []
    used_names: set[str] = set()
    addresses = _AddressMemo(lookup)
    hosts_changed = cache._hosts_changed(addresses) if cache is not None else True
    for cand in winners:
        name = cand.backend_name
        if group_backends:
            name = group_backends.get((cand.app_id, cand.spec.index), name)
        if name in used_names:
            name = safe_name(f"{name}-{_short_hash(cand.app_id, 8)}")
        used_names.add(name)
        entry = entries[cand.app_id]
        built = entry.backends.get(cand.spec.index)
        if built is None or (hosts_changed and any(addresses.get(h) != a for h, a in built.hosts)):
            built = _build_backend(cand, name, entry, settings, addresses)
            entry.backends[cand.spec.index] = built
        backend = built.backend if built.backend.name == name else replace(built.backend, name=name)
        if built.skipped:
            skipped.extend(built.skipped)
        if built.problems:
            problems.extend(built.problems)
        if group_backends and (cand.app_id, cand.spec.index) in group_backends:  # a group
            parts = [(cand.app_id, backend.servers)]
            for key in plan.members_of((cand.app_id, cand.spec.index)):
                member = _build_backend(joined.pop(key), name, entries[key[0]], settings, addresses)
                skipped.extend(member.skipped)
                parts.append((key[0], member.backend.servers))
            backend = replace(backend, servers=merge_servers(parts, plan.weights))
        backends.append(backend)
        frontend = entry.frontends.get(cand.spec.index)
        if frontend is None or frontend.default_backend != name or frontend.binds != cand.binds:
            frontend = entry.frontends[cand.spec.index] = FrontendSpec(
                f"fe_{cand.bind_port}", cand.bind_port, cand.binds, cand.options.mode, name
            )  # name: frontend_name()
        frontends.append(frontend)
    for lost in joined.values():  # group members whose shared port went to another app
        reason = f"port {lost.bind_port} is already served for another app"
        skipped.append(SkippedApp(lost.app_id, reason, lost.spec.index))
    if settings.vhost_port is not None:
        frontends.append(_vhost_frontend(settings, winners, backends))
    if cache is not None:
        cache._resolved = dict(addresses.known)
    return HAProxyModel(
        frontends=tuple(sorted(frontends, key=_FRONTEND_ORDER)),
        backends=tuple(sorted(backends, key=_BACKEND_ORDER)),
        skipped=tuple(sorted(skipped, key=_skip_key)),
        problems=tuple(sorted(problems, key=lambda p: (p.app_id, p.label, p.reason))),
    )


_FRONTEND_ORDER = attrgetter("port", "name")
_BACKEND_ORDER = attrgetter("name")


class _BuildContext:
    """What one build derives from the settings once, instead of once per app."""

    __slots__ = ("allowed_binds", "group_filter", "label_memo", "reserved", "settings")

    def __init__(self, settings: RenderSettings) -> None:
        self.settings = settings
        wanted = set(settings.groups)
        # None: every group is served (no --group, or "*")
        self.group_filter: Optional[set[str]] = wanted if wanted and "*" not in wanted else None
        self.reserved = set(settings.reserved_ports)
        if settings.vhost_port is not None:
            self.reserved.add(settings.vhost_port)
        self.allowed_binds = {
            ip_literal(a) for a in (*settings.bind_addrs, *settings.label_bind_addrs)
        }
        self.label_memo: LabelMemo = {}


def _names_deployment_group(app: Mapping[str, Any]) -> bool:
    """Whether the app has a label :func:`sidecar.deployment_groups.membership` reads."""
    labels = app.get("labels")
    if not labels or not (type(labels) is dict or isinstance(labels, Mapping)):
        return False
    return GROUP_LABEL in labels or WEIGHT_LABEL in labels


def _app_entry(
    app_id: str,
    app: Mapping[str, Any],
    tasks: Mapping[str, Mapping[str, Any]],
    prev: frozenset[str],
    context: _BuildContext,
) -> _AppEntry:
    skipped: list[SkippedApp] = []
    problems: list[LabelProblem] = []
    candidates = _app_candidates(app_id, app, context, skipped, problems)
    verdicts = classify_tasks(app, tasks.values(), prev) if candidates else []
    return _AppEntry(app, tasks, prev, candidates, skipped, problems, verdicts)


def _skip_key(s: SkippedApp) -> tuple[str, int, str, str]:
    return (s.app_id, -1 if s.port_index is None else s.port_index, s.task_id, s.reason)


def _app_candidates(
    app_id: str,
    app: Mapping[str, Any],
    context: _BuildContext,
    skipped: list[SkippedApp],
    problems: list[LabelProblem],
) -> list[_Candidate]:
    options, label_problems = parse_app_labels_memo(app, context.label_memo)
    if label_problems:
        problems.extend(label_problems)
    if options is None:
        skipped.append(SkippedApp(app_id, "app labels cannot be used"))
        return []
    try:
        mode = network_mode(app)
        specs = port_specs_in_mode(app, mode)
    except Exception:  # a definition Marathon would not produce; leave the app out
        skipped.append(SkippedApp(app_id, "app ports cannot be read"))
        return []
    if options.ports:
        indexes = {s.index for s in specs}
        for index in sorted(set(options.ports) - indexes):
            problems.append(
                LabelProblem(app_id, f"HAPROXY_{index}_*", "the app has no port with this index")
            )
    out = []
    for spec, host_slot in zip(specs, _slots_in_mode(mode, specs)):
        cand = _candidate(app_id, spec, host_slot, options, context, skipped, problems)
        if cand is not None:
            out.append(cand)
    return out


def _host_slots(app: Mapping[str, Any], specs: list[PortSpec]) -> dict[int, Optional[int]]:
    """For each port index: its position in a task's host ``ports``, or ``None`` when tasks serve
    it on their container IP (container networking without a host port).

    The same rule as ``marathon_bridge.services.task_endpoints``, computed once per app instead of
    once per task (tests/sidecar_core checks both agree).
    """
    return {spec.index: slot for spec, slot in zip(specs, _slots_in_mode(network_mode(app), specs))}


def _slots_in_mode(mode: str, specs: list[PortSpec]) -> list[Optional[int]]:
    """:func:`_host_slots` in port order, for an app whose network mode is known."""
    if mode != CONTAINER:
        return list(range(len(specs)))
    slots: list[Optional[int]] = []
    slot = 0
    for spec in specs:
        if spec.host_port is not None:
            slots.append(slot)
            slot += 1
        else:
            slots.append(None)
    return slots


def task_address(
    task: Mapping[str, Any], host_slot: Optional[int], container_port: Optional[int]
) -> Optional[tuple[str, int]]:
    """Where ``task`` serves a port: (host or IP text, port), or ``None`` if it lacks it."""
    if host_slot is None:
        raw = task.get("ipAddresses") or []
        first = raw[0] if isinstance(raw, list) and raw and isinstance(raw[0], Mapping) else {}
        host = str(first.get("ipAddress") or "")
        port: Any = container_port
    else:
        host = str(task.get("host") or "")
        ports = task.get("ports")
        port = ports[host_slot] if isinstance(ports, list) and host_slot < len(ports) else None
        if isinstance(port, float):
            port = int(port)
    if not host or isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    return host, port


class _AddressMemo:
    """host text -> IP literal or None, once per distinct host within one build."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self.known: dict[str, Optional[str]] = {}

    def get(self, host: str) -> Optional[str]:
        try:
            return self.known[host]
        except KeyError:
            address = self.known[host] = _address(host, self._resolve)
            return address


def _candidate(
    app_id: str,
    spec: PortSpec,
    host_slot: Optional[int],
    options: AppOptions,
    context: _BuildContext,
    skipped: list[SkippedApp],
    problems: list[LabelProblem],
) -> Optional[_Candidate]:
    service_port = spec.service_port
    if not isinstance(service_port, int) or not 0 < service_port <= 65535:
        return None  # no service port (yet): nothing to bind
    index = spec.index
    opts = options.port(index)
    protocol = spec.protocol
    if protocol != "tcp" and "tcp" not in str(protocol).lower().split(","):
        skipped.append(SkippedApp(app_id, "only tcp ports are proxied", index))
        return None
    if opts.skip_reason:
        skipped.append(SkippedApp(app_id, opts.skip_reason, index))
        return None
    if not opts.enabled:
        skipped.append(SkippedApp(app_id, "disabled by HAPROXY_{n}_ENABLED", index))
        return None
    wanted = context.group_filter
    if wanted is not None and wanted.isdisjoint(options.port_groups(index)):
        return None  # another sidecar's group: not a problem, not reported
    bind_port = opts.bind_port or service_port
    if bind_port in context.reserved:
        skipped.append(SkippedApp(app_id, "port is reserved by the sidecar", index))
        return None
    binds = context.settings.bind_addrs
    if opts.bind_addr is not None:
        if opts.bind_addr in context.allowed_binds:
            binds = (opts.bind_addr,)
        else:
            problems.append(
                LabelProblem(
                    app_id,
                    f"HAPROXY_{index}_BIND_ADDR",
                    "address not allowed by the sidecar settings; default binds used",
                )
            )
    return _Candidate(app_id, spec, opts, bind_port, tuple(binds), host_slot)


def _settle_ports(candidates: list[_Candidate], skipped: list[SkippedApp]) -> list[_Candidate]:
    """One app per bind port: the lowest (app id, port index) wins; the others are skipped."""
    winners: dict[int, _Candidate] = {}
    for cand in sorted(candidates, key=lambda c: (c.bind_port, c.app_id, c.spec.index)):
        winner = winners.get(cand.bind_port)
        if winner is None:
            winners[cand.bind_port] = cand
        else:
            skipped.append(
                SkippedApp(
                    cand.app_id,
                    f"port {cand.bind_port} is already served for app {winner.app_id!r}",
                    cand.spec.index,
                )
            )
    return [winners[p] for p in sorted(winners)]


def _build_backend(
    cand: _Candidate,
    name: str,
    entry: _AppEntry,
    settings: RenderSettings,
    addresses: _AddressMemo,
) -> _BuiltBackend:
    skipped: list[SkippedApp] = []
    problems: list[LabelProblem] = []
    opts = cand.options
    health = _health_check(cand, entry.app, settings, problems) if opts.health else None
    passive = settings.passive_check if settings.passive_checks else None
    hosts: dict[str, Optional[str]] = {}
    servers = _servers(cand, entry, addresses, hosts, skipped, check=bool(health or passive))
    backend = BackendSpec(
        name,
        cand.app_id,
        cand.spec.service_port,
        opts.mode,
        opts.balance,
        servers,
        opts.sticky,
        health,
        passive,
        cand.spec.index,
    )
    return _BuiltBackend(backend, skipped, problems, tuple(hosts.items()))


def _servers(
    cand: _Candidate,
    entry: _AppEntry,
    addresses: _AddressMemo,
    hosts: dict[str, Optional[str]],
    skipped: list[SkippedApp],
    check: bool,
) -> tuple[ServerSpec, ...]:
    servers: dict[str, ServerSpec] = {}
    index = cand.spec.index
    host_slot, container_port = cand.host_slot, cand.spec.container_port
    known = addresses.known
    tasks = entry.tasks
    app_id = cand.app_id
    for task_id, rotation, draining, _reason in entry.verdicts:
        if rotation:
            state = "ready"
        elif draining and task_id in entry.prev:
            state = "drain"
        else:
            continue
        task = tasks[task_id]
        # the usual case of task_address() (a host name and an int host port), without the call
        host: Any = None
        port: Any = None
        if host_slot is not None:
            host = task.get("host")
            ports = task.get("ports")
            if type(ports) is list and host_slot < len(ports):
                port = ports[host_slot]
        if not (host and type(host) is str and type(port) is int and 0 < port < 65536):
            where = task_address(task, host_slot, container_port)
            if where is None:
                skipped.append(
                    SkippedApp(app_id, "task has no address for this port", index, task_id)
                )
                continue
            host, port = where
        address = known[host] if host in known else addresses.get(host)
        hosts[host] = address
        if address is None:
            skipped.append(
                SkippedApp(app_id, "task host does not resolve to an IP address", index, task_id)
            )
            continue
        if len(task_id) <= MAX_NAME_LEN and _NAME_SAFE_RE.fullmatch(task_id):
            name = task_id  # the common case of server_name(), without the calls
        else:
            name = server_name(task_id)
        if name in servers:
            name = safe_name(f"{name}-{_short_hash(task_id, 40)}", 128)
        servers[name] = ServerSpec(name, address, port, task_id, 1, state, check)
    return tuple(map(servers.__getitem__, sorted(servers)))


def _address(host: Any, resolve: Resolver) -> Optional[str]:
    literal = ip_literal(host)
    if literal is not None:
        return literal
    if not isinstance(host, str) or not _HOST_TEXT_RE.fullmatch(host):
        return None
    try:
        resolved = resolve(host)
    except Exception:  # the resolver is the daemon's; a failure there is just "no address"
        return None
    return ip_literal(resolved)


def _health_check(
    cand: _Candidate, app: Mapping[str, Any], settings: RenderSettings, problems: list[LabelProblem]
) -> Optional[HealthCheckSpec]:
    """The Marathon HTTP/TCP health check of this port index as an HAProxy check, if usable."""
    label = f"HAPROXY_{cand.spec.index}_HEALTHCHECK"
    check = _marathon_check(app, cand.spec.index)
    if check is None:
        problems.append(
            LabelProblem(cand.app_id, label, "no Marathon HTTP/TCP health check for this port")
        )
        return None
    protocol = str(check.get("protocol") or "HTTP").upper()
    kind = "http" if protocol in ("HTTP", "MESOS_HTTP") else "tcp"
    path = "/"
    if kind == "http":
        raw_path = check.get("path", "/")
        if is_check_path(raw_path):
            path = raw_path
        else:
            kind = "tcp"
            problems.append(
                LabelProblem(
                    cand.app_id, label, "Marathon health check path not usable; TCP check used"
                )
            )
    interval_ms = _seconds_ms(
        check.get("intervalSeconds"), 60, settings.active_check_min_interval_ms
    )
    timeout_ms = _seconds_ms(check.get("timeoutSeconds"), 20, 1000)
    failures = check.get("maxConsecutiveFailures")
    fall = (
        failures if isinstance(failures, int) and _is_int(failures) and 1 <= failures <= 100 else 3
    )
    return HealthCheckSpec(
        kind=kind,
        path=path,
        interval_ms=interval_ms,
        timeout_ms=min(timeout_ms, interval_ms),
        rise=settings.active_check_rise,
        fall=fall,
    )


def _marathon_check(app: Mapping[str, Any], index: int) -> Optional[Mapping[str, Any]]:
    checks = app.get("healthChecks")
    for check in checks if isinstance(checks, list) else []:
        if not isinstance(check, Mapping):
            continue
        protocol = str(check.get("protocol") or "HTTP").upper()
        if protocol not in ("HTTP", "HTTPS", "TCP", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP"):
            continue
        port_index = check.get("portIndex")
        if port_index is None and "port" not in check:
            port_index = 0
        if _is_int(port_index) and port_index == index:
            return check
    return None


def _seconds_ms(value: Any, default: int, low_ms: int) -> int:
    seconds = value if _is_int(value) or isinstance(value, float) else default
    if not 0 < seconds <= 86400:  # also false for NaN
        seconds = default
    return max(low_ms, min(int(seconds * 1000), 86_400_000))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _vhost_frontend(
    settings: RenderSettings, winners: list[_Candidate], backends: list[BackendSpec]
) -> FrontendSpec:
    """The shared HTTP frontend: one route per http backend with vhosts, most specific first."""
    by_key = {(b.app_id, b.port_index): b for b in backends}
    ranked = []
    for cand in winners:
        opts = cand.options
        if opts.mode != "http" or not opts.vhosts:
            continue
        backend = by_key[(cand.app_id, cand.spec.index)]
        route = RouteSpec(backend=backend.name, hosts=opts.vhosts, path=opts.path)
        ranked.append(((-opts.weight, -len(opts.path), backend.name), route))
    port = settings.vhost_port if settings.vhost_port is not None else 0
    return FrontendSpec(
        name=vhost_frontend_name(port),
        port=port,
        binds=settings.bind_addrs,
        mode="http",
        routes=tuple(route for _key, route in sorted(ranked, key=lambda item: item[0])),
    )


# --- reload decisions -------------------------------------------------------------------------


def listener_signature(model: HAProxyModel) -> tuple[Any, ...]:
    """Everything that needs a reload when it changes: frontends and backends minus servers."""
    frontends = tuple(
        (f.name, f.port, f.binds, f.mode, f.default_backend, f.routes) for f in model.frontends
    )
    backends = tuple(
        (b.name, b.mode, b.balance, b.sticky, b.health_check, b.passive_check)
        for b in model.backends
    )
    return (frontends, backends)


def servers_by_backend(model: HAProxyModel) -> dict[str, tuple[ServerSpec, ...]]:
    """Backend name -> its servers; what the runtime API keeps in step between reloads."""
    return {b.name: b.servers for b in model.backends}


def in_rotation(model: HAProxyModel) -> frozenset[str]:
    """Task ids that take traffic in ``model``: the ``previously_in`` of the next build."""
    return frozenset(s.task_id for b in model.backends for s in b.servers if s.state == "ready")


def iter_servers(model: HAProxyModel) -> Iterable[tuple[BackendSpec, ServerSpec]]:
    for backend in model.backends:
        for server in backend.servers:
            yield backend, server
