"""Validate app definitions offline, the way Marathon 1.10 does, reporting every problem at once.

:func:`validate_app` returns a list of :class:`~marathon_bridge.errors.Issue`, each with the
JSON path Marathon uses in its 422 ``details`` (``/id``, ``/container/portMappings(0)/hostPort``,
``/healthChecks(0)/protocol``, ``/`` for rules about the whole object) and Marathon's own message.

Two kinds of issues, as Marathon has two kinds of 422:
- ``kind="type"``: the JSON does not have the shape Marathon reads (wrong type, missing required
  field, RAML minimum/maximum/length/pattern, unknown enum literal). Messages are play-json keys
  (``error.expected.jsnumber``, ``error.path.missing``, ``error.max``, ...). Marathon answers
  these with ``{"message": "Invalid JSON", "details": [...]}`` and stops there.
- ``kind="semantic"``: rule violations found on a well-typed app (cmd/args/container, networks,
  ports, checks, constraints, ...), answered with ``{"message": "Object is not valid", ...}``.

This module reports both kinds together, so a user fixes everything in one go. Whoever imitates
Marathon (the emulator) should answer with the ``type`` issues alone when there are any, and
with the ``semantic`` ones otherwise. Semantic rules skip values of the wrong type (those already
have a ``type`` issue). Both functions are pure and never raise, whatever JSON they get.

:func:`human_message` turns an issue's play-json key into text for people, keeping the key:
``"expected a number (error.expected.jsnumber)"``.

Where this is stricter than Marathon, on purpose: a health check ``path`` on a non-HTTP check,
a ``COMMAND`` check without ``command`` and a ``MAX_PER``/``IS`` constraint without a value are
reported. Not checked (they depend on Marathon's flags): enabled features (secrets, GPUs,
external volumes) and the accepted role names.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from marathon_bridge.definitions.load import AppSource, resolve_id
from marathon_bridge.definitions.normalize import (
    BRIDGE,
    CONTAINER_MODE,
    HOST,
    canonical_view,
    network_modes,
)
from marathon_bridge.definitions.schema import (
    APP,
    PATH_ID_WHAT,
    Arr,
    Enum,
    Int,
    Num,
    Str,
    check,
    is_integral,
    spec_at,
)
from marathon_bridge.errors import Issue

RESERVED_ID_ENDINGS = ("restart", "tasks", "versions", ".", "..")
ID_SEGMENT = r"(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])"
CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
MARATHON_HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP")
MESOS_HEALTH_PROTOCOLS = ("COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
HTTP_HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS")
IPV6_HEALTH_PROTOCOLS = ("MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")

MSG_CMD_ARGS_CONTAINER = (
    "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
)
MSG_PORT_MAPPINGS_HOST = "portMappings are not allowed with host-networking"
MSG_PORT_DEFINITIONS_NON_HOST = "portDefinitions are only allowed with host-networking"
MSG_NETWORK_NAME_REQUIRED = "Network name must be specified when container network is selected."
MSG_DOCKER_SINGLE_NETWORK = (
    "may only specify a single container network when using the Docker container engine"
)
MSG_NETWORK_NAMES_FOR_HOST_PORT = (
    "networkNames must be a single item list when hostPort is specified "
    "and more than 1 container network is defined"
)
MSG_HEALTH_PORT_INDEX = (
    "Health check port indices must address an element of the ports array "
    "or container port mappings."
)
MSG_ONE_MESOS_CHECK = "AppDefinition can contain at most one Mesos health check"
MSG_BAD_OPERATOR = (
    "Constraint operator must be one of the following "
    "UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS"
)


class _Collector:
    """Issues in the order found, without duplicates."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self._seen: set[tuple[str, str, str]] = set()

    def add(self, path: str, message: str, kind: str = "semantic") -> None:
        key = (path, message, kind)
        if key not in self._seen:
            self._seen.add(key)
            self.issues.append(Issue(path=path, message=message, kind=kind))


