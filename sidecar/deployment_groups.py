"""Deployment groups: two Marathon apps, one frontend and one backend (pure).

Blue/green and canary deploys (``marathon_bridge.strategies``, ``docs/deploys.md``) run the new
version as a second Marathon app. Marathon needs a unique service port per app, so each app of a
group has its own Marathon service port, and both declare the group's *shared* port -- the one
clients use -- as their bind port with ``HAPROXY_{n}_PORT`` (as marathon-lb's zdd.py does).
Every (app, port) that declares the same ``HAPROXY_DEPLOYMENT_GROUP`` and binds the same port is
merged here: one frontend on the shared port, one backend named after the group, holding the
servers of every member app. Traffic therefore splits by instance counts (every server has
weight 1), or by ``HAPROXY_DEPLOYMENT_WEIGHT`` (0..256), which sets the weight of every server of
that app -- a server change the sidecar makes through the runtime API, without a reload.

The member with the oldest ``HAPROXY_DEPLOYMENT_STARTED_AT`` (then the lowest app id) is the
*primary*: its port options (mode, balance, checks) are the backend's. The backend name depends on
the group and the port only, so it does not change when members come and go.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Protocol, TypeVar

from sidecar.labels import LabelProblem

GROUP_LABEL = "HAPROXY_DEPLOYMENT_GROUP"
ALT_PORT_LABEL = "HAPROXY_DEPLOYMENT_ALT_PORT"
COLOUR_LABEL = "HAPROXY_DEPLOYMENT_COLOUR"
STARTED_AT_LABEL = "HAPROXY_DEPLOYMENT_STARTED_AT"
TARGET_INSTANCES_LABEL = "HAPROXY_DEPLOYMENT_TARGET_INSTANCES"
WEIGHT_LABEL = "HAPROXY_DEPLOYMENT_WEIGHT"

WEIGHT_MIN, WEIGHT_MAX = 0, 256  # HAProxy's server weight range

_GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_WEIGHT_RE = re.compile(r"[0-9]{1,3}")
_STARTED_AT_RE = re.compile(r"[0-9T:.+Z-]{1,40}")

ClaimKey = tuple[str, int]  # (app id, port index)


@dataclass(frozen=True)
class Membership:
    """What one app declares about its deployment group."""

    group: str
    started_at: str = ""
    weight: Optional[int] = None  # None: every server keeps weight 1


@dataclass(frozen=True)
class MergePlan:
    """How build_model merges group members.

    ``joined`` maps a member (app id, port index) to the primary it joins; ``backend_names`` gives
    each primary its group backend name; ``weights`` is the server weight per member app id.
    """

    joined: Mapping[ClaimKey, ClaimKey] = field(default_factory=dict)
    backend_names: Mapping[ClaimKey, str] = field(default_factory=dict)
    weights: Mapping[str, int] = field(default_factory=dict)
    problems: tuple[LabelProblem, ...] = ()

    def members_of(self, primary: ClaimKey) -> list[ClaimKey]:
        """The (app id, port index) pairs that joined ``primary``, sorted."""
        return sorted(key for key, target in self.joined.items() if target == primary)


def membership(app: Mapping[str, Any]) -> tuple[Optional[Membership], list[LabelProblem]]:
    """The app's deployment group, or ``None`` when it declares none (or a bad one)."""
    app_id = str(app.get("id") or "")
    raw = app.get("labels")
    labels: Mapping[Any, Any] = raw if isinstance(raw, Mapping) else {}
    problems: list[LabelProblem] = []
    weight = _weight(app_id, labels.get(WEIGHT_LABEL), problems)
    group = labels.get(GROUP_LABEL)
    if group is None:
        if weight is not None:
            problems.append(LabelProblem(app_id, WEIGHT_LABEL, f"needs {GROUP_LABEL}; ignored"))
        return None, problems
    if not isinstance(group, str) or not _GROUP_RE.fullmatch(group.strip()):
        problems.append(
            LabelProblem(app_id, GROUP_LABEL, "not a group name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
        )
        return None, problems
    started = labels.get(STARTED_AT_LABEL, "")
    if not isinstance(started, str) or (started and not _STARTED_AT_RE.fullmatch(started)):
        problems.append(LabelProblem(app_id, STARTED_AT_LABEL, "not an ISO 8601 time; ignored"))
        started = ""
    return Membership(group.strip(), started, weight), problems


def _weight(app_id: str, value: Any, problems: list[LabelProblem]) -> Optional[int]:
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not _WEIGHT_RE.fullmatch(text) or not WEIGHT_MIN <= int(text) <= WEIGHT_MAX:
        problems.append(LabelProblem(app_id, WEIGHT_LABEL, "not an integer 0..256; ignored"))
        return None
    return int(text)


def group_backend_name(group: str, bind_port: int) -> str:
    """The backend of a group on one port (group names are already HAProxy-safe)."""
    return f"be_dg_{group}_{bind_port}"


def plan_merges(
    claims: Iterable[tuple[str, int, int]], apps: Mapping[str, Mapping[str, Any]]
) -> MergePlan:
    """Group the (app id, port index, bind port) claims of group members by (group, bind port).

    Apps without a (valid) group are not in the plan: build_model treats them as before.
    """
    members: dict[str, Optional[Membership]] = {}
    problems: list[LabelProblem] = []
    by_key: dict[tuple[str, int], list[tuple[str, str, int]]] = {}
    for app_id, index, bind_port in claims:
        if app_id not in members:
            app = apps.get(app_id) or {}
            labels = app.get("labels")
            if not labels or (GROUP_LABEL not in labels and WEIGHT_LABEL not in labels):
                members[app_id] = None  # the common case, kept cheap: build_model runs often
                continue
            found, found_problems = membership(app)
            members[app_id] = found
            problems.extend(found_problems)
        member = members[app_id]
        if member is not None:
            by_key.setdefault((member.group, bind_port), []).append(
                (member.started_at, app_id, index)
            )
    joined: dict[ClaimKey, ClaimKey] = {}
    names: dict[ClaimKey, str] = {}
    for (group, bind_port), entries in sorted(by_key.items()):
        ordered = sorted(entries)
        primary = (ordered[0][1], ordered[0][2])
        names[primary] = group_backend_name(group, bind_port)
        for _started, app_id, index in ordered[1:]:
            joined[(app_id, index)] = primary
    weights = {
        app_id: m.weight for app_id, m in sorted(members.items()) if m and m.weight is not None
    }
    return MergePlan(joined, names, weights, tuple(problems))


class _Weighted(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def weight(self) -> int: ...


ServerT = TypeVar("ServerT", bound=_Weighted)


def merge_servers(
    parts: Sequence[tuple[str, Sequence[ServerT]]], weights: Mapping[str, int]
) -> tuple[ServerT, ...]:
    """The servers of every member app in one backend, sorted by name.

    ``parts`` is (app id, that app's servers); an app with a weight in ``weights`` gets it on every
    server. Names are task ids, unique across apps; a duplicate keeps the first.
    """
    out: dict[str, ServerT] = {}
    for app_id, servers in parts:
        weight = weights.get(app_id)
        for server in servers:
            if server.name in out:
                continue
            if weight is not None and server.weight != weight:
                server = replace(server, weight=weight)  # type: ignore[type-var]
            out[server.name] = server
    return tuple(out[name] for name in sorted(out))
