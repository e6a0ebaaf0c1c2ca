"""Pure helpers on app definitions for the emulator: normalization, output shape, service ports.

Validation and normalization are :mod:`marathon_bridge.definitions`' (the same rules the CLI
checks offline); this module adds what Marathon does on top: the output shape and key order,
service and host ports, health check ports, label selectors.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.definitions.normalize import MARATHON_OWNED, normalize_app
from marathon_bridge.definitions.validate import validate_app
from marathon_bridge.errors import Issue

App = dict[str, Any]

# Top-level App fields Marathon 1.10 reads (RAML app.raml); anything else is ignored by Marathon.
APP_FIELDS = (
    "id",
    "acceptedResourceRoles",
    "args",
    "backoffFactor",
    "backoffSeconds",
    "cmd",
    "constraints",
    "container",
    "cpus",
    "dependencies",
    "disk",
    "env",
    "executor",
    "executorResources",
    "fetch",
    "healthChecks",
    "check",
    "instances",
    "labels",
    "maxLaunchDelaySeconds",
    "mem",
    "gpus",
    "ipAddress",
    "networks",
    "ports",
    "portDefinitions",
    "readinessChecks",
    "residency",
    "resourceLimits",
    "requirePorts",
    "secrets",
    "taskKillGracePeriodSeconds",
    "upgradeStrategy",
    "uris",
    "user",
    "version",
    "versionInfo",
    "killSelection",
    "unreachableStrategy",
    "tty",
    "role",
)
# Fields never written back in >= 1.5 (deprecated inputs).
DEPRECATED_FIELDS = ("ports", "uris", "ipAddress")
DOUBLE_FIELDS = ("cpus", "mem", "disk", "backoffFactor")
EMPTY_OMITTED = (
    "args",
    "constraints",
    "acceptedResourceRoles",
    "dependencies",
    "env",
    "secrets",
    "fetch",
    "healthChecks",
    "readinessChecks",
)
# Marathon-owned keys a client may send back (ignored on input).
OWNED_KEYS = MARATHON_OWNED


def validate(app: Mapping[str, Any]) -> list[Issue]:
    """Marathon's validation of one app."""
    return validate_app(app)


def normalize(app: Mapping[str, Any]) -> App:
    """Marathon's defaults filled in, in Marathon's output shape."""
    return finish_normalized(dict(normalize_app(app)))


def absolute_id(app_id: str) -> str:
    """Canonical absolute path: leading slash, no empty segments, no trailing slash."""
    parts = [p for p in str(app_id).split("/") if p]
    return "/" + "/".join(parts)


def safe_path(app_id: str) -> str:
    """Marathon's safePath: path segments joined with ``_``."""
    return "_".join(p for p in app_id.split("/") if p)


def parent_group(app_id: str) -> str:
    """The group an app belongs to ("/" for top-level apps)."""
    parent = app_id.rsplit("/", 1)[0]
    return parent or "/"


def network_mode(app: Mapping[str, Any]) -> str:
    """``host``, ``container/bridge`` or ``container`` (first network's mode)."""
    networks = app.get("networks") or [{"mode": "host"}]
    first = networks[0] if isinstance(networks[0], Mapping) else {}
    return str(first.get("mode", "container"))


def finish_normalized(app: App) -> App:
    """Output rules Marathon applies whatever the normalizer did: doubles, omissions, modes."""
    out = copy.deepcopy(app)
    out["id"] = absolute_id(str(out.get("id", "")))
    for key in DOUBLE_FIELDS:
        if isinstance(out.get(key), (int, float)) and not isinstance(out.get(key), bool):
            out[key] = float(out[key])
    strategy = out.get("upgradeStrategy")
    if isinstance(strategy, dict):
        out["upgradeStrategy"] = {
            "maximumOverCapacity": float(strategy.get("maximumOverCapacity", 1.0)),
            "minimumHealthCapacity": float(strategy.get("minimumHealthCapacity", 1.0)),
        }
    for key in EMPTY_OMITTED:
        if key in out and not out[key]:
            del out[key]
    mode = network_mode(out)
    container = out.get("container")
    if mode == "host":
        if isinstance(container, dict):
            container.pop("portMappings", None)
    else:
        out.pop("portDefinitions", None)
    for key in DEPRECATED_FIELDS:
        out.pop(key, None)
    return out


def order_app(app: Mapping[str, Any], keep_unknown: bool) -> App:
    """Keys in Marathon's writer order; unknown top-level keys dropped unless ``keep_unknown``."""
    out: App = {}
    for key in APP_FIELDS:
        if key in app and key not in DEPRECATED_FIELDS:
            out[key] = app[key]
    if keep_unknown:
        for key, value in app.items():
            if key not in out and key not in DEPRECATED_FIELDS:
                out[key] = value
    return out


# ---------------------------------------------------------------- service ports


