"""Marathon state -> services and their endpoints (pure functions on plain data).

Input is Marathon's own JSON: app dicts as ``GET /v2/apps?embed=apps.tasks`` returns them (each
with a ``tasks`` list). Output is one :class:`Service` per (app, service port), each listing the
:class:`Endpoint` of every task that the ``accept`` predicate lets in. The sidecar passes its own
predicate (health rules); the default keeps ``TASK_RUNNING`` tasks only.

Networking modes covered:
- host (``portDefinitions``; legacy ``ports``): endpoint = task ``host`` : task ``ports[i]``
- container/bridge (``container.portMappings`` or legacy ``container.docker.portMappings``):
  endpoint = task ``host`` : task host port of mapping i
- container (IP-per-task; legacy ``ipAddress``): endpoint = task ``ipAddresses[0]`` :
  ``containerPort`` of mapping i, or task ``host`` : host port when the mapping has a ``hostPort``
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

if TYPE_CHECKING:
    from typing_extensions import TypeGuard

App = Mapping[str, Any]
Task = Mapping[str, Any]
TaskPredicate = Callable[[App, Task], bool]

HOST = "host"
BRIDGE = "container/bridge"
CONTAINER = "container"
_MODES = (HOST, BRIDGE, CONTAINER)


@dataclass(frozen=True)
class PortSpec:
    """One port of an app definition, in the order Marathon numbers them (``portIndex``)."""

    index: int
    service_port: int
    protocol: str = "tcp"
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    container_port: Optional[int] = None
    host_port: Optional[int] = None


@dataclass(frozen=True)
class Endpoint:
    """Where one task serves one port. ``address`` is what to connect to (host name or IP)."""

    task_id: str
    address: str
    port: int
    host: str = ""
    state: str = ""
    healthy: Optional[bool] = None
    version: str = ""


@dataclass(frozen=True)
class Service:
    """One service port of one app and the endpoints behind it."""

    app_id: str
    service_port: int
    port_index: int
    network_mode: str
    protocol: str = "tcp"
    port_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    port_labels: Mapping[str, str] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()


def network_mode(app: App) -> str:
    """How the app's tasks are networked: ``host``, ``container/bridge`` or ``container``.

    ``networks`` (Marathon >= 1.5) wins; otherwise the legacy ``container.docker.network``
    (``BRIDGE`` / ``USER`` / ``HOST``), then a legacy ``ipAddress`` (IP-per-task); else host.
    """
    networks = app.get("networks")
    if isinstance(networks, list) and networks:
        first = networks[0] if _is_mapping(networks[0]) else {}
        mode = first.get("mode") or CONTAINER
        return mode if mode in _MODES else CONTAINER
    docker_network = str(_docker(app).get("network") or "").upper()
    if docker_network == "BRIDGE":
        return BRIDGE
    if docker_network == "USER":
        return CONTAINER
    if docker_network == "HOST":
        return HOST
    if _is_mapping(app.get("ipAddress")):
        return CONTAINER
    return HOST


def port_specs(app: App) -> list[PortSpec]:
    """The app's ports in ``portIndex`` order; ``service_port`` 0 means not assigned (yet)."""
    return port_specs_in_mode(app, network_mode(app))


def port_specs_in_mode(app: App, mode: str) -> list[PortSpec]:
    """:func:`port_specs` when the caller already knows ``network_mode(app)``."""
    if mode == HOST:
        return _host_port_specs(app)
    mappings = _port_mappings(app)
    if mappings is not None:
        return [_mapping_spec(i, m, mode) for i, m in enumerate(mappings)]
    return _discovery_port_specs(app)


