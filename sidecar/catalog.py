"""The service catalog: what every source produces and the HAProxy builder consumes (pure).

A :class:`Catalog` holds one :class:`Service` per served port of an origin app (a Marathon app's
port; a ZooKeeper service), with its source-neutral :class:`ServiceOptions` (ports, mode,
balance, bind address, vhosts, groups, deployment group, active health check...) and its
:class:`Instance` list (where each instance listens and whether it takes traffic: ``ready``,
``drain`` or ``out``, with the reason). What a source could not use travels along as neutral
records: :class:`Problem` (an option that was not honored) and :class:`Skipped` (an app, port or
instance left out).

Catalogs are values. A source builds the next catalog copy-on-write: a service that did not
change keeps the very same :class:`Service` object, so consumers may cache by identity.
:func:`updated_catalog` does that and tags the new catalog with the keys it changed
(:mod:`sidecar.changes`), so a consumer learns which services to look at with
:func:`changed_services` without walking them all.

Every catalog converts to plain JSON data and back (:meth:`Catalog.to_dict`,
:func:`catalog_from_dict`); reading back checks every field against :mod:`sidecar.grammar`
and raises :class:`CatalogError` naming the first bad one. :func:`service_from_dict` reads one
service, so a reader can skip a bad service and keep the others.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

from marathon_bridge.errors import MarathonBridgeError
from sidecar import grammar
from sidecar.changes import Changes, changed_between, next_version

READY, DRAIN, OUT = "ready", "drain", "out"
INSTANCE_STATES = (READY, DRAIN, OUT)
FORMAT = "marathon-sidecar/catalog/1"


class CatalogError(MarathonBridgeError):
    """Catalog data that cannot be used; ``path`` names the field (e.g. ``services[2].mode``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


@dataclass(frozen=True)
class Problem:
    """An option that was not (fully) honored, e.g. a bad label. Never carries the value."""

    app_id: str
    label: str  # the label or field
    reason: str


@dataclass(frozen=True)
class Skipped:
    """An app, one of its ports, or one instance left out of the config, and why."""

    app_id: str
    reason: str
    port_index: Optional[int] = None
    task_id: str = ""  # set when only one instance (server) was left out


@dataclass(frozen=True)
class HealthCheck:
    """An active check the source asks for (the builder applies the operator's limits)."""

    kind: str  # "http" | "tcp"
    path: str = "/"
    interval_ms: int = 60000
    timeout_ms: int = 20000
    fall: int = 3


@dataclass(frozen=True)
class DeploymentGroup:
    """Membership in a blue/green or canary group: members share one frontend and backend."""

    name: str
    started_at: str = ""  # the oldest member is the primary
    weight: Optional[int] = None  # every server of this member gets it; None: weight 1


# The hot types below are NamedTuples: a translation builds one per service and per instance,
# at a third of the cost of a frozen dataclass. They are just as immutable.


class ServiceOptions(NamedTuple):
    """How one service is served, whoever described it."""

    service_port: int
    bind_port: int  # the port the frontend binds (the service port unless overridden)
    mode: str = "tcp"
    balance: str = "roundrobin"
    bind_addr: Optional[str] = None  # one address asked for; the operator decides if allowed
    vhosts: tuple[str, ...] = ()
    path: str = ""
    route_weight: int = 0  # order of vhost routes: higher first
    sticky: bool = False
    groups: tuple[str, ...] = ()
    deployment: Optional[DeploymentGroup] = None
    health_check: Optional[HealthCheck] = None


class Instance(NamedTuple):
    """One instance (task) of a service and whether it takes traffic."""

    id: str  # unique within the service (a Marathon task id)
    host: str  # host name or IP literal; "" when the instance has no address for this port
    port: Optional[int]
    state: str  # READY | DRAIN | OUT
    reason: str  # why it is (not) in rotation
    weight: int = 1
    app_id: str = ""
    version: str = ""
    status: str = ""  # the source's own word for its state, e.g. TASK_RUNNING
    healthy: Optional[bool] = None  # None: the service has no health checks


class Service(NamedTuple):
    """One served port of an origin app: options and instances (sorted by id)."""

    key: str  # unique in the catalog and stable: see service_key()
    app_id: str
    port_index: int
    options: ServiceOptions
    instances: tuple[Instance, ...] = ()


def service_key(app_id: str, port_index: int) -> str:
    return f"{app_id}:{port_index}"


@dataclass(frozen=True)
class Catalog:
    """Every service of a source, and what it left out. Treat ``services`` as read-only."""

    services: Mapping[str, Service] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    # how it was made from an earlier catalog (set by updated_catalog); not part of its value
    changes: Optional[Changes] = field(default=None, init=False, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.services)

    def __iter__(self) -> Iterator[Service]:
        return iter(self.services.values())

    def instances(self) -> Iterator[tuple[Service, Instance]]:
        for service in self.services.values():
            for instance in service.instances:
                yield service, instance

    def in_rotation(self) -> frozenset[str]:
        """Ids of the instances that take traffic."""
        return frozenset(i.id for _s, i in self.instances() if i.state == READY)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (see :func:`catalog_from_dict`)."""
        return {
            "format": FORMAT,
            "services": [service_to_dict(s) for _k, s in sorted(self.services.items())],
            "problems": [vars(p).copy() for p in self.problems],
            "skipped": [vars(s).copy() for s in self.skipped],
        }


def updated_catalog(
    previous: Catalog,
    changed: Mapping[str, Optional[Service]],
    problems: Optional[tuple[Problem, ...]] = None,
    skipped: Optional[tuple[Skipped, ...]] = None,
) -> Catalog:
    """``previous`` with the services in ``changed`` replaced (``None``: removed), copy-on-write
    and tagged with their keys; ``problems`` and ``skipped`` replace the previous ones if given."""
    services = dict(previous.services)
    for key, service in changed.items():
        if service is None:
            services.pop(key, None)
        else:
            services[key] = service
    catalog = Catalog(
        services,
        previous.problems if problems is None else problems,
        previous.skipped if skipped is None else skipped,
    )
    object.__setattr__(catalog, "changes", next_version(previous.changes, changed))
    return catalog


def changed_services(old: Catalog, new: Catalog) -> Collection[str]:
    """The keys of the services that may differ from ``old`` to ``new`` (added, removed or
    replaced): from the tags when ``new`` was made from ``old`` (directly or not), else by
    walking both. A superset: compare the services found under them."""
    if old is new:
        return ()
    keys = changed_between(old.changes, new.changes)
    if keys is not None:
        return keys
    before, after = old.services, new.services
    found = {key for key, service in after.items() if before.get(key) is not service}
    found.update(key for key in before if key not in after)
    return found


def service_to_dict(service: Service) -> dict[str, Any]:
    options = service.options._asdict()
    for name in ("deployment", "health_check"):
        if options[name] is not None:
            options[name] = vars(options[name]).copy()
    options["vhosts"] = list(options["vhosts"])
    options["groups"] = list(options["groups"])
    return {
        "key": service.key,
        "app_id": service.app_id,
        "port_index": service.port_index,
        "options": options,
        "instances": [i._asdict() for i in service.instances],
    }


# --- reading back ---------------------------------------------------------------------------


def catalog_from_dict(data: Any) -> Catalog:
    """A catalog from :meth:`Catalog.to_dict` data; :class:`CatalogError` on the first bad field."""
    body = _mapping(data, "")
    if body.get("format") != FORMAT:
        raise CatalogError("format", f"expected {FORMAT!r}")
    services: dict[str, Service] = {}
    for i, raw in enumerate(_list(body.get("services"), "services")):
        service = service_from_dict(raw, f"services[{i}]")
        if service.key in services:
            raise CatalogError(f"services[{i}].key", "duplicate key")
        services[service.key] = service
    problems = tuple(
        Problem(
            _text(p.get("app_id"), f"problems[{i}].app_id"),
            _text(p.get("label"), f"problems[{i}].label"),
            _text(p.get("reason"), f"problems[{i}].reason"),
        )
        for i, p in enumerate(_mappings(body.get("problems"), "problems"))
    )
    skipped = tuple(
        _skipped_from_dict(s, f"skipped[{i}]")
        for i, s in enumerate(_mappings(body.get("skipped"), "skipped"))
    )
    return Catalog(services, problems, skipped)


def service_from_dict(data: Any, path: str = "service") -> Service:
    """One service; :class:`CatalogError` names the first field that cannot be used."""
    body = _mapping(data, path)
    key = _text(body.get("key"), f"{path}.key", empty=False)
    app_id = _text(body.get("app_id"), f"{path}.app_id", empty=False)
    port_index = _int(body.get("port_index"), f"{path}.port_index", 0, grammar.MAX_PORT_INDEX)
    options = _options_from_dict(body.get("options"), f"{path}.options")
    instances = tuple(
        _instance_from_dict(raw, f"{path}.instances[{i}]")
        for i, raw in enumerate(_list(body.get("instances"), f"{path}.instances"))
    )
    ids = [i.id for i in instances]
    if len(set(ids)) != len(ids):
        raise CatalogError(f"{path}.instances", "duplicate instance ids")
    return Service(key, app_id, port_index, options, tuple(sorted(instances, key=_instance_id)))


def _instance_id(instance: Instance) -> str:
    return instance.id


def _options_from_dict(data: Any, path: str) -> ServiceOptions:
    body = _mapping(data, path)

    def get(name: str, check: Callable[[Any, str], Any], default: Any) -> Any:
        value = body.get(name, default)
        return check(value, f"{path}.{name}")

    vhosts = tuple(get("vhosts", _vhosts, []))
    path_prefix = get("path", _path_prefix, "")
    if path_prefix and not vhosts:
        raise CatalogError(f"{path}.path", "a path prefix needs vhosts")
    options = ServiceOptions(
        service_port=get("service_port", _port, None),
        bind_port=get("bind_port", _port, None),
        mode=get("mode", _one_of(grammar.MODES), "tcp"),
        balance=get("balance", _one_of(grammar.BALANCES), "roundrobin"),
        bind_addr=get("bind_addr", _optional_ip, None),
        vhosts=vhosts,
        path=path_prefix,
        route_weight=get("route_weight", _int_range(0, grammar.ROUTE_WEIGHT_MAX), 0),
        sticky=get("sticky", _bool, False),
        groups=tuple(get("groups", _groups, [])),
        deployment=get("deployment", _deployment, None),
        health_check=get("health_check", _health_check, None),
    )
    if options.mode != "http" and (options.vhosts or options.sticky):
        raise CatalogError(f"{path}.mode", "vhosts and sticky sessions need http mode")
    if options.balance in grammar.HTTP_ONLY_BALANCES and options.mode != "http":
        raise CatalogError(f"{path}.balance", "algorithm needs http mode")
    return options


def _instance_from_dict(data: Any, path: str) -> Instance:
    body = _mapping(data, path)
    port = body.get("port")
    healthy = body.get("healthy")
    if healthy is not None and not isinstance(healthy, bool):
        raise CatalogError(f"{path}.healthy", "expected true, false or null")
    return Instance(
        id=_text(body.get("id"), f"{path}.id", empty=False),
        host=_text(body.get("host", ""), f"{path}.host"),
        port=None if port is None else _port(port, f"{path}.port"),
        state=_one_of(INSTANCE_STATES)(body.get("state"), f"{path}.state"),
        reason=_text(body.get("reason", ""), f"{path}.reason"),
        weight=_int(body.get("weight", 1), f"{path}.weight", 0, grammar.SERVER_WEIGHT_MAX),
        app_id=_text(body.get("app_id", ""), f"{path}.app_id"),
        version=_text(body.get("version", ""), f"{path}.version"),
        status=_text(body.get("status", ""), f"{path}.status"),
        healthy=healthy,
    )


def _skipped_from_dict(body: Mapping[str, Any], path: str) -> Skipped:
    index = body.get("port_index")
    return Skipped(
        app_id=_text(body.get("app_id"), f"{path}.app_id"),
        reason=_text(body.get("reason"), f"{path}.reason"),
        port_index=None
        if index is None
        else _int(index, f"{path}.port_index", 0, grammar.MAX_PORT_INDEX),
        task_id=_text(body.get("task_id", ""), f"{path}.task_id"),
    )


def _deployment(value: Any, path: str) -> Optional[DeploymentGroup]:
    if value is None:
        return None
    body = _mapping(value, path)
    name = body.get("name")
    if not grammar.is_group_name(name):
        raise CatalogError(f"{path}.name", "not a group name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
    started = body.get("started_at", "")
    if started != "" and not grammar.is_started_at(started):
        raise CatalogError(f"{path}.started_at", "not an ISO 8601 time")
    weight = body.get("weight")
    if weight is not None:
        weight = _int(weight, f"{path}.weight", 0, grammar.SERVER_WEIGHT_MAX)
    return DeploymentGroup(str(name), started, weight)


def _health_check(value: Any, path: str) -> Optional[HealthCheck]:
    if value is None:
        return None
    body = _mapping(value, path)
    kind = _one_of(grammar.CHECK_KINDS)(body.get("kind"), f"{path}.kind")
    check_path = body.get("path", "/")
    if not grammar.is_check_path(check_path):
        raise CatalogError(f"{path}.path", "not a usable health-check path")
    day_ms = 86_400_000
    return HealthCheck(
        kind=kind,
        path=check_path,
        interval_ms=_int(body.get("interval_ms"), f"{path}.interval_ms", 0, day_ms),
        timeout_ms=_int(body.get("timeout_ms"), f"{path}.timeout_ms", 0, day_ms),
        fall=_int(body.get("fall"), f"{path}.fall", 1, 100),
    )


# --- field checks -----------------------------------------------------------------------------


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise CatalogError(path, "expected an object")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise CatalogError(path, "expected a list")
    return value


def _mappings(value: Any, path: str) -> list[Mapping[str, Any]]:
    items = _list([] if value is None else value, path)
    return [_mapping(item, f"{path}[{i}]") for i, item in enumerate(items)]


def _text(value: Any, path: str, empty: bool = True) -> str:
    if not isinstance(value, str) or (not empty and not value):
        raise CatalogError(path, f"expected a{'' if empty else ' non-empty'} string")
    return value


def _int(value: Any, path: str, low: int, high: int) -> int:
    if not grammar.is_int_in(value, low, high):
        raise CatalogError(path, f"expected an integer {low}..{high}")
    return int(value)


def _int_range(low: int, high: int) -> Callable[[Any, str], int]:
    return lambda value, path: _int(value, path, low, high)


def _port(value: Any, path: str) -> int:
    return _int(value, path, 1, 65535)


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise CatalogError(path, "expected true or false")
    return value


def _one_of(allowed: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, path: str) -> str:
        if value not in allowed:
            raise CatalogError(path, "expected one of " + ", ".join(allowed))
        return str(value)

    return check


def _optional_ip(value: Any, path: str) -> Optional[str]:
    if value is None:
        return None
    literal = grammar.ip_literal(value)
    if literal is None:
        raise CatalogError(path, "not an IP address literal")
    return literal


def _vhosts(value: Any, path: str) -> list[str]:
    items = _list(value, path)
    if len(items) > grammar.MAX_VHOSTS or not all(grammar.is_host_name(h) for h in items):
        raise CatalogError(path, f"expected at most {grammar.MAX_VHOSTS} RFC 1123 host names")
    return sorted(set(items))


def _path_prefix(value: Any, path: str) -> str:
    if value != "" and not grammar.is_path_prefix(value):
        raise CatalogError(path, "not a path prefix made of / and unreserved URL characters")
    return str(value)


def _groups(value: Any, path: str) -> list[str]:
    items = _list(value, path)
    if len(items) > grammar.MAX_GROUPS or not all(grammar.is_group_name(g) for g in items):
        raise CatalogError(path, f"expected at most {grammar.MAX_GROUPS} group names")
    return sorted(set(items))
