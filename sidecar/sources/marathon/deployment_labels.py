"""The deployment-group labels of a Marathon app (pure): ``HAPROXY_DEPLOYMENT_*``.

Blue/green and canary deploys (``marathon_bridge.strategies``, ``docs/deploys.md``) run the new
version as a second Marathon app; both apps declare the same ``HAPROXY_DEPLOYMENT_GROUP`` and
bind the group's shared port with ``HAPROXY_{n}_PORT`` (the label names live in
:mod:`marathon_bridge.deployment_groups`). This module reads those labels into a
neutral :class:`~sidecar.catalog.DeploymentGroup`; the builder merges the members
(:mod:`sidecar.deployment_groups`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.deployment_groups import GROUP_LABEL, STARTED_AT_LABEL
from sidecar import grammar
from sidecar.catalog import DeploymentGroup, Problem

WEIGHT_LABEL = "HAPROXY_DEPLOYMENT_WEIGHT"  # the sidecar's alone: no deploy sets it

WEIGHT_MIN, WEIGHT_MAX = 0, grammar.SERVER_WEIGHT_MAX

_WEIGHT_RE = re.compile(r"[0-9]{1,3}")


def names_deployment_group(labels: Any) -> bool:
    """Whether ``labels`` hold a label :func:`membership` reads (a cheap test for every app)."""
    if not labels or not (type(labels) is dict or isinstance(labels, Mapping)):
        return False
    return GROUP_LABEL in labels or WEIGHT_LABEL in labels


def membership(app: Mapping[str, Any]) -> tuple[Optional[DeploymentGroup], list[Problem]]:
    """The app's deployment group, or ``None`` when it declares none (or a bad one)."""
    app_id = str(app.get("id") or "")
    raw = app.get("labels")
    labels: Mapping[Any, Any] = raw if isinstance(raw, Mapping) else {}
    problems: list[Problem] = []
    weight = _weight(app_id, labels.get(WEIGHT_LABEL), problems)
    group = labels.get(GROUP_LABEL)
    if group is None:
        if weight is not None:
            problems.append(Problem(app_id, WEIGHT_LABEL, f"needs {GROUP_LABEL}; ignored"))
        return None, problems
    if not isinstance(group, str) or not grammar.is_group_name(group.strip()):
        problems.append(
            Problem(app_id, GROUP_LABEL, "not a group name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
        )
        return None, problems
    started = labels.get(STARTED_AT_LABEL, "")
    if not isinstance(started, str) or (started and not grammar.is_started_at(started)):
        problems.append(Problem(app_id, STARTED_AT_LABEL, "not an ISO 8601 time; ignored"))
        started = ""
    return DeploymentGroup(group.strip(), started, weight), problems


def _weight(app_id: str, value: Any, problems: list[Problem]) -> Optional[int]:
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not _WEIGHT_RE.fullmatch(text) or not WEIGHT_MIN <= int(text) <= WEIGHT_MAX:
        problems.append(Problem(app_id, WEIGHT_LABEL, "not an integer 0..256; ignored"))
        return None
    return int(text)