def task_endpoints(app: App, task: Task) -> list[Optional[Endpoint]]:
    """One entry per :func:`port_specs` item: where this task serves it, or ``None`` if unknown."""
    mode = network_mode(app)
    specs = port_specs(app)
    host_ports = _int_list(task.get("ports"))
    healthy = task_health(app, task)
    out: list[Optional[Endpoint]] = []
    host_slot = 0
    for spec in specs:
        uses_host_port = mode != CONTAINER or spec.host_port is not None
        if uses_host_port:
            address, port = _host_address(task), _at(host_ports, host_slot)
            host_slot += 1
        else:
            address, port = _container_address(task), spec.container_port
        out.append(_endpoint(task, address, port, healthy))
    return out


def task_health(app: App, task: Task) -> Optional[bool]:
    """``None`` when the app has no health checks; else whether every result is alive.

    A task of a health-checked app with no results yet (just started, or after a leader
    election) is not healthy.
    """
    if not app.get("healthChecks"):
        return None
    results = task.get("healthCheckResults") or []
    alive = [bool(r.get("alive")) for r in results if isinstance(r, Mapping)]
    return bool(alive) and all(alive)


def is_running(app: App, task: Task) -> bool:
    """``TASK_RUNNING``; a task without ``state`` (old Marathons) counts if it has ``startedAt``."""
    state = task.get("state")
    if state is None:
        return bool(task.get("startedAt"))
    return state == "TASK_RUNNING"


def services_from_apps(apps: Iterable[App], accept: TaskPredicate = is_running) -> list[Service]:
    """Every (app, assigned service port) with the endpoints of the tasks ``accept`` lets in.

    Sorted by (service port, app id); endpoints by (address, port, task id).
    """
    services: list[Service] = []
    for app in apps:
        services.extend(_app_services(app, accept))
    return sorted(services, key=_service_key)


def _service_key(service: Service) -> tuple[Any, ...]:
    # (port, app id) is unique in real Marathon state; the rest only makes bad input sort stably
    endpoints = tuple(_endpoint_key(e) for e in service.endpoints)
    return (service.service_port, service.app_id, service.port_index, endpoints)


def _app_services(app: App, accept: TaskPredicate) -> list[Service]:
    specs = [s for s in port_specs(app) if s.service_port > 0]
    if not specs:
        return []
    per_port: dict[int, list[Endpoint]] = {s.index: [] for s in specs}
    for task in app.get("tasks") or []:
        if not isinstance(task, Mapping) or not accept(app, task):
            continue
        for index, endpoint in enumerate(task_endpoints(app, task)):
            if endpoint is not None and index in per_port:
                per_port[index].append(endpoint)
    mode = network_mode(app)
    labels = _str_map(app.get("labels"))
    return [
        Service(
            app_id=str(app.get("id", "")),
            service_port=spec.service_port,
            port_index=spec.index,
            network_mode=mode,
            protocol=spec.protocol,
            port_name=spec.name,
            labels=labels,
            port_labels=spec.labels,
            endpoints=tuple(sorted(per_port[spec.index], key=_endpoint_key)),
        )
        for spec in specs
    ]


def _endpoint_key(endpoint: Endpoint) -> tuple[Any, ...]:
    # (address, port, task id) is unique in real Marathon state; the rest only makes bad input
    # (one task id listed twice, in two states) sort the same whatever the input order
    return (
        endpoint.address,
        endpoint.port,
        endpoint.task_id,
        endpoint.host,
        endpoint.state,
        str(endpoint.healthy),
        endpoint.version,
    )


def _endpoint(
    task: Task, address: str, port: Optional[int], healthy: Optional[bool]
) -> Optional[Endpoint]:
    if not address or port is None or port <= 0:
        return None
    return Endpoint(
        task_id=str(task.get("id", "")),
        address=address,
        port=port,
        host=str(task.get("host") or ""),
        state=str(task.get("state") or ""),
        healthy=healthy,
        version=str(task.get("version") or ""),
    )


def _host_address(task: Task) -> str:
    return str(task.get("host") or "")


