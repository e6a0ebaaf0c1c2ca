"""The catalog as an HAProxy model: frontends, backends and servers (pure, source neutral).

:func:`build_model` decides what this sidecar serves of a :class:`~sidecar.catalog.Catalog`,
whatever source produced it:

- which services: the operator's groups (``--group``); ports the sidecar reserves (its status
  port, the vhost port, HAProxy's metrics port) are refused; a service's own bind address only
  when the operator allows it, else the default binds (with a problem);
- one service per bind port: the lowest (app id, port index) wins, the others are skipped;
- deployment groups: members binding the same port share one frontend and one backend
  (:mod:`sidecar.deployment_groups`);
- names (:mod:`sidecar.names`), unique across backends;
- servers: the ``ready`` and ``drain`` instances, host names resolved to IP literals by the
  ``resolve`` function passed in (an instance whose host does not resolve is left out, never the
  whole config); active checks with the operator's limits, the passive check of every server;
- the shared vhost frontend (``--vhost-port``): one route per http service with vhosts.

A :class:`BuildCache` keeps what each service derived; a service that is the same object as in
the last build (catalogs are copy-on-write) is not derived again. With a cache, a catalog whose
changed services (:func:`~sidecar.catalog.changed_services`) differ in their instances only is
not built again at all: the last model is patched (:func:`~sidecar.haproxy_model.patched_model`)
with the backends of those services rebuilt, so an event costs what it changed. Anything else
(services added or removed, options, deployment groups, port conflicts, settings, a host that
resolves differently, servers left out) takes the full build.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from operator import attrgetter
from typing import Callable, NamedTuple, Optional

from sidecar.catalog import (
    DRAIN,
    READY,
    Catalog,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
    changed_services,
)
from sidecar.deployment_groups import Claim, MergePlan, merge_servers, plan_merges
from sidecar.grammar import ip_literal
from sidecar.haproxy_model import (
    BackendSpec,
    FrontendSpec,
    HAProxyModel,
    HealthCheckSpec,
    RouteSpec,
    ServerSpec,
    patched_model,
    tagged_after,
)
from sidecar.names import (
    MAX_NAME_LEN,
    NAME_SAFE_RE,
    backend_name,
    frontend_name,
    safe_name,
    server_name,
    short_hash,
    vhost_frontend_name,
)
from sidecar.render_settings import RenderSettings

Resolver = Callable[[str], Optional[str]]

_HOST_TEXT_RE = re.compile(r"[A-Za-z0-9._-]{1,253}")
_FRONTEND_ORDER = attrgetter("port", "name")
_BACKEND_ORDER = attrgetter("name")
_BY_ORDER = attrgetter("order")


class _Candidate:
    """One service that wants a listener here, before port conflicts are settled."""

    __slots__ = ("backend_name", "bind_port", "binds", "claim_key", "options", "order", "service")

    def __init__(self, service: Service, binds: tuple[str, ...]) -> None:
        self.service = service
        self.options: ServiceOptions = service.options
        self.bind_port = service.options.bind_port
        self.binds = binds
        self.backend_name = backend_name(service.app_id, service.options.service_port)
        self.claim_key = (service.app_id, service.port_index)
        self.order = (self.bind_port, service.app_id, service.port_index)  # see _settle_ports


class _BuiltBackend(NamedTuple):
    """A backend built for one candidate, and the host resolutions it depended on."""

    backend: BackendSpec
    skipped: list[Skipped]
    hosts: tuple[tuple[str, Optional[str]], ...]


class _Entry:
    """What build_model derived from one service; reusable while the service is the same object."""

    __slots__ = ("backend", "candidate", "frontend", "problem", "service", "skip")

    def __init__(
        self,
        service: Service,
        candidate: Optional[_Candidate],
        skip: Optional[Skipped],
        problem: Optional[Problem],
    ) -> None:
        self.service = service
        self.candidate = candidate
        self.skip = skip  # why it is not served here (None: served, or another group's)
        self.problem = problem
        self.backend: Optional[_BuiltBackend] = None
        self.frontend: Optional[FrontendSpec] = None


class BuildCache:
    """Optional memory between :func:`build_model` calls (one per daemon, not shared).

    For a service that is the same object as last time, build_model reuses what it derived
    (candidate, servers, frontend), as long as the settings and the resolution of its hosts are
    the same. The model is identical with or without a cache; only the time differs.
    """

    def __init__(self) -> None:
        self._settings: Optional[RenderSettings] = None
        self._entries: dict[str, _Entry] = {}
        self._resolved: dict[str, Optional[str]] = {}  # host -> address in the last build
        self._answers: dict[str, Optional[str]] = {}  # host name -> what resolve() answered
        self._catalog: Optional[Catalog] = None  # the last catalog built
        self._model: Optional[HAProxyModel] = None  # and its model
        self._owners: dict[str, str] = {}  # service key -> the backend built from it alone
        self.patched = 0  # builds that patched the last model (the rest were full builds)
        self.rebuilt: tuple[str, ...] = ()  # keys of the services the last build derived anew

    def __len__(self) -> int:
        return len(self._entries)

    def _start(self, settings: RenderSettings) -> dict[str, _Entry]:
        if settings != self._settings:
            self._entries = {}
            self._settings = settings
            self._catalog = self._model = None
        return self._entries

    def _built(self, catalog: Catalog, model: HAProxyModel, context: _Context) -> HAProxyModel:
        """Remember the catalog and model of a build (the model tagged after the last one)."""
        tagged_after(model, self._model)
        self._catalog, self._model = catalog, model
        self._remember_hosts(context.addresses)
        return model

    def _remember_hosts(self, addresses: _AddressMemo) -> None:
        self._resolved = dict(addresses.known)
        self._answers = dict(addresses.answers)

    def _hosts_changed(self, addresses: _AddressMemo) -> bool:
        """Whether any host name of the last build resolves differently now (one lookup per
        name); when none does, ``addresses`` starts from the last build's addresses."""
        for host, answer in self._answers.items():
            if addresses.answer(host) != answer:
                return True
        addresses.known.update(self._resolved)
        return False


