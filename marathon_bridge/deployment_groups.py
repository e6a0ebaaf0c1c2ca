"""Deployment groups as blue/green and canary deploys make them (pure): two Marathon apps,
``<base id>-blue`` and ``<base id>-green``, that share a service port through their labels.

The labels say which group an app belongs to, its colour, when it started, how many instances
the run aims at, and the shared port (``HAPROXY_0_PORT``); every marathon-sidecar merges the
members into one frontend and one backend (``sidecar/deployment_groups.py``). Everything here
reads or builds app definitions; :mod:`marathon_bridge.strategies` runs the deploys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Optional

from marathon_bridge.deploy import absolute_id, counts_met, request_body
from marathon_bridge.errors import MarathonBridgeError

GROUP_LABEL = "HAPROXY_DEPLOYMENT_GROUP"
ALT_PORT_LABEL = "HAPROXY_DEPLOYMENT_ALT_PORT"
COLOUR_LABEL = "HAPROXY_DEPLOYMENT_COLOUR"
STARTED_AT_LABEL = "HAPROXY_DEPLOYMENT_STARTED_AT"
TARGET_INSTANCES_LABEL = "HAPROXY_DEPLOYMENT_TARGET_INSTANCES"
SHARED_PORT_LABEL = "HAPROXY_0_PORT"
COLOURS = ("blue", "green")
DEFAULT_CANARY_STEPS = (5, 25, 50, 100)


class StrategyError(MarathonBridgeError):
    """A blue/green or canary deploy cannot start, or failed (and was rolled back)."""


def canary_plan(target: int, steps: Sequence[int]) -> list[tuple[int, int, int]]:
    """(share %, new instances, old instances) per step, the total staying ``target``.

    The new count is the smallest that gives *at least* the share: ``ceil(share * target / 100)``,
    and at least 1. Steps that give the same counts as the one before are dropped; the last step
    is always 100 % (all new, no old).
    """
    if target < 1:
        raise StrategyError("a canary needs at least 1 target instance")
    shares = sorted({int(s) for s in steps})
    if not shares or shares[0] < 1 or shares[-1] > 100:
        raise StrategyError("canary steps must be percentages 1..100")
    if shares[-1] != 100:
        shares.append(100)
    plan: list[tuple[int, int, int]] = []
    for share in shares:
        new = max(1, math.ceil(share * target / 100))
        if plan and plan[-1][1] == new:
            continue
        plan.append((share, new, target - new))
    return plan


def base_id(app_id: str) -> str:
    """The app id without a ``-blue``/``-green`` suffix."""
    app_id = absolute_id(app_id)
    for colour in COLOURS:
        if app_id.endswith("-" + colour):
            return app_id[: -len(colour) - 1]
    return app_id


def group_of(app: Mapping[str, Any]) -> str:
    """The app's deployment group: its label, or its base id with ``/`` turned into ``.``."""
    label = (app.get("labels") or {}).get(GROUP_LABEL)
    if isinstance(label, str) and label.strip():
        return label.strip()
    return base_id(str(app.get("id") or "")).strip("/").replace("/", ".")


def service_port(app: Mapping[str, Any]) -> int:
    """The first Marathon service port of an app definition (0 when it has none)."""
    for key in ("portDefinitions",):
        for entry in app.get(key) or []:
            return int(entry.get("port") or 0)
    container = app.get("container") or {}
    for entry in container.get("portMappings") or []:
        return int(entry.get("servicePort") or 0)
    for entry in (container.get("docker") or {}).get("portMappings") or []:
        return int(entry.get("servicePort") or 0)
    return 0


def shared_port(app: Mapping[str, Any]) -> int:
    """The port clients use: ``HAPROXY_0_PORT`` when set, else the app's first service port."""
    label = (app.get("labels") or {}).get(SHARED_PORT_LABEL)
    if isinstance(label, str) and label.strip().isdigit():
        return int(label.strip())
    return service_port(app)


def _with_service_port(app: dict[str, Any], port: int) -> None:
    if app.get("portDefinitions"):
        app["portDefinitions"] = [dict(p) for p in app["portDefinitions"]]
        app["portDefinitions"][0]["port"] = port
        return
    container = app.get("container") or {}
    mappings = container.get("portMappings")
    if mappings:
        container = dict(container)
        container["portMappings"] = [dict(m) for m in mappings]
        container["portMappings"][0]["servicePort"] = port
        app["container"] = container
        return
    raise StrategyError(f"{app.get('id')}: the app has no service port to share")


def colour_of(app: Mapping[str, Any]) -> str:
    colour = (app.get("labels") or {}).get(COLOUR_LABEL)
    if colour in COLOURS:
        return str(colour)
    app_id = str(app.get("id") or "")
    return next((c for c in COLOURS if app_id.endswith("-" + c)), "")