def validate_app(
    app: Any, *, source: str = "", default_network_name: Optional[str] = None
) -> list[Issue]:
    """Every problem of one app definition, with Marathon's paths and messages.

    ``default_network_name`` is Marathon's ``--default_network_name``: without it, a
    ``container`` network needs a ``name``. Never raises; ``[]`` means valid.
    """
    out = _Collector()
    if not isinstance(app, Mapping):
        out.add("/", "error.expected.jsobject", "type")
    else:
        for issue in check(APP, app):
            out.add(issue.path, issue.message, issue.kind)
        _check_ids(app, out)
        view = canonical_view(app)
        _check_legacy(app, out)
        _check_command(app, view, out)
        _check_networks(view, out, default_network_name)
        _check_explicit_network_ports(app, out)
        _check_ports(view, out)
        _check_container(view, out)
        _check_health_checks(view, out)
        _check_readiness_checks(view, out)
        _check_constraints(view, out)
        _check_scheduling(view, out)
        _check_env(view, out)
    if source:
        return [Issue(i.path, i.message, source, i.kind) for i in out.issues]
    return out.issues


def validate_apps(
    apps: Sequence[AppSource], *, default_network_name: Optional[str] = None
) -> list[Issue]:
    """All issues of all apps (``source`` filled in), plus ids used by more than one app."""
    issues: list[Issue] = []
    first_seen: dict[str, str] = {}
    for item in apps:
        issues.extend(
            validate_app(item.app, source=item.source, default_network_name=default_network_name)
        )
        raw_id = item.app.get("id") if isinstance(item.app, Mapping) else None
        if not isinstance(raw_id, str) or not raw_id.strip("/"):
            continue
        app_id = resolve_id(raw_id)
        if app_id in first_seen:
            message = f"duplicate app id '{app_id}' (also defined in {first_seen[app_id]})"
            issues.append(Issue(path="/id", message=message, source=item.source))
        else:
            first_seen[app_id] = item.source
    return issues


# --------------------------------------------------------------------------- small helpers


def _dict(value: Any) -> Optional[Mapping[str, Any]]:
    return value if isinstance(value, Mapping) else None


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[tuple[int, Mapping[str, Any]]]:
    return [(i, item) for i, item in enumerate(_list(value)) if isinstance(item, Mapping)]


def _present(mapping: Mapping[str, Any], key: str) -> bool:
    return mapping.get(key) is not None


def _non_empty_list(value: Any) -> bool:
    return isinstance(value, list) and len(value) > 0


def _int(value: Any) -> Optional[int]:
    return int(value) if is_integral(value) else None


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _container_type(view: Mapping[str, Any]) -> Optional[str]:
    container = _dict(view.get("container"))
    if container is None:
        return None
    raw = container.get("type")
    if raw is None:
        return "DOCKER"
    return Enum(("MESOS", "DOCKER")).canonical(raw)


# --------------------------------------------------------------------------- ids


def id_problems(app_id: str) -> tuple[list[str], list[str]]:
    """(type problems, semantic problems) of an app id string, Marathon's way."""
    segments = app_id.split("/")
    if not all(s in ("", "..") or re.fullmatch(ID_SEGMENT, s) for s in segments):
        return ["error.pattern"], []
    named = [s for s in segments if s]
    if not named:
        return [], ["Path must contain at least one path element"]
    if named[-1] in RESERVED_ID_ENDINGS:
        return [], [
            "must not end with any of the following reserved keywords: "
            + ", ".join(RESERVED_ID_ENDINGS)
        ]
    return [], []


def _check_ids(app: Mapping[str, Any], out: _Collector) -> None:
    app_id = app.get("id")
    if isinstance(app_id, str) and app_id:
        type_problems, semantic_problems = id_problems(app_id)
        for message in type_problems:
            out.add("/id", message, "type")
        for message in semantic_problems:
            out.add("/id", message)
    for index, dependency in enumerate(_list(app.get("dependencies"))):
        if isinstance(dependency, str) and dependency:
            type_problems, semantic_problems = id_problems(dependency)
            for message in type_problems + semantic_problems:
                out.add(
                    f"/dependencies({index})",
                    message,
                    "type" if message in type_problems else "semantic",
                )


# --------------------------------------------------------------------------- deprecated fields


