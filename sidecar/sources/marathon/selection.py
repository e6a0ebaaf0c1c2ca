"""Which tasks of an app take traffic (pure).

Rules (docs/health.md states them for users):

1. Only running tasks: ``TASK_RUNNING``; a task from an old Marathon without ``state`` counts as
   running when it has ``startedAt``.
2. ``TASK_KILLING`` and ``TASK_UNREACHABLE`` leave the rotation but are *drained*, not cut
   (``draining=True``): established connections may finish.
3. Apps with Marathon health checks: a task is in when every result it carries is alive. Any result
   not alive puts it out. A task with no result yet is out until its first result -- unless it was
   in rotation before (``previously_in``): after a Marathon leader election every result is blank
   for a while, and that must not empty a backend (traefik #653, marathon #3419).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from marathon_bridge.services import is_running

DRAINING_STATES = ("TASK_KILLING", "TASK_UNREACHABLE")

IN_RUNNING = "running"
IN_HEALTHY = "running and healthy"
IN_KEPT_BLANK = "no health result (e.g. after a leader election); kept: was in rotation before"
OUT_NOT_RUNNING = "not running"
OUT_DRAINING = "leaving (killing or unreachable): drained"
OUT_NO_RESULT = "no health result yet"
OUT_UNHEALTHY = "health check failing"
OUT_BAD_TASK = "task has no usable id"


@dataclass(frozen=True)
class TaskVerdict:
    """Whether one task takes new traffic, and why. ``draining``: out, but let connections end."""

    task_id: str
    in_rotation: bool
    draining: bool
    reason: str


def has_health_checks(app: Mapping[str, Any]) -> bool:
    checks = app.get("healthChecks")
    return isinstance(checks, list) and len(checks) > 0


def select_tasks(
    app: Mapping[str, Any], tasks: Iterable[Any], previously_in: frozenset[str]
) -> list[TaskVerdict]:
    """One verdict per task (sorted by task id); tasks without a string id are left out."""
    return [TaskVerdict(*fields) for fields in classify_tasks(app, tasks, previously_in)]


def classify_tasks(
    app: Mapping[str, Any], tasks: Iterable[Any], previously_in: frozenset[str]
) -> list[tuple[str, bool, bool, str]]:
    """:func:`select_tasks` as plain tuples ``(task_id, in_rotation, draining, reason)``.

    The same rules without an object per task: ``build_model`` calls this for every task.
    """
    checked = has_health_checks(app)
    out = []
    for task in tasks:
        if type(task) is not dict and not isinstance(task, Mapping):
            continue
        task_id = task.get("id")
        if not task_id or not isinstance(task_id, str):
            continue
        if not checked and task.get("state") == "TASK_RUNNING":
            out.append((task_id, True, False, IN_RUNNING))  # the usual case of _classify()
        else:
            out.append(_classify(app, task, task_id, checked, previously_in))
    out.sort()
    return out


def _classify(
    app: Mapping[str, Any],
    task: Mapping[str, Any],
    task_id: str,
    checked: bool,
    previously_in: frozenset[str],
) -> tuple[str, bool, bool, str]:
    state = task.get("state")
    if state == "TASK_RUNNING":
        pass
    elif state in DRAINING_STATES:
        return (task_id, False, True, OUT_DRAINING)
    elif not is_running(app, task):
        return (task_id, False, False, OUT_NOT_RUNNING)
    if not checked:
        return (task_id, True, False, IN_RUNNING)
    raw = task.get("healthCheckResults")
    results = [r for r in raw if isinstance(r, Mapping)] if isinstance(raw, list) else []
    if not results:
        if task_id in previously_in:
            return (task_id, True, False, IN_KEPT_BLANK)
        return (task_id, False, False, OUT_NO_RESULT)
    if all(r.get("alive") is True for r in results):
        return (task_id, True, False, IN_HEALTHY)
    return (task_id, False, False, OUT_UNHEALTHY)
