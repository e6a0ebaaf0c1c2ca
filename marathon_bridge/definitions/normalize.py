"""Fill an app definition the way Marathon does on write and read (REFERENCE.md section 2.4).

:func:`normalize_app` returns a new dict (the input is never changed) where:
- the id is absolute and canonical (``web`` -> ``/web``, ``/a/../b`` -> ``/b``);
- deprecated fields are translated: ``ports`` -> ``portDefinitions``, ``uris`` -> ``fetch``,
  ``ipAddress`` and ``container.docker.network`` -> ``networks``,
  ``container.docker.portMappings`` and ``ipAddress.discovery.ports`` -> ``container.portMappings``;
- defaults are filled: ``networks`` ``[{"mode": "host"}]``, ports per network mode, resources,
  backoff, strategies, ``killSelection``, ``labels``, health and readiness check defaults, ...;
- enum values are spelled as Marathon writes them (``http`` -> ``HTTP``, constraint operators
  in upper case);
- what Marathon omits is removed: ``portDefinitions`` of non-host apps, ``container.portMappings``
  of host apps, empty ``args``/``constraints``/``env``/``healthChecks``/... .

Keys Marathon does not know are kept untouched (lossless), and values of the wrong type are left
as they are (validation reports them): normalization never raises on any JSON value, and
``normalize_app(normalize_app(x)) == normalize_app(x)``.

:func:`comparable` is ``normalize_app`` minus what Marathon owns (version, versionInfo, tasks,
task counts, deployments, last failure, readiness results, task stats), with set-like lists
(constraints, roles, dependencies, health checks) in a stable order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.definitions.load import copy_json, resolve_id
from marathon_bridge.definitions.schema import (
    CONTAINER,
    HEALTH_CHECK,
    NETWORK,
    NETWORK_PROTOCOL,
    PORT_MAPPING,
    READINESS_CHECK,
    Enum,
    is_number,
)

HOST = "host"
BRIDGE = "container/bridge"
CONTAINER_MODE = "container"

DEFAULT_ROLE = "*"
DEFAULT_PORT_DEFINITIONS = ({"port": 0, "name": "default", "protocol": "tcp"},)
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz", ".zip")

SCALAR_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("instances", 1),
    ("cpus", 1.0),
    ("mem", 128.0),
    ("disk", 0.0),
    ("gpus", 0),
    ("backoffSeconds", 1),
    ("backoffFactor", 1.15),
    ("maxLaunchDelaySeconds", 300),
    ("executor", ""),
    ("requirePorts", False),
    ("killSelection", "YOUNGEST_FIRST"),
    ("role", DEFAULT_ROLE),
)
FLOAT_FIELDS = ("cpus", "mem", "disk", "backoffFactor")
OMIT_WHEN_EMPTY = (
    "args",
    "constraints",
    "dependencies",
    "acceptedResourceRoles",
    "env",
    "secrets",
    "fetch",
    "healthChecks",
    "readinessChecks",
)
HEALTH_CHECK_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("gracePeriodSeconds", 300),
    ("intervalSeconds", 60),
    ("timeoutSeconds", 20),
    ("maxConsecutiveFailures", 3),
    ("delaySeconds", 15),
    ("ipProtocol", "IPv4"),
)
READINESS_DEFAULTS: tuple[tuple[str, Any], ...] = (
    ("name", "readinessCheck"),
    ("protocol", "HTTP"),
    ("path", "/"),
    ("portName", "http-api"),
    ("intervalSeconds", 30),
    ("timeoutSeconds", 10),
    ("httpStatusCodesForReady", [200]),
    ("preserveLastResponse", False),
)
MARATHON_OWNED = (
    "version",
    "versionInfo",
    "tasks",
    "tasksStaged",
    "tasksRunning",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "lastTaskFailure",
    "readinessCheckResults",
    "taskStats",
    "tasksStats",
)
SET_LIKE = ("constraints", "acceptedResourceRoles", "dependencies", "healthChecks")
DOCKER_NETWORK_MODES = {"BRIDGE": BRIDGE, "USER": CONTAINER_MODE, "HOST": HOST}


def _dict(value: Any) -> Optional[dict]:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> Optional[list]:
    return value if isinstance(value, list) else None


def _present(app: Mapping[str, Any], key: str) -> bool:
    return app.get(key) is not None


# --------------------------------------------------------------------------- legacy fields


def translate_legacy(app: dict) -> None:
    """In place: deprecated input -> the >= 1.5 form, in Marathon's order (AppNormalization).

    uris -> fetch; ipAddress / docker.network -> networks (explicit ``networks`` win); ports ->
    portDefinitions, dropped for non-host networks (as Marathon does); docker.portMappings and
    ipAddress.discovery.ports -> container.portMappings, dropped for host networking; a non-host
    app gets a default port mapping, and one more mapping per extra port definition.
    """
    ip_address = app.pop("ipAddress", None)
    _translate_uris(app)
    _translate_networks(app, _dict(ip_address))
    modes = network_modes(app)
    host = HOST in modes
    definitions = _migrated_port_definitions(app)
    if not host:
        app.pop("portDefinitions", None)
    elif definitions is None:
        app["portDefinitions"] = copy_json(list(DEFAULT_PORT_DEFINITIONS))
    else:
        app["portDefinitions"] = definitions
    if app.get("container") is None and (ip_address is not None or not host):
        app["container"] = {"type": "MESOS"}
    container = _dict(app.get("container"))
    if container is None:
        return
    _migrate_container_ports(container, _dict(ip_address))
    if host:
        container.pop("portMappings", None)
        return
    if not _non_empty(container.get("portMappings")):
        container["portMappings"] = [{"containerPort": 0, "name": "default"}]
    mappings = _list(container.get("portMappings"))
    if mappings is not None and isinstance(definitions, list) and len(definitions) > len(mappings):
        mappings.extend({"containerPort": 0} for _ in range(len(definitions) - len(mappings)))


def _non_empty(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def _translate_uris(app: dict) -> None:
    if "uris" not in app:
        return
    uris = app.pop("uris")
    if _non_empty(app.get("fetch")) or not isinstance(uris, list) or not uris:
        return
    app["fetch"] = [_fetch_for_uri(u) for u in uris]


def _fetch_for_uri(uri: Any) -> Any:
    if not isinstance(uri, str):
        return uri
    return {"uri": uri, "extract": uri.lower().endswith(ARCHIVE_SUFFIXES)}


def _docker_of(app: dict) -> Optional[dict]:
    container = _dict(app.get("container"))
    return _dict(container.get("docker")) if container else None


def _translate_networks(app: dict, ip_address: Optional[dict]) -> None:
    docker = _docker_of(app)
    docker_network = docker.pop("network", None) if docker is not None else None
    if app.get("networks") is not None and app.get("networks") != []:
        return
    if ip_address is not None:
        entry: dict[str, Any] = {"mode": CONTAINER_MODE}
        if isinstance(ip_address.get("networkName"), str):
            entry["name"] = ip_address["networkName"]
        if isinstance(ip_address.get("labels"), dict) and ip_address["labels"]:
            entry["labels"] = ip_address["labels"]
        app["networks"] = [entry]
        return
    mode = (
        DOCKER_NETWORK_MODES.get(docker_network.upper())
        if isinstance(docker_network, str)
        else None
    )
    app["networks"] = [{"mode": mode or HOST}]


def _migrated_port_definitions(app: dict) -> Optional[Any]:
    ports = app.pop("ports", None)
    if app.get("portDefinitions") is not None:
        return app["portDefinitions"]
    if isinstance(ports, list):
        return [{"port": p} if is_number(p) else p for p in ports]
    return None


def _migrate_container_ports(container: dict, ip_address: Optional[dict]) -> None:
    docker = _dict(container.get("docker"))
    docker_mappings = docker.pop("portMappings", None) if docker is not None else None
    if not _non_empty(container.get("portMappings")) and docker_mappings is not None:
        container["portMappings"] = docker_mappings
    discovery = _dict(ip_address.get("discovery")) if ip_address else None
    ports = _list(discovery.get("ports")) if discovery else None
    if ports and not _non_empty(container.get("portMappings")):
        container["portMappings"] = [_mapping_for_discovery_port(p) for p in ports]


def _mapping_for_discovery_port(port: Any) -> Any:
    if not isinstance(port, dict):
        return port
    mapping: dict[str, Any] = {"containerPort": port.get("number", 0)}
    for key in ("name", "protocol", "labels"):
        if key in port:
            mapping[key] = port[key]
    return mapping


# --------------------------------------------------------------------------- network modes


def network_modes(app: Mapping[str, Any]) -> list[str]:
    """Modes of ``networks`` (default mode ``container``); ``["host"]`` when absent or empty."""
    networks = app.get("networks")
    if not isinstance(networks, list) or not networks:
        return [HOST]
    modes = []
    for network in networks:
        mode = network.get("mode") if isinstance(network, Mapping) else None
        canonical = (
            _enum_value(NETWORK.fields["mode"].spec, mode) if mode is not None else CONTAINER_MODE
        )
        modes.append(canonical or str(mode))
    return modes


def primary_mode(app: Mapping[str, Any]) -> str:
    """``host``, ``container/bridge`` or ``container`` (the first network decides)."""
    return network_modes(app)[0]


def _enum_value(spec: Any, value: Any) -> Optional[str]:
    return spec.canonical(value) if isinstance(spec, Enum) else None


def _canonical_enum(target: dict, key: str, spec: Any) -> None:
    if key in target:
        canonical = _enum_value(spec, target[key])
        if canonical is not None:
            target[key] = canonical


# --------------------------------------------------------------------------- validation's view


def canonical_view(app: Mapping[str, Any]) -> dict:
    """A copy with legacy fields translated, networks and ports defaulted, checks filled.

    This is the app as Marathon validates it (after ``AppNormalization.forDeprecated``).
    """
    view = copy_json(app) if isinstance(app, Mapping) else {}
    translate_legacy(view)
    for network in _list(view.get("networks")) or []:
        if isinstance(network, dict):
            if network.get("mode") is None:
                network["mode"] = CONTAINER_MODE
            _canonical_enum(network, "mode", NETWORK.fields["mode"].spec)
    _fill_checks(view)
    return view


def _fill_checks(app: dict) -> None:
    for check in _list(app.get("healthChecks")) or []:
        if isinstance(check, dict):
            _fill_health_check(check)
    for check in _list(app.get("readinessChecks")) or []:
        if isinstance(check, dict):
            for key, default in READINESS_DEFAULTS:
                if check.get(key) is None:
                    check[key] = copy_json(default)
            _canonical_enum(check, "protocol", READINESS_CHECK.fields["protocol"].spec)


def _fill_health_check(check: dict) -> None:
    if check.get("protocol") is None:
        check["protocol"] = "HTTP"
    _canonical_enum(check, "protocol", HEALTH_CHECK.fields["protocol"].spec)
    _canonical_enum(check, "ipProtocol", HEALTH_CHECK.fields["ipProtocol"].spec)
    for key, default in HEALTH_CHECK_DEFAULTS:
        if check.get(key) is None:
            check[key] = default
    protocol = check["protocol"]
    if protocol in ("HTTP", "HTTPS") and check.get("ignoreHttp1xx") is None:
        check["ignoreHttp1xx"] = False
    if protocol != "COMMAND" and check.get("port") is None and check.get("portIndex") is None:
        check["portIndex"] = 0


# --------------------------------------------------------------------------- normalize


def normalize_app(app: Mapping[str, Any]) -> dict:
    """Marathon's defaults filled and deprecated fields translated; unknown keys kept.

    Never raises: a value of the wrong type is left as it is. Not a Mapping: ``{}``.
    """
    if not isinstance(app, Mapping):
        return {}
    out = canonical_view(app)
    if isinstance(out.get("id"), str):
        out["id"] = resolve_id(out["id"])
    for key, default in SCALAR_DEFAULTS:
        if out.get(key) is None:
            out[key] = default
    for key in FLOAT_FIELDS:
        if is_number(out.get(key)):
            out[key] = float(out[key])
    if out.get("labels") is None:
        out["labels"] = {}
    _canonical_enum(out, "killSelection", Enum(("YOUNGEST_FIRST", "OLDEST_FIRST")))
    _normalize_strategies(out)
    _normalize_ports(out)
    _normalize_container(out)
    _normalize_constraints(out)
    _normalize_fetch(out)
    for key in OMIT_WHEN_EMPTY:
        if key in out and (out[key] is None or out[key] == [] or out[key] == {}):
            del out[key]
    return out


def _is_resident(app: Mapping[str, Any]) -> bool:
    if _present(app, "residency"):
        return True
    container = _dict(app.get("container"))
    volumes = _list(container.get("volumes")) if container else None
    return any(isinstance(v, Mapping) and "persistent" in v for v in volumes or [])


def _normalize_strategies(app: dict) -> None:
    resident = _is_resident(app)
    if app.get("upgradeStrategy") is None:
        app["upgradeStrategy"] = (
            {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}
            if resident
            else {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0}
        )
    strategy = _dict(app["upgradeStrategy"])
    for key in ("minimumHealthCapacity", "maximumOverCapacity"):
        if strategy is not None and is_number(strategy.get(key)):
            strategy[key] = float(strategy[key])
    if app.get("unreachableStrategy") is None:
        app["unreachableStrategy"] = (
            "disabled" if resident else {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0}
        )
    unreachable = _dict(app["unreachableStrategy"])
    if unreachable is not None:
        unreachable.setdefault("inactiveAfterSeconds", 0)
        unreachable.setdefault("expungeAfterSeconds", 0)
    elif (
        isinstance(app["unreachableStrategy"], str)
        and app["unreachableStrategy"].lower() == "disabled"
    ):
        app["unreachableStrategy"] = "disabled"


def _normalize_ports(app: dict) -> None:
    mode = primary_mode(app)
    if mode == HOST:
        for definition in _list(app.get("portDefinitions")) or []:
            if isinstance(definition, dict):
                if definition.get("port") is None:
                    definition["port"] = 0
                _fill_protocol(definition)
                if definition.get("labels") == {}:
                    del definition["labels"]
        return
    app["requirePorts"] = False
    container = _dict(app.get("container"))
    for mapping in _list(container.get("portMappings") if container else None) or []:
        if isinstance(mapping, dict):
            _fill_port_mapping(mapping, bridge=mode == BRIDGE)


def _fill_protocol(port: dict) -> None:
    if port.get("protocol") is None:
        port["protocol"] = "tcp"
    _canonical_enum(port, "protocol", NETWORK_PROTOCOL)


def _fill_port_mapping(mapping: dict, bridge: bool) -> None:
    for key in ("containerPort", "servicePort"):
        if mapping.get(key) is None:
            mapping[key] = 0
    if bridge and mapping.get("hostPort") is None:
        mapping["hostPort"] = 0
    _fill_protocol(mapping)
    if mapping.get("labels") is None:
        mapping["labels"] = {}
    if mapping.get("networkNames") in ([], None):
        mapping.pop("networkNames", None)
    _canonical_enum(mapping, "protocol", PORT_MAPPING.fields["protocol"].spec)


def _normalize_container(app: dict) -> None:
    container = _dict(app.get("container"))
    if container is None:
        return
    if container.get("type") is None:
        container["type"] = "DOCKER"
    _canonical_enum(container, "type", CONTAINER.fields["type"].spec)
    if container.get("volumes") is None:
        container["volumes"] = []
    docker = _dict(container.get("docker"))
    if docker is None:
        return
    if container["type"] == "DOCKER":
        for key in ("forcePullImage", "privileged"):
            if docker.get(key) is None:
                docker[key] = False
        if docker.get("parameters") is None:
            docker["parameters"] = []


def _normalize_constraints(app: dict) -> None:
    for constraint in _list(app.get("constraints")) or []:
        if isinstance(constraint, list) and len(constraint) >= 2 and isinstance(constraint[1], str):
            constraint[1] = constraint[1].upper()


def _normalize_fetch(app: dict) -> None:
    for artifact in _list(app.get("fetch")) or []:
        if isinstance(artifact, dict):
            for key, default in (("extract", True), ("executable", False), ("cache", False)):
                if artifact.get(key) is None:
                    artifact[key] = default


# --------------------------------------------------------------------------- comparable


def comparable(app: Mapping[str, Any]) -> dict:
    """``normalize_app`` minus what Marathon owns, with set-like lists in a stable order."""
    out = normalize_app(app)
    for key in MARATHON_OWNED:
        out.pop(key, None)
    for key in SET_LIKE:
        if isinstance(out.get(key), list):
            out[key] = sorted(out[key], key=_sort_key)
    return out


def _sort_key(value: Any) -> str:
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