def _check_legacy(app: Mapping[str, Any], out: _Collector) -> None:
    container = _dict(app.get("container")) or {}
    docker = _dict(container.get("docker")) or {}
    ip_address = _dict(app.get("ipAddress"))
    networks_given = _non_empty_list(app.get("networks"))
    if _present(docker, "network") and _present(app, "networks"):
        out.add("/", "must not specify both container.docker.network and networks")
    if ip_address is not None and networks_given:
        out.add("/", "must not specify both networks and ipAddress")
    if (
        ip_address is not None
        and _container_type(app) == "DOCKER"
        and _present(ip_address, "discovery")
    ):
        out.add("/ipAddress", "ipAddress/discovery is not allowed for Docker containers")
    ports = _list(app.get("ports"))
    fixed = [p for p in ports if is_integral(p) and p != 0]
    if len(fixed) != len(set(fixed)):
        out.add("/", "ports must be unique")
    if ip_address is not None and (ports or _non_empty_list(app.get("portDefinitions"))):
        out.add("/", "cannot specify both an IP address and port")
    definitions = app.get("portDefinitions")
    if ports and isinstance(definitions, list) and definitions:
        same = [d.get("port", 0) if isinstance(d, Mapping) else None for d in definitions] == ports
        if not same:
            out.add("/", "cannot specify both ports and port definitions")
    if _non_empty_list(docker.get("portMappings")) and _present(container, "portMappings"):
        out.add("/container", "cannot specify both portMappings and docker.portMappings")
    discovery = _dict(ip_address.get("discovery")) if ip_address is not None else None
    if (
        discovery
        and _non_empty_list(discovery.get("ports"))
        and _present(container, "portMappings")
    ):
        out.add("/", "container.portMappings and ipAddress.discovery.ports must not both be set")
    if _non_empty_list(app.get("uris")) and _non_empty_list(app.get("fetch")):
        out.add("/uris", "may not be set in conjunction with fetch")
    if _container_type(app) == "MESOS":
        for key in ("network", "parameters", "portMappings"):
            value = docker.get(key)
            if value is not None and value != []:
                out.add(f"/container/docker/{key}", "must be empty")
    docker_mappings = docker.get("portMappings")
    if _duplicate_names(docker_mappings):
        out.add("/container/docker/portMappings", "Port names must be unique.")


def _duplicate_names(items: Any) -> bool:
    names = [item.get("name") for _, item in _dicts(items) if isinstance(item.get("name"), str)]
    return len(names) != len(set(names))


# --------------------------------------------------------------------------- cmd / args / container


def _check_command(app: Mapping[str, Any], view: Mapping[str, Any], out: _Collector) -> None:
    has_cmd = _present(app, "cmd")
    args = app.get("args")
    has_args = args is not None and args != []
    container = _dict(view.get("container"))
    has_container = False
    if container is not None:
        engine = _container_type(view)
        has_image = _present(container, "docker") or _present(container, "appc")
        has_container = engine in ("DOCKER", "MESOS") and has_image
    if not ((has_cmd != has_args) or (not (has_cmd and has_args) and has_container)):
        out.add("/", MSG_CMD_ARGS_CONTAINER)
    cmd = app.get("cmd")
    if isinstance(cmd, str) and len(cmd) == 1:
        out.add("/", "must not be an empty string")


# --------------------------------------------------------------------------- networks


def _check_networks(
    view: Mapping[str, Any], out: _Collector, default_network_name: Optional[str]
) -> None:
    networks = _dicts(view.get("networks"))
    modes = network_modes(view)
    if not networks:
        return
    if any(
        modes[i] == HOST and (_str(n.get("name")) or _dict(n.get("labels"))) for i, n in networks
    ):
        out.add("/networks", "Host networks may not have names or labels")
    if any(modes[i] == BRIDGE and _str(n.get("name")) for i, n in networks):
        out.add("/networks", "Bridge networks may not have names")
    names = [n.get("name") for _, n in networks if isinstance(n.get("name"), str)]
    unnamed = sum(1 for i, n in networks if modes[i] == CONTAINER_MODE and not _present(n, "name"))
    if unnamed > 1 or len(names) != len(set(names)):
        out.add("/networks", "Duplicate networks are not allowed")
    counts = Counter(modes)
    hosts, bridges, containers = counts[HOST], counts[BRIDGE], counts[CONTAINER_MODE]
    if not (
        (hosts <= 1 and bridges == 0 and containers == 0)
        or (hosts == 0 and bridges <= 1 and containers == 0)
        or (hosts == 0 and bridges == 0 and containers > 0)
    ):
        out.add(
            "/networks",
            "May specify a single host network, single bridge network, "
            "or else 1-to-n container networks",
        )
    if unnamed and default_network_name is None:
        out.add("/", MSG_NETWORK_NAME_REQUIRED)
    if _container_type(view) == "DOCKER" and containers > 1:
        out.add("/", MSG_DOCKER_SINGLE_NETWORK)