def label_int(app: Mapping[str, Any], key: str, default: int) -> int:
    value = (app.get("labels") or {}).get(key)
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isdigit() else default


def new_version_app(
    app: Mapping[str, Any],
    *,
    old: Optional[Mapping[str, Any]],
    instances: int,
    started_at: str,
) -> dict[str, Any]:
    """The definition of the new colour: derived id, group labels, its own service port.

    The group's shared port is the original service port of the user's definition (or its
    ``HAPROXY_0_PORT``); the new app binds it through ``HAPROXY_0_PORT``. Its own Marathon service
    port is whichever of (shared, ``HAPROXY_DEPLOYMENT_ALT_PORT``) the old app does not use.
    """
    body = request_body(app)
    labels = dict(body.get("labels") or {})
    shared = shared_port(app)
    alt = label_int(app, ALT_PORT_LABEL, 0)
    if not shared:
        raise StrategyError(f"{app.get('id')}: the app needs a fixed service port (not 0)")
    if not alt or alt == shared:
        raise StrategyError(
            f"{app.get('id')}: set label {ALT_PORT_LABEL} to a second free service port"
        )
    old_colour = colour_of(old) if old is not None else ""
    colour = COLOURS[1] if old_colour == COLOURS[0] else COLOURS[0]
    own_port = shared
    if old is not None and service_port(old) == shared:
        own_port = alt
    labels.update(
        {
            GROUP_LABEL: group_of(app),
            ALT_PORT_LABEL: str(alt),
            COLOUR_LABEL: colour,
            STARTED_AT_LABEL: started_at,
            TARGET_INSTANCES_LABEL: str(int(app.get("instances", 1))),
            SHARED_PORT_LABEL: str(shared),
        }
    )
    body["labels"] = labels
    body["id"] = f"{base_id(str(app['id']))}-{colour}"
    body["instances"] = instances
    _with_service_port(body, own_port)
    return body


def as_member(app: Mapping[str, Any], member: Mapping[str, Any]) -> dict[str, Any]:
    """The file's ``app`` as a blue/green or canary run would have deployed it in ``member``'s
    place: the member's id, colour, start time and own service port; the file's everything else
    (so comparing the result with ``member`` shows what a new run would change)."""
    body = request_body(app)
    labels = dict(body.get("labels") or {})
    member_labels = member.get("labels") or {}
    for key in (GROUP_LABEL, COLOUR_LABEL, STARTED_AT_LABEL):
        if key in member_labels:
            labels[key] = member_labels[key]
    labels[TARGET_INSTANCES_LABEL] = str(int(app.get("instances", 1)))
    if shared_port(app):
        labels[SHARED_PORT_LABEL] = str(shared_port(app))
    body["labels"] = labels
    body["id"] = member["id"]
    own = service_port(member)
    if own and service_port(body):
        _with_service_port(body, own)
    return body


def what_to_run(group: str, path: str, members: Sequence[Mapping[str, Any]]) -> str:
    """The command that moves a deployment group on: a new run, or finishing an unfinished one."""
    if len(members) > 1:
        return (
            f"group {group} has an unfinished run ({', '.join(str(m['id']) for m in members)}): "
            f"finish it with `marathon-bridge strategy resume {group}` or undo it with "
            f"`marathon-bridge strategy abort {group}`"
        )
    return (
        f"deploy it with `marathon-bridge deploy --strategy blue-green {path}` "
        f"(or `--strategy canary`)"
    )


def unfinished_run(group: str, members: Sequence[Mapping[str, Any]]) -> str:
    """The message for a group that still has two apps, naming the commands that settle it."""
    return what_to_run(group, "", members)


def order_members(apps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Group members, oldest first (by started-at label, then id)."""
    return [
        dict(a)
        for a in sorted(
            apps,
            key=lambda a: (str((a.get("labels") or {}).get(STARTED_AT_LABEL, "")), str(a["id"])),
        )
    ]


def is_healthy(app: Mapping[str, Any]) -> bool:
    """Every wanted instance runs (and is healthy, for a health-checked app)."""
    return counts_met(app)


def start_guard(old: Mapping[str, Any], target: int, min_healthy: int) -> Optional[str]:
    """Why a run must not start, or ``None``."""
    if old.get("deployments"):
        return f"{old['id']} is in a deployment; wait for it or cancel it first"
    if not is_healthy(old):
        return f"{old['id']} is not healthy (every instance must run and pass its checks)"
    if target < min_healthy:
        return f"target instances {target} is below the minimum healthy {min_healthy}"
    return None


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
