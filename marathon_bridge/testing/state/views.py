"""How the emulated cluster's records look on the wire (pure): tasks, health, counts, deployments.

Every function takes the records and the moment's facts (is health visible, the role, now) and
returns Marathon 1.10's JSON; nothing here reads a clock or takes a lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

from marathon_bridge.testing.state.records import (
    KILLING,
    RUNNING,
    STAGING,
    UNREACHABLE,
    Deployment,
    Json,
    Task,
)
from marathon_bridge.testing.wire import timestamp

COUNT_KEYS = ("tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy")


def ip_addresses(task: Task) -> list[Json]:
    return [{"ipAddress": task.agent.ip, "protocol": "IPv4"}]


def has_address(state: str) -> bool:
    """Marathon shows a task's IP addresses once it runs (and while it is killed or away)."""
    return state in (RUNNING, KILLING, UNREACHABLE)


def health_json(task: Task, visible: bool) -> list[Json]:
    """``healthCheckResults``: the checks that have a result ([] while health is blank)."""
    if not visible:
        return []
    return [h.to_json(task.instance_id) for h in task.health if h.last_success or h.last_failure]


def task_json(
    task: Task, *, role: str, health_visible: bool, service_ports: Optional[list[int]] = None
) -> Json:
    """Marathon 1.10 task JSON (``servicePorts`` [] unless given)."""
    out: Json = {
        "appId": task.app_id,
        "healthCheckResults": health_json(task, health_visible),
        "host": task.agent.host,
        "id": task.id,
        "ipAddresses": ip_addresses(task) if has_address(task.state) else [],
        "ports": list(task.ports),
        "servicePorts": list(service_ports or []),
        "slaveId": task.agent.slave_id,
        "state": task.state,
        "stagedAt": timestamp(task.staged_at),
    }
    if task.started_at is not None:
        out["startedAt"] = timestamp(task.started_at)
    out["version"] = task.version
    out["localVolumes"] = []
    out["role"] = role
    return out


def is_healthy(task: Task, visible: bool) -> Optional[bool]:
    """True/False when every check has a result; None without checks or results."""
    if not task.checks or not visible:
        return None
    results = [h for h in task.health if h.last_success or h.last_failure]
    if not results:
        return None
    if len(results) < len(task.checks):
        return False if any(not h.alive for h in results) else None
    return all(h.alive for h in results)


def counts(tasks: Iterable[Task], visible: bool) -> Json:
    """``tasksStaged``, ``tasksRunning``, ``tasksHealthy``, ``tasksUnhealthy``."""
    staged = running = healthy = unhealthy = 0
    for task in tasks:
        if task.state == STAGING:
            staged += 1
        elif task.state == RUNNING:
            running += 1
            verdict = is_healthy(task, visible)
            if verdict is True:
                healthy += 1
            elif verdict is False:
                unhealthy += 1
    return dict(zip(COUNT_KEYS, (staged, running, healthy, unhealthy)))


def task_stats(tasks: Sequence[Task], now: float, visible: bool) -> Json:
    """``tasksStats`` (embed ``taskStats``): the total summary's counts and task lifetimes."""
    if not tasks:
        return {}
    total = counts(tasks, visible)
    stats: Json = {
        "counts": {
            "staged": total["tasksStaged"],
            "running": total["tasksRunning"],
            "healthy": total["tasksHealthy"],
            "unhealthy": total["tasksUnhealthy"],
        }
    }
    lifetimes = sorted(now - t.started_mono for t in tasks if t.started_mono is not None)
    if lifetimes:
        mid = len(lifetimes) // 2
        median = lifetimes[mid] if len(lifetimes) % 2 else (lifetimes[mid - 1] + lifetimes[mid]) / 2
        stats["lifeTime"] = {
            "averageSeconds": sum(lifetimes) / len(lifetimes),
            "medianSeconds": median,
        }
    return {"totalSummary": {"stats": stats}}


def deployment_json(dep: Deployment) -> Json:
    """One entry of ``GET /v2/deployments``."""
    step = dep.steps[dep.current_step - 1] if dep.steps else []
    return {
        "id": dep.id,
        "steps": [{"actions": list(s)} for s in dep.steps],
        "version": dep.version,
        "affectedApps": dep.affected_apps,
        "affectedPods": [],
        "currentActions": [dict(a, readinessCheckResults=[]) for a in step],
        "currentStep": dep.current_step if dep.steps else 0,
        "totalSteps": len(dep.steps),
    }


def plan_event(event_type: str, dep: Deployment, reason: Optional[str] = None) -> Json:
    """The payload of a deployment event (``deployment_info``, ``_success``, ``_failed`` ...)."""
    if event_type in ("deployment_info", "deployment_step_success"):
        step = dep.steps[dep.current_step - 1] if dep.steps else []
        payload: Json = {"plan": dep.plan_json(), "currentStep": {"actions": list(step)}}
    else:
        payload = {"id": dep.id, "plan": dep.plan_json()}
    payload["eventType"] = event_type
    payload["timestamp"] = timestamp()
    if reason is not None:
        payload["reason"] = reason
    return payload