def _check_explicit_network_ports(app: Mapping[str, Any], out: _Collector) -> None:
    """Ports that do not fit explicitly given ``networks``.

    When ``networks`` is not given (legacy ``docker.network``/``ipAddress``, or nothing),
    Marathon silently drops the ports that do not apply, so only explicit networks count.
    """
    if not _non_empty_list(app.get("networks")):
        return
    modes = network_modes(app)
    container = _dict(app.get("container")) or {}
    docker = _dict(container.get("docker")) or {}
    mappings = container.get("portMappings") or docker.get("portMappings")
    if HOST in modes and _non_empty_list(mappings):
        out.add("/", MSG_PORT_MAPPINGS_HOST)
    definitions = app.get("portDefinitions") or app.get("ports")
    if any(m != HOST for m in modes) and _non_empty_list(definitions):
        out.add("/", MSG_PORT_DEFINITIONS_NON_HOST)


# --------------------------------------------------------------------------- ports


def _check_ports(view: Mapping[str, Any], out: _Collector) -> None:
    definitions = view.get("portDefinitions")
    if _duplicate_names(definitions):
        out.add("/portDefinitions", "Port names must be unique.")
    fixed = [
        p for p in (d.get("port") for _, d in _dicts(definitions)) if is_integral(p) and p != 0
    ]
    if len(fixed) != len(set(fixed)):
        out.add("/portDefinitions", "Ports must be unique.")
    container = _dict(view.get("container")) or {}
    mappings = container.get("portMappings")
    if _duplicate_names(mappings):
        out.add("/container/portMappings", "Port names must be unique.")
    networks = _dicts(view.get("networks"))
    modes = network_modes(view)
    network_names = [n["name"] for _, n in networks if isinstance(n.get("name"), str)]
    several_containers = sum(1 for m in modes if m == CONTAINER_MODE) > 1
    for index, mapping in _dicts(mappings):
        here = f"/container/portMappings({index})"
        names = mapping.get("networkNames")
        if (
            several_containers
            and _present(mapping, "hostPort")
            and not (isinstance(names, list) and len(names) == 1)
        ):
            out.add(here, MSG_NETWORK_NAMES_FOR_HOST_PORT)
        for name_index, name in enumerate(_list(names)):
            if isinstance(name, str) and name not in network_names:
                out.add(
                    f"{here}/networkNames({name_index})",
                    f"is not one of ({','.join(network_names)})",
                )


def port_count(view: Mapping[str, Any]) -> int:
    """How many ports ``portIndex`` may address (Marathon's defaults included)."""
    container = _dict(view.get("container")) or {}
    mappings = container.get("portMappings")
    if _non_empty_list(mappings):
        return len(container["portMappings"])
    definitions = view.get("portDefinitions")
    if isinstance(definitions, list):
        return len(definitions)
    return 1  # the default port definition (host) or port mapping (other modes)


def port_names(view: Mapping[str, Any]) -> list[str]:
    """Names a readiness check's ``portName`` may use (Marathon's defaults included)."""
    container = _dict(view.get("container")) or {}
    if isinstance(container.get("portMappings"), list):
        ports = container["portMappings"]
    elif isinstance(view.get("portDefinitions"), list):
        ports = view["portDefinitions"]
    else:
        ports = [{"name": "default"}]
    return [p["name"] for p in ports if isinstance(p, Mapping) and isinstance(p.get("name"), str)]


# --------------------------------------------------------------------------- container


def _check_container(view: Mapping[str, Any], out: _Collector) -> None:
    container = _dict(view.get("container"))
    if container is None:
        return
    engine = _container_type(view)
    docker = _dict(container.get("docker"))
    if engine == "DOCKER" and not _present(container, "docker"):
        out.add("/container/docker", "not defined")
    if engine == "DOCKER" and docker is not None and _present(docker, "pullConfig"):
        out.add(
            "/container/docker/pullConfig", "pullConfig is not supported with Docker containerizer"
        )
    if engine == "MESOS" and docker is not None:
        pull = _dict(docker.get("pullConfig"))
        secrets = _dict(view.get("secrets")) or {}
        if (
            pull is not None
            and isinstance(pull.get("secret"), str)
            and pull["secret"] not in secrets
        ):
            out.add(
                "/container/docker/pullConfig", "pullConfig.secret must refer to an existing secret"
            )
    if engine == "DOCKER" and is_integral(view.get("gpus")) and view["gpus"] > 0:
        out.add("/", "GPU resources only work with the Mesos containerizer")
    for index, volume in _dicts(container.get("volumes")):
        if "hostPath" in volume:
            for key in ("containerPath", "hostPath"):
                if not _str(volume.get(key)):
                    out.add(f"/container/volumes({index})/{key}", "must not be empty")