class _Context:
    """What one build derives from the settings once, instead of once per service."""

    __slots__ = ("addresses", "allowed_binds", "group_filter", "reserved", "settings")

    def __init__(self, settings: RenderSettings, resolve: Resolver) -> None:
        self.settings = settings
        wanted = set(settings.groups)
        # None: every group is served (no --group, or "*")
        self.group_filter: Optional[set[str]] = wanted if wanted and "*" not in wanted else None
        self.reserved = set(settings.reserved_ports)
        if settings.vhost_port is not None:
            self.reserved.add(settings.vhost_port)
        self.reserved.update(int(a.rpartition(":")[2]) for a in settings.fixed_listeners)
        self.allowed_binds = {
            ip_literal(a) for a in (*settings.bind_addrs, *settings.label_bind_addrs)
        }
        self.addresses = _AddressMemo(resolve)


class _Parts:
    """The model under construction."""

    def __init__(self, catalog: Catalog) -> None:
        self.frontends: list[FrontendSpec] = []
        self.backends: list[BackendSpec] = []
        self.skipped: list[Skipped] = list(catalog.skipped)
        self.problems: list[Problem] = list(catalog.problems)
        self.used_names: set[str] = set()
        self.owners: dict[str, str] = {}  # service key -> a backend built from it alone

    def model(self) -> HAProxyModel:
        return HAProxyModel(
            frontends=tuple(sorted(self.frontends, key=_FRONTEND_ORDER)),
            backends=tuple(sorted(self.backends, key=_BACKEND_ORDER)),
            skipped=tuple(sorted(self.skipped, key=_skip_key)),
            problems=tuple(sorted(self.problems, key=lambda p: (p.app_id, p.label, p.reason))),
        )


