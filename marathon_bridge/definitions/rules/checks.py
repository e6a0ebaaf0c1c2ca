"""Rules on health and readiness checks, constraints, scheduling and environment secrets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.definitions.rules.base import (
    Collector,
    as_dict,
    as_int,
    as_list,
    container_type,
    dicts,
    present,
)
from marathon_bridge.definitions.rules.networking import port_count, port_names

CONSTRAINT_OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
MARATHON_HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP")
MESOS_HEALTH_PROTOCOLS = ("COMMAND", "MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
HTTP_HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "MESOS_HTTP", "MESOS_HTTPS")
IPV6_HEALTH_PROTOCOLS = ("MESOS_HTTP", "MESOS_HTTPS", "MESOS_TCP")
INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")

MSG_HEALTH_PORT_INDEX = (
    "Health check port indices must address an element of the ports array "
    "or container port mappings."
)
MSG_ONE_MESOS_CHECK = "AppDefinition can contain at most one Mesos health check"
MSG_BAD_OPERATOR = (
    "Constraint operator must be one of the following "
    "UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS"
)


def check_health_checks(view: Mapping[str, Any], out: Collector) -> None:
    checks = dicts(view.get("healthChecks"))
    ports = port_count(view)
    mesos_checks = 0
    for index, hc in checks:
        here = f"/healthChecks({index})"
        protocol = hc.get("protocol")
        has_command = present(hc, "command")
        if protocol in MESOS_HEALTH_PROTOCOLS and not has_command:
            mesos_checks += 1
        if protocol in MARATHON_HEALTH_PROTOCOLS and not has_command:
            port_index = as_int(hc.get("portIndex"))
            if port_index is not None and not 0 <= port_index < ports:
                allowed = f"portIndex 0..{ports - 1}" if ports else "the app has no ports"
                out.add(here, MSG_HEALTH_PORT_INDEX, hint=f"{allowed}, got {port_index}")
        if protocol == "COMMAND" and not has_command:
            out.add(f"{here}/command", "command is required for COMMAND health checks")
        non_http = protocol in MARATHON_HEALTH_PROTOCOLS + MESOS_HEALTH_PROTOCOLS
        if present(hc, "path") and non_http and protocol not in HTTP_HEALTH_PROTOCOLS:
            out.add(
                f"{here}/path",
                "path is only allowed with HTTP, HTTPS, MESOS_HTTP and MESOS_HTTPS health checks",
            )
        ipv6_ok = container_type(view) == "DOCKER" and protocol in IPV6_HEALTH_PROTOCOLS
        if hc.get("ipProtocol") == "IPv6" and not ipv6_ok:
            out.add(
                f"{here}/ipProtocol",
                "IPv6 can only be used for container type DOCKER "
                "and Mesos http/https/tcp health checks",
            )
        timeout = as_int(hc.get("timeoutSeconds"))
        if timeout is not None and timeout < 0:
            out.add(f"{here}/timeoutSeconds", f"got {timeout}, expected 0 or more")
    if mesos_checks > 1:
        out.add("/", MSG_ONE_MESOS_CHECK)


def check_readiness_checks(view: Mapping[str, Any], out: Collector) -> None:
    checks = as_list(view.get("readinessChecks"))
    if len(checks) > 1:
        out.add("/readinessChecks", f"got {len(checks)}, expected 1 or less")
    names = port_names(view)
    for index, rc in dicts(checks):
        here = f"/readinessChecks({index})"
        name = rc.get("portName")
        if isinstance(name, str) and name not in names:
            out.add(
                f"{here}/portName",
                f"No port definition reference for portName {name}",
                hint="port names: " + (", ".join(names) or "none"),
            )
        timeout, interval = as_int(rc.get("timeoutSeconds")), as_int(rc.get("intervalSeconds"))
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


def check_constraints(view: Mapping[str, Any], out: Collector) -> None:
    for index, constraint in enumerate(as_list(view.get("constraints"))):
        if isinstance(constraint, list):
            problem = constraint_problem(constraint)
            if problem:
                out.add(f"/constraints({index})", problem)


# --------------------------------------------------------------------------- scheduling


def check_scheduling(view: Mapping[str, Any], out: Collector) -> None:
    labels = as_dict(view.get("labels")) or {}
    instances = as_int(view.get("instances"))
    if (
        labels.get("MARATHON_SINGLE_INSTANCE_APP") == "true"
        and instances is not None
        and instances > 1
    ):
        out.add("/", "Single instance app may only have one instance")
    unreachable = view.get("unreachableStrategy")
    if isinstance(unreachable, Mapping):
        inactive, expunge = (
            as_int(unreachable.get("inactiveAfterSeconds", 0)),
            as_int(unreachable.get("expungeAfterSeconds", 0)),
        )
        if inactive is not None and expunge is not None and inactive > expunge:
            out.add(
                "/unreachableStrategy/inactiveAfterSeconds",
                f"got {inactive}, expected {expunge} or less",
            )
    resident = present(view, "residency")
    container = as_dict(view.get("container")) or {}
    persistent = any("persistent" in v for _, v in dicts(container.get("volumes")))
    if resident != persistent:
        out.add("/", "App must contain persistent volumes and define residency")
    if resident and unreachable is not None and unreachable != "disabled":
        out.add("/", "unreachableStrategy must be disabled for resident tasks")


def check_env(view: Mapping[str, Any], out: Collector) -> None:
    env = as_dict(view.get("env")) or {}
    secrets = as_dict(view.get("secrets")) or {}
    for name, value in env.items():
        ref = as_dict(value)
        if ref is not None and isinstance(ref.get("secret"), str) and ref["secret"] not in secrets:
            out.add(
                f"/env/{name}/secret",
                "references an undefined secret",
                hint="secrets: " + (", ".join(secrets) or "none"),
            )