# --------------------------------------------------------------------------- checks


def _check_health_checks(view: Mapping[str, Any], out: _Collector) -> None:
    checks = _dicts(view.get("healthChecks"))
    ports = port_count(view)
    mesos_checks = 0
    for index, hc in checks:
        here = f"/healthChecks({index})"
        protocol = hc.get("protocol")
        has_command = _present(hc, "command")
        if protocol in MESOS_HEALTH_PROTOCOLS and not has_command:
            mesos_checks += 1
        if protocol in MARATHON_HEALTH_PROTOCOLS and not has_command:
            port_index = _int(hc.get("portIndex"))
            if port_index is not None and not 0 <= port_index < ports:
                out.add(here, MSG_HEALTH_PORT_INDEX)
        if protocol == "COMMAND" and not has_command:
            out.add(f"{here}/command", "command is required for COMMAND health checks")
        non_http = protocol in MARATHON_HEALTH_PROTOCOLS + MESOS_HEALTH_PROTOCOLS
        if _present(hc, "path") and non_http and protocol not in HTTP_HEALTH_PROTOCOLS:
            out.add(
                f"{here}/path",
                "path is only allowed with HTTP, HTTPS, MESOS_HTTP and MESOS_HTTPS health checks",
            )
        ipv6_ok = _container_type(view) == "DOCKER" and protocol in IPV6_HEALTH_PROTOCOLS
        if hc.get("ipProtocol") == "IPv6" and not ipv6_ok:
            out.add(
                f"{here}/ipProtocol",
                "IPv6 can only be used for container type DOCKER "
                "and Mesos http/https/tcp health checks",
            )
        timeout = _int(hc.get("timeoutSeconds"))
        if timeout is not None and timeout < 0:
            out.add(f"{here}/timeoutSeconds", f"got {timeout}, expected 0 or more")
    if mesos_checks > 1:
        out.add("/", MSG_ONE_MESOS_CHECK)


def _check_readiness_checks(view: Mapping[str, Any], out: _Collector) -> None:
    checks = _list(view.get("readinessChecks"))
    if len(checks) > 1:
        out.add("/readinessChecks", f"got {len(checks)}, expected 1 or less")
    names = port_names(view)
    for index, rc in _dicts(checks):
        here = f"/readinessChecks({index})"
        name = rc.get("portName")
        if isinstance(name, str) and name not in names:
            out.add(f"{here}/portName", f"No port definition reference for portName {name}")
        timeout, interval = _int(rc.get("timeoutSeconds")), _int(rc.get("intervalSeconds"))
        if timeout is not None and interval is not None and timeout >= interval:
            out.add(f"{here}/timeoutSeconds", f"got {timeout}, expected less than {interval}")


# --------------------------------------------------------------------------- constraints


def constraint_problem(constraint: list) -> Optional[str]:
    """Marathon's message for a bad ``[field, OPERATOR, value?]`` constraint, or None."""
    if len(constraint) < 2 or len(constraint) > 3:
        return "Each constraint must have either 2 or 3 fields"
    if not all(isinstance(part, str) for part in constraint):
        return None  # a type issue was reported already
    operator = constraint[1].upper()
    value: Optional[str] = constraint[2] if len(constraint) == 3 else None
    if operator not in CONSTRAINT_OPERATORS:
        return MSG_BAD_OPERATOR
    if operator == "UNIQUE" and value is not None:
        return "Value specified but not used"
    if operator in ("CLUSTER", "IS") and value is None:
        return "Missing value"
    if operator == "GROUP_BY" and value is not None and not _is_int_text(value):
        return "Value was specified but is not a number"
    if operator == "MAX_PER" and (value is None or not _is_int_text(value)):
        return "Value was not specified or is not a number"
    if operator in ("LIKE", "UNLIKE"):
        if value is None:
            return "A regular expression value must be provided"
        if not _is_regex(value):
            return f"'{value}' is not a valid regular expression"
    return None


def _is_int_text(text: str) -> bool:
    return INTEGER_TEXT.fullmatch(text) is not None and -(2**31) <= int(text) < 2**31


def _is_regex(text: str) -> bool:
    try:
        re.compile(text)
    except (re.error, RecursionError, OverflowError, ValueError):
        return False
    return True