def build_model(
    catalog: Catalog,
    settings: RenderSettings,
    resolve: Optional[Resolver] = None,
    cache: Optional[BuildCache] = None,
) -> HAProxyModel:
    """Frontends and backends for every service of ``catalog`` this sidecar serves.

    Pure: the same inputs give the same model. ``resolve(host) -> ip | None`` turns host names
    into addresses (IP literals pass through). ``cache`` (optional) only makes builds faster.
    """
    context = _Context(settings, resolve if resolve is not None else _no_lookup)
    if cache is not None:
        patched = _patched(cache, catalog, context)
        if patched is not None:
            cache.patched += 1
            return patched
    known = cache._start(settings) if cache is not None else {}
    entries: dict[str, _Entry] = {}
    parts = _Parts(catalog)
    candidates: list[_Candidate] = []
    rebuilt: list[str] = []
    for key, service in catalog.services.items():
        entry = known.get(key)
        if entry is None or entry.service is not service:
            entry = _entry(service, context)
            rebuilt.append(key)
        entries[key] = entry
        if entry.candidate is not None:
            candidates.append(entry.candidate)
        if entry.skip is not None:
            parts.skipped.append(entry.skip)
        if entry.problem is not None:
            parts.problems.append(entry.problem)
    if cache is not None:
        cache._entries = entries
    plan = plan_merges(
        Claim(c.service.app_id, c.service.port_index, c.bind_port, c.options.deployment)
        for c in candidates
        if c.options.deployment is not None
    )
    joined = {c.claim_key: c for c in candidates if c.claim_key in plan.joined}
    winners = _settle_ports([c for c in candidates if c.claim_key not in joined], parts.skipped)
    hosts_changed = cache._hosts_changed(context.addresses) if cache is not None else True
    for cand in winners:
        _serve(cand, entries, plan, joined, context, parts, hosts_changed)
    for lost in joined.values():  # group members whose shared port went to another app
        reason = f"port {lost.bind_port} is already served for another app"
        parts.skipped.append(Skipped(lost.service.app_id, reason, lost.service.port_index))
    if settings.vhost_port is not None:
        parts.frontends.append(_vhost_frontend(settings, winners, parts.backends))
    if cache is None:
        return parts.model()
    cache._owners, cache.rebuilt = parts.owners, tuple(rebuilt)
    return cache._built(catalog, parts.model(), context)


def _patched(cache: BuildCache, catalog: Catalog, context: _Context) -> Optional[HAProxyModel]:
    """The last model with the backends of the changed services rebuilt, when they changed
    in their instances only; ``None``: a full build is needed (see the module doc)."""
    last, model = cache._catalog, cache._model
    if last is None or model is None or context.settings != cache._settings:
        return None
    if catalog.problems != last.problems or catalog.skipped != last.skipped:
        return None
    if cache._hosts_changed(context.addresses):
        return None
    updates: dict[str, _Entry] = {}
    backends: dict[str, BackendSpec] = {}
    for key in changed_services(last, catalog):
        old, new = last.services.get(key), catalog.services.get(key)
        if old is new:
            continue
        entry = cache._entries.get(key)
        if old is None or new is None or entry is None or entry.service is not old:
            return None
        if new.options != old.options or new.options.deployment is not None:
            return None
        updated = _Entry(new, None, entry.skip, entry.problem)
        if entry.candidate is not None:  # served here, or lost its port to another service
            updated.candidate = _Candidate(new, entry.candidate.binds)
        name = cache._owners.get(key)
        if name is not None and updated.candidate is not None and entry.backend is not None:
            built = _build_backend(updated.candidate, name, context)
            if built.skipped != entry.backend.skipped:
                return None
            updated.backend, updated.frontend = built, entry.frontend
            backends[name] = built.backend
        updates[key] = updated
    cache._entries.update(updates)
    cache._catalog, cache.rebuilt = catalog, tuple(updates)
    cache._remember_hosts(context.addresses)
    cache._model = patched_model(model, backends)
    return cache._model


def _no_lookup(_host: str) -> Optional[str]:
    return None


