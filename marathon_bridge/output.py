"""What the CLI prints: aligned text tables and stable JSON documents (pure, no I/O).

Every ``*_json`` function returns plain data with fixed, snake_case keys (lists in a stable
order); :func:`to_json` renders it with sorted keys. Every ``*_rows`` function returns the
header and rows of a text table for :func:`table`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Optional

from marathon_bridge.definitions.messages import human_message
from marathon_bridge.errors import Issue
from marathon_bridge.listeners import clashes, listeners
from marathon_bridge.services import Service

Rows = tuple[Sequence[str], list[Sequence[Any]]]


def to_json(data: Any) -> str:
    """Indented JSON with sorted keys, ending in a newline."""
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces; ``None`` prints as ``-``."""
    cells = [[_cell(v) for v in header]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def value_text(value: Any) -> str:
    """A value of an app definition, as JSON (compact, keys sorted)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


# --- issues ---------------------------------------------------------------------------------------


def issue_text(issue: Issue) -> str:
    """``file:line:column: /path: error.key: what is allowed`` (``file#item`` when the position
    is unknown); a field Marathon ignores reads ``...: warning: /path: unknown field ...``."""
    where = f"{issue.location}: " if issue.location else ""
    warning = "warning: " if issue.kind == "unknown" else ""
    return f"{where}{warning}{issue.path}: {human_message(issue)}"


def issues_json(issues: Sequence[Issue]) -> list[dict[str, Any]]:
    """Each issue: Marathon's path and message (a play-json key or its sentence), the text for
    people (``explanation``: what the field allows), the file, line and column (0: unknown)."""
    return [
        {
            "source": i.source,
            "path": i.path,
            "message": i.message,
            "kind": i.kind,
            "line": i.line,
            "column": i.column,
            "text": human_message(i),
        }
        for i in issues
    ]


# --- apps -----------------------------------------------------------------------------------------


def _deployment_ids(app: Mapping[str, Any]) -> list[str]:
    return [str(d.get("id")) for d in app.get("deployments") or [] if isinstance(d, Mapping)]


def app_json(app: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": app.get("id", ""),
        "instances": app.get("instances"),
        "running": app.get("tasksRunning", 0),
        "healthy": app.get("tasksHealthy", 0),
        "unhealthy": app.get("tasksUnhealthy", 0),
        "staged": app.get("tasksStaged", 0),
        "cpus": app.get("cpus"),
        "mem": app.get("mem"),
        "version": app.get("version", ""),
        "deployments": _deployment_ids(app),
    }


def apps_json(apps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted((app_json(a) for a in apps), key=lambda a: str(a["id"]))


def apps_rows(apps: Iterable[Mapping[str, Any]]) -> Rows:
    header = (
        "ID",
        "INSTANCES",
        "RUNNING",
        "HEALTHY",
        "STAGED",
        "CPUS",
        "MEM",
        "VERSION",
        "DEPLOYING",
    )
    rows: list[Sequence[Any]] = [
        (
            a["id"],
            a["instances"],
            a["running"],
            a["healthy"],
            a["staged"],
            a["cpus"],
            a["mem"],
            a["version"],
            ",".join(a["deployments"]) or None,
        )
        for a in apps_json(apps)
    ]
    return header, rows


# --- tasks ----------------------------------------------------------------------------------------


def task_healthy(task: Mapping[str, Any]) -> Optional[bool]:
    """All health results alive; ``None`` when the task has no results."""
    results = [r for r in task.get("healthCheckResults") or [] if isinstance(r, Mapping)]
    if not results:
        return None
    return all(bool(r.get("alive")) for r in results)


def task_json(task: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "app_id": task.get("appId", ""),
        "id": task.get("id", ""),
        "host": task.get("host", ""),
        "ports": list(task.get("ports") or []),
        "ip_addresses": [
            a.get("ipAddress") for a in task.get("ipAddresses") or [] if isinstance(a, Mapping)
        ],
        "state": task.get("state", ""),
        "healthy": task_healthy(task),
        "started_at": task.get("startedAt"),
        "version": task.get("version", ""),
    }


def tasks_json(tasks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted((task_json(t) for t in tasks), key=lambda t: (str(t["app_id"]), str(t["id"])))


def tasks_rows(tasks: Iterable[Mapping[str, Any]]) -> Rows:
    header = ("APP", "TASK", "HOST", "PORTS", "STATE", "HEALTHY", "STARTED")
    rows: list[Sequence[Any]] = [
        (
            t["app_id"],
            t["id"],
            t["host"],
            ",".join(str(p) for p in t["ports"]) or None,
            t["state"],
            t["healthy"],
            t["started_at"],
        )
        for t in tasks_json(tasks)
    ]
    return header, rows


# --- services -------------------------------------------------------------------------------------


def service_json(service: Service) -> dict[str, Any]:
    return {
        "service_port": service.service_port,
        "app_id": service.app_id,
        "port_index": service.port_index,
        "port_name": service.port_name,
        "protocol": service.protocol,
        "network_mode": service.network_mode,
        "endpoints": [
            {
                "task_id": e.task_id,
                "address": e.address,
                "port": e.port,
                "host": e.host,
                "state": e.state,
                "healthy": e.healthy,
            }
            for e in service.endpoints
        ],
    }


def services_json(services: Iterable[Service]) -> list[dict[str, Any]]:
    """Each service (by the port clients use): Marathon's view plus HAProxy's (``listen_port``,
    ``haproxy_mode``, ``deployment_group``, ``colour``) and the other apps on its port."""
    found = listeners(services)
    clashing = clashes(found)
    out = []
    for item in found:
        data = service_json(item.service)
        others = [a for a in clashing.get(item.port, []) if a != item.service.app_id]
        data.update(
            listen_port=item.port,
            haproxy_mode=item.mode,
            deployment_group=item.group,
            colour=item.colour,
            port_clash=others,
        )
        out.append(data)
    return out


def services_rows(services: Iterable[Service]) -> Rows:
    """PORT is the port clients use (a deployment group's shared port for its members); HAPROXY
    the mode HAProxy serves it in; GROUP the deployment group (and colour) of members."""
    header = ("PORT", "APP", "NAME", "PROTOCOL", "HAPROXY", "GROUP", "ENDPOINTS")
    rows: list[Sequence[Any]] = [
        (
            x.port,
            x.service.app_id,
            x.service.port_name or None,
            x.service.protocol,
            x.mode,
            (f"{x.group}/{x.colour}" if x.colour else x.group) or None,
            " ".join(f"{e.address}:{e.port}" for e in x.service.endpoints) or None,
        )
        for x in listeners(services)
    ]
    return header, rows


def port_clash_warnings(services: Iterable[Service]) -> list[str]:
    """One line per port that more than one app claims."""
    return [
        f"warning: port {port} is claimed by {', '.join(apps)}: on every node only one of them "
        "gets it (the lowest app id); give the others their own service port"
        for port, apps in clashes(listeners(services)).items()
    ]