def _check_constraints(view: Mapping[str, Any], out: _Collector) -> None:
    for index, constraint in enumerate(_list(view.get("constraints"))):
        if isinstance(constraint, list):
            problem = constraint_problem(constraint)
            if problem:
                out.add(f"/constraints({index})", problem)


# --------------------------------------------------------------------------- scheduling


def _check_scheduling(view: Mapping[str, Any], out: _Collector) -> None:
    labels = _dict(view.get("labels")) or {}
    instances = _int(view.get("instances"))
    if (
        labels.get("MARATHON_SINGLE_INSTANCE_APP") == "true"
        and instances is not None
        and instances > 1
    ):
        out.add("/", "Single instance app may only have one instance")
    unreachable = view.get("unreachableStrategy")
    if isinstance(unreachable, Mapping):
        inactive, expunge = (
            _int(unreachable.get("inactiveAfterSeconds", 0)),
            _int(unreachable.get("expungeAfterSeconds", 0)),
        )
        if inactive is not None and expunge is not None and inactive > expunge:
            out.add(
                "/unreachableStrategy/inactiveAfterSeconds",
                f"got {inactive}, expected {expunge} or less",
            )
    resident = _present(view, "residency")
    container = _dict(view.get("container")) or {}
    persistent = any("persistent" in v for _, v in _dicts(container.get("volumes")))
    if resident != persistent:
        out.add("/", "App must contain persistent volumes and define residency")
    if resident and unreachable is not None and unreachable != "disabled":
        out.add("/", "unreachableStrategy must be disabled for resident tasks")


def _check_env(view: Mapping[str, Any], out: _Collector) -> None:
    env = _dict(view.get("env")) or {}
    secrets = _dict(view.get("secrets")) or {}
    for name, value in env.items():
        ref = _dict(value)
        if ref is not None and isinstance(ref.get("secret"), str) and ref["secret"] not in secrets:
            out.add(f"/env/{name}/secret", "references an undefined secret")


# --------------------------------------------------------------------------- human messages

_PLAIN = {
    "error.expected.jsstring": "expected a string",
    "error.expected.jsnumber": "expected a number",
    "error.expected.jsboolean": "expected true or false",
    "error.expected.jsarray": "expected a list",
    "error.expected.jsobject": "expected an object",
    "error.expected.int": "expected a whole number (32-bit)",
    "error.expected.long": "expected a whole number",
    "error.path.missing": "required field is missing",
}


def human_message(issue: Issue) -> str:
    """Readable text for an issue; play-json keys stay visible in parentheses."""
    key = issue.message
    if not key.startswith("error."):
        return key
    text = _PLAIN.get(key) or _describe_limit(key, issue.path)
    return f"{text} ({key})" if text else key


def _describe_limit(key: str, path: str) -> str:
    spec = spec_at(path) if path.startswith("/") else None
    if key == "error.min" and isinstance(spec, (Int, Num)) and spec.minimum is not None:
        return f"must be at least {_number(spec.minimum)}"
    if key == "error.max" and isinstance(spec, (Int, Num)) and spec.maximum is not None:
        return f"must be at most {_number(spec.maximum)}"
    if key in ("error.minLength", "error.maxLength"):
        return _describe_length(key, spec)
    if key == "error.pattern":
        if path == "/id" or path.startswith("/dependencies("):
            return f"must be {PATH_ID_WHAT}"
        if isinstance(spec, Str) and spec.what:
            return f"must be {spec.what}"
        return "does not have the required format"
    if key == "error.unknown.enum.literal" and isinstance(spec, Enum):
        return "must be one of " + ", ".join(spec.values)
    if key == "error.unknown.enum.literal":
        return "is not one of the allowed values"
    return {"error.min": "is too small", "error.max": "is too big"}.get(key, "")


def _describe_length(key: str, spec: Any) -> str:
    low = key == "error.minLength"
    if isinstance(spec, Str):
        bound = spec.min_length if low else spec.max_length
        if bound == 1 and low:
            return "must not be empty"
        if bound is not None:
            return f"must have {'at least' if low else 'at most'} {bound} characters"
    if isinstance(spec, Arr):
        bound = spec.min_items if low else spec.max_items
        if bound is not None:
            return f"must have {'at least' if low else 'at most'} {bound} items"
    return "is too short" if low else "is too long"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


__all__ = [
    "constraint_problem",
    "human_message",
    "id_problems",
    "port_count",
    "port_names",
    "validate_app",
    "validate_apps",
]