def service_port_slots(app: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(where, index) of every service port: ("pd", i) or ("pm", i)."""
    if network_mode(app) == "host":
        return [("pd", i) for i in range(len(app.get("portDefinitions") or []))]
    mappings = (app.get("container") or {}).get("portMappings") or []
    return [("pm", i) for i in range(len(mappings))]


def service_ports(app: Mapping[str, Any]) -> list[int]:
    """The app's service ports (portMappings servicePort, else portDefinitions port)."""
    out: list[int] = []
    for where, i in service_port_slots(app):
        if where == "pd":
            out.append(int(app["portDefinitions"][i].get("port", 0)))
        else:
            out.append(int(app["container"]["portMappings"][i].get("servicePort", 0)))
    return out


def _set_service_port(app: App, where: str, index: int, port: int) -> None:
    if where == "pd":
        app["portDefinitions"][index]["port"] = port
    else:
        app["container"]["portMappings"][index]["servicePort"] = port


def assign_service_ports(
    app: Mapping[str, Any],
    previous: Optional[Mapping[str, Any]],
    used: set[int],
    port_min: int = 10000,
    port_max: int = 20000,
) -> App:
    """A copy of ``app`` with every 0 service port assigned (REFERENCE 3.3).

    First the previous version's ports that the new version no longer uses, then the lowest port
    in [port_min, port_max] used by no app. ``used`` holds every other app's service ports.
    """
    out: App = copy.deepcopy(dict(app))
    wanted = service_ports(out)
    taken = set(used) | {p for p in wanted if p}
    reusable = [p for p in (service_ports(previous) if previous else []) if p and p not in taken]
    candidate = port_min
    for (where, index), port in zip(service_port_slots(out), wanted):
        if port:
            continue
        if reusable:
            chosen = reusable.pop(0)
        else:
            while candidate in taken:
                candidate += 1
            if candidate > port_max:
                raise PortRangeExhausted(port_min, port_max)
            chosen = candidate
        taken.add(chosen)
        _set_service_port(out, where, index, chosen)
    return out


class PortRangeExhausted(Exception):
    """No free service port is left in the configured range."""

    def __init__(self, port_min: int, port_max: int) -> None:
        super().__init__(f"All ports in the range [{port_min}-{port_max}) are already in use")


# ---------------------------------------------------------------- task ports


def host_port_requests(app: Mapping[str, Any]) -> list[int]:
    """One entry per host port a task of this app gets: 0 = pick one, n = exactly n."""
    mode = network_mode(app)
    if mode == "host":
        require = bool(app.get("requirePorts"))
        return [int(pd.get("port", 0)) if require else 0 for pd in app.get("portDefinitions") or []]
    out: list[int] = []
    for pm in (app.get("container") or {}).get("portMappings") or []:
        if "hostPort" in pm:
            out.append(int(pm.get("hostPort") or 0))
    return out


def health_check_port(
    app: Mapping[str, Any], check: Mapping[str, Any], host_ports: list[int]
) -> int:
    """The port a Marathon-level health check probes on a task (0 if none)."""
    if check.get("port"):
        return int(check["port"])
    index = int(check.get("portIndex", 0) or 0)
    if network_mode(app) == "container":
        mappings = (app.get("container") or {}).get("portMappings") or []
        if index < len(mappings) and "hostPort" not in mappings[index]:
            return int(mappings[index].get("containerPort", 0) or 0)
    return host_ports[index] if index < len(host_ports) else 0


def config_part(app: Mapping[str, Any]) -> App:
    """The app without what scaling changes (instances) and what Marathon owns."""
    return {k: v for k, v in app.items() if k not in ("instances", *OWNED_KEYS)}


def ceil_fraction(fraction: float, count: int) -> int:
    """ceil(fraction * count) with float noise removed."""
    return math.ceil(round(fraction * count, 9))


# ---------------------------------------------------------------- label selectors


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped, depth = [], "", False, 0
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "(":
            depth += 1
            current += char
        elif char == ")":
            depth -= 1
            current += char
        elif char == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_label_selector(text: str) -> list[tuple[str, str, list[str]]]:
    """``key``, ``key==v``, ``key!=v``, ``key in (a,b)``, ``key notin (a,b)`` joined by commas."""
    out: list[tuple[str, str, list[str]]] = []
    for term in _split_unescaped(text, ","):
        term = term.strip()
        if not term:
            continue
        if "==" in term:
            key, value = term.split("==", 1)
            out.append((key.strip(), "==", [value.strip()]))
        elif "!=" in term:
            key, value = term.split("!=", 1)
            out.append((key.strip(), "!=", [value.strip()]))
        elif " notin " in term or " in " in term:
            op = "notin" if " notin " in term else "in"
            key, rest = term.split(f" {op} ", 1)
            values = [v.strip() for v in rest.strip().strip("()").split(",")]
            out.append((key.strip(), op, values))
        else:
            out.append((term, "exists", []))
    return out


def labels_match(labels: Mapping[str, Any], selector: list[tuple[str, str, list[str]]]) -> bool:
    """Every selector term holds for these labels."""
    for key, op, values in selector:
        value = labels.get(key)
        if op == "exists" and key not in labels:
            return False
        if op in ("==", "in") and (value is None or value not in values):
            return False
        if op in ("!=", "notin") and value is not None and value in values:
            return False
    return True