def _entry(service: Service, context: _Context) -> _Entry:
    """Whether this sidecar serves ``service``, and with which binds."""
    options = service.options
    wanted = context.group_filter
    if wanted is not None and wanted.isdisjoint(options.groups):
        return _Entry(service, None, None, None)  # another sidecar's group: not reported
    index = service.port_index
    if options.bind_port in context.reserved:
        reason = "port is reserved by the sidecar"
        return _Entry(service, None, Skipped(service.app_id, reason, index), None)
    binds = context.settings.bind_addrs
    problem = None
    if options.bind_addr is not None:
        if options.bind_addr in context.allowed_binds:
            binds = (options.bind_addr,)
        else:
            problem = Problem(
                service.app_id,
                f"HAPROXY_{index}_BIND_ADDR",
                "address not allowed by the sidecar settings; default binds used",
            )
    return _Entry(service, _Candidate(service, tuple(binds)), None, problem)


def _skip_key(s: Skipped) -> tuple[str, int, str, str]:
    return (s.app_id, -1 if s.port_index is None else s.port_index, s.task_id, s.reason)


def _settle_ports(candidates: list[_Candidate], skipped: list[Skipped]) -> list[_Candidate]:
    """One service per bind port: the lowest (app id, port index) wins; the others are skipped."""
    winners: dict[int, _Candidate] = {}
    for cand in sorted(candidates, key=_BY_ORDER):
        winner = winners.get(cand.bind_port)
        if winner is None:
            winners[cand.bind_port] = cand
        else:
            skipped.append(
                Skipped(
                    cand.service.app_id,
                    f"port {cand.bind_port} is already served for app {winner.service.app_id!r}",
                    cand.service.port_index,
                )
            )
    return [winners[p] for p in sorted(winners)]


def _serve(
    cand: _Candidate,
    entries: Mapping[str, _Entry],
    plan: MergePlan,
    joined: dict[tuple[str, int], _Candidate],
    context: _Context,
    parts: _Parts,
    hosts_changed: bool,
) -> None:
    """The backend and frontend of one winning candidate (with its group members merged)."""
    name = plan.backend_names.get(cand.claim_key, cand.backend_name)
    if name in parts.used_names:
        name = safe_name(f"{name}-{short_hash(cand.service.app_id, 8)}")
    parts.used_names.add(name)
    entry = entries[cand.service.key]
    addresses = context.addresses
    built = entry.backend
    if built is None or (hosts_changed and any(addresses.get(h) != a for h, a in built.hosts)):
        built = entry.backend = _build_backend(cand, name, context)
    backend = built.backend if built.backend.name == name else replace(built.backend, name=name)
    if built.skipped:
        parts.skipped.extend(built.skipped)
    if cand.claim_key in plan.backend_names:  # a deployment group's primary
        backend = _merge_members(cand, backend, plan, joined, context, parts)
    else:
        parts.owners[cand.service.key] = name
    parts.backends.append(backend)
    frontend = entry.frontend
    if frontend is None or frontend.default_backend != name or frontend.binds != cand.binds:
        frontend = entry.frontend = FrontendSpec(
            frontend_name(cand.bind_port), cand.bind_port, cand.binds, cand.options.mode, name
        )
    parts.frontends.append(frontend)


def _merge_members(
    primary: _Candidate,
    backend: BackendSpec,
    plan: MergePlan,
    joined: dict[tuple[str, int], _Candidate],
    context: _Context,
    parts: _Parts,
) -> BackendSpec:
    servers = [(primary.service.app_id, backend.servers)]
    keys = [primary.service.key]
    for claim in plan.members_of(primary.claim_key):
        member = joined.pop(claim)
        built = _build_backend(member, backend.name, context)
        parts.skipped.extend(built.skipped)
        servers.append((claim[0], built.backend.servers))
        keys.append(member.service.key)
    return replace(backend, servers=merge_servers(servers, plan.weights), service_keys=tuple(keys))


