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
    checked = has_health_checks(app)
    verdicts = [
        _verdict(app, task, checked, previously_in)
        for task in tasks
        if isinstance(task, Mapping) and isinstance(task.get("id"), str) and task["id"]
    ]
    return sorted(verdicts, key=lambda v: v.task_id)


def _verdict(
    app: Mapping[str, Any], task: Mapping[str, Any], checked: bool, previously_in: frozenset[str]
) -> TaskVerdict:
    task_id: str = task["id"]
    state = task.get("state")
    if state in DRAINING_STATES:
        return TaskVerdict(task_id, False, True, OUT_DRAINING)
    if not is_running(app, task):
        return TaskVerdict(task_id, False, False, OUT_NOT_RUNNING)
    if not checked:
        return TaskVerdict(task_id, True, False, IN_RUNNING)
    raw = task.get("healthCheckResults")
    results = [r for r in raw if isinstance(r, Mapping)] if isinstance(raw, list) else []
    if not results:
        if task_id in previously_in:
            return TaskVerdict(task_id, True, False, IN_KEPT_BLANK)
        return TaskVerdict(task_id, False, False, OUT_NO_RESULT)
    if all(r.get("alive") is True for r in results):
        return TaskVerdict(task_id, True, False, IN_HEALTHY)
    return TaskVerdict(task_id, False, False, OUT_UNHEALTHY)