def _container_address(task: Task) -> str:
    addresses = task.get("ipAddresses") or []
    first = addresses[0] if addresses and isinstance(addresses[0], Mapping) else {}
    return str(first.get("ipAddress") or "")


def _host_port_specs(app: App) -> list[PortSpec]:
    definitions = app.get("portDefinitions")
    require_ports = bool(app.get("requirePorts"))
    if isinstance(definitions, list):
        return [_definition_spec(i, d, require_ports) for i, d in enumerate(definitions)]
    legacy = _int_list(app.get("ports"))
    return [
        PortSpec(index=i, service_port=p or 0, host_port=p if require_ports else None)
        for i, p in enumerate(legacy)
    ]


def _definition_spec(index: int, definition: Any, require_ports: bool) -> PortSpec:
    d = definition if type(definition) is dict or _is_mapping(definition) else {}
    port = d.get("port")
    if type(port) is not int:
        port = _as_int(port)
    port = port or 0
    protocol = d.get("protocol") or "tcp"
    name = d.get("name") or ""
    labels = d.get("labels")
    return PortSpec(
        index,
        port,
        protocol if type(protocol) is str else str(protocol),
        name if type(name) is str else str(name),
        {} if labels is None else _str_map(labels),
        None,
        port if require_ports else None,
    )


def _mapping_spec(index: int, mapping: Any, mode: str) -> PortSpec:
    m = mapping if _is_mapping(mapping) else {}
    host_port = _as_int(m.get("hostPort"))
    if host_port is None and mode == BRIDGE:
        host_port = 0  # bridge mode always allocates a host port (Marathon normalizes to 0)
    return PortSpec(
        index=index,
        service_port=_as_int(m.get("servicePort")) or 0,
        protocol=str(m.get("protocol") or "tcp"),
        name=str(m.get("name") or ""),
        labels=_str_map(m.get("labels")),
        container_port=_as_int(m.get("containerPort")),
        host_port=host_port,
    )


def _discovery_port_specs(app: App) -> list[PortSpec]:
    """Legacy ``ipAddress.discovery.ports``: Marathon < 1.5 assigned them no service ports.

    The service port comes from a legacy top-level ``ports[i]`` when one is there; else 0.
    """
    ip_address = app.get("ipAddress")
    discovery = ip_address.get("discovery") if isinstance(ip_address, Mapping) else None
    ports = discovery.get("ports") if isinstance(discovery, Mapping) else None
    legacy_service_ports = _int_list(app.get("ports"))
    specs: list[PortSpec] = []
    for i, port in enumerate(ports if isinstance(ports, list) else []):
        p = port if isinstance(port, Mapping) else {}
        specs.append(
            PortSpec(
                index=i,
                service_port=_at(legacy_service_ports, i) or 0,
                protocol=str(p.get("protocol") or "tcp"),
                name=str(p.get("name") or ""),
                labels=_str_map(p.get("labels")),
                container_port=_as_int(p.get("number")),
            )
        )
    return specs


def _port_mappings(app: App) -> Optional[list[Any]]:
    container = app.get("container")
    if _is_mapping(container) and isinstance(container.get("portMappings"), list):
        return list(container["portMappings"])
    legacy = _docker(app).get("portMappings")
    return list(legacy) if isinstance(legacy, list) else None


def _docker(app: App) -> Mapping[str, Any]:
    container = app.get("container")
    docker = container.get("docker") if _is_mapping(container) else None
    return docker if _is_mapping(docker) else {}


def _str_map(value: Any) -> dict[str, str]:
    if value is None or not _is_mapping(value):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _as_int(value: Any) -> Optional[int]:
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, without the ABC check for plain dicts (the usual case)."""
    return type(value) is dict or isinstance(value, Mapping)


def _int_list(value: Any) -> list[Optional[int]]:
    return [_as_int(v) for v in value] if isinstance(value, list) else []


def _at(values: list[Optional[int]], index: int) -> Optional[int]:
    return values[index] if 0 <= index < len(values) else None