def _build_backend(cand: _Candidate, name: str, context: _Context) -> _BuiltBackend:
    settings = context.settings
    opts = cand.options
    health = _health_check(opts, settings)
    passive = settings.passive_check if settings.passive_checks else None
    hosts: dict[str, Optional[str]] = {}
    skipped: list[Skipped] = []
    servers = _servers(cand.service, context.addresses, hosts, skipped, bool(health or passive))
    backend = BackendSpec(
        name,
        cand.service.app_id,
        opts.service_port,
        opts.mode,
        opts.balance,
        servers,
        opts.sticky,
        health,
        passive,
        cand.service.port_index,
        (cand.service.key,),
    )
    return _BuiltBackend(backend, skipped, tuple(hosts.items()))


def _servers(
    service: Service,
    addresses: _AddressMemo,
    hosts: dict[str, Optional[str]],
    skipped: list[Skipped],
    check: bool,
) -> tuple[ServerSpec, ...]:
    servers: dict[str, ServerSpec] = {}
    new = tuple.__new__  # ServerSpec(*fields) without its Python-level __new__
    known = addresses.known
    app_id, index = service.app_id, service.port_index
    for instance in service.instances:
        state = instance.state
        if state != READY and state != DRAIN:
            continue
        task_id, host, port = instance.id, instance.host, instance.port
        if not host or port is None:
            skipped.append(Skipped(app_id, "task has no address for this port", index, task_id))
            continue
        address = known[host] if host in known else addresses.get(host)
        hosts[host] = address
        if address is None:
            skipped.append(
                Skipped(app_id, "task host does not resolve to an IP address", index, task_id)
            )
            continue
        if len(task_id) <= MAX_NAME_LEN and NAME_SAFE_RE.fullmatch(task_id):
            name = task_id  # the common case of server_name(), without the calls
        else:
            name = server_name(task_id)
        if name in servers:
            name = safe_name(f"{name}-{short_hash(task_id, 40)}", 128)
        fields = (name, address, port, task_id, instance.weight, state, check)
        servers[name] = new(ServerSpec, fields)
    return tuple(map(servers.__getitem__, sorted(servers)))


class _AddressMemo:
    """host text -> IP literal or None, once per distinct host within one build."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self.known: dict[str, Optional[str]] = {}
        self.answers: dict[str, Optional[str]] = {}  # host name -> what resolve() answered

    def get(self, host: str) -> Optional[str]:
        try:
            return self.known[host]
        except KeyError:
            address = self.known[host] = self._address(host)
            return address

    def _address(self, host: str) -> Optional[str]:
        literal = ip_literal(host)
        if literal is not None:
            return literal
        if not isinstance(host, str) or not _HOST_TEXT_RE.fullmatch(host):
            return None
        return ip_literal(self.answer(host))

    def answer(self, host: str) -> Optional[str]:
        """What ``resolve`` says about a host name now (remembered in :attr:`answers`)."""
        try:
            answer = self._resolve(host)
        except Exception:  # the resolver is the daemon's; a failure there is just "no address"
            answer = None
        self.answers[host] = answer
        return answer


def _health_check(options: ServiceOptions, settings: RenderSettings) -> Optional[HealthCheckSpec]:
    """The service's active check with the operator's limits (minimum interval, rise)."""
    check = options.health_check
    if check is None:
        return None
    interval_ms = max(settings.active_check_min_interval_ms, check.interval_ms)
    return HealthCheckSpec(
        kind=check.kind,
        path=check.path,
        interval_ms=interval_ms,
        timeout_ms=min(check.timeout_ms, interval_ms),
        rise=settings.active_check_rise,
        fall=check.fall,
    )


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
        backend = by_key[cand.claim_key]
        route = RouteSpec(backend=backend.name, hosts=opts.vhosts, path=opts.path)
        ranked.append(((-opts.route_weight, -len(opts.path), backend.name), route))
    port = settings.vhost_port if settings.vhost_port is not None else 0
    return FrontendSpec(
        name=vhost_frontend_name(port),
        port=port,
        binds=settings.bind_addrs,
        mode="http",
        routes=tuple(route for _key, route in sorted(ranked, key=lambda item: item[0])),
    )
