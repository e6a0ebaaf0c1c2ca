"""How a deployment stands, read from Marathon's answers (pure): its step, the new version's
running and healthy tasks, the last task failure of the new version and Marathon's launch delay,
and whether it ended as expected.

Only tasks of the new configuration count (Marathon's own counts include the old version's
tasks, which keep running during a rolling deployment): a task belongs to it when its
``version`` is not older than the app's ``versionInfo.lastConfigChangeAt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

DEPLOYING = "deploying"
ROLLING_BACK = "rolling back"
DONE = "done"

EXPECT_RUNNING = "running"
EXPECT_GONE = "gone"
EXPECT_ANY = "any"


@dataclass(frozen=True)
class DeployProgress:
    """Where one app's deployment stands (what the progress callback receives)."""

    app_id: str
    deployment_id: str
    phase: str
    step: int = 0
    total_steps: int = 0
    actions: tuple[str, ...] = ()
    running: int = 0  # tasks of the new version only
    healthy: int = 0
    wanted: int = 0
    health_checked: bool = False
    failure: str = ""  # the new version's last task failure: state, host and Marathon's message
    launch_delay: Optional[int] = None  # seconds Marathon waits before it launches again

    def __str__(self) -> str:
        parts = [f"{self.app_id}: {self.phase}"]
        if self.total_steps:
            actions = f" ({', '.join(self.actions)})" if self.actions else ""
            parts.append(f"step {self.step}/{self.total_steps}{actions}")
        parts.append(tasks_text(self))
        text = ", ".join(parts)
        return text + why_text(self)


@dataclass(frozen=True)
class WaitTarget:
    """One deployment to follow, and what the app should look like once it is over."""

    deployment_id: str
    app_id: str
    expect: str = EXPECT_RUNNING  # running | gone | any
    phase: str = DEPLOYING


ProgressCallback = Callable[[DeployProgress], None]


def absolute_id(app_id: str) -> str:
    """Marathon's canonical form of an app id: absolute, no trailing slash."""
    parts = [p for p in str(app_id).split("/") if p]
    return "/" + "/".join(parts)


def find_deployment(deployments: Sequence[Mapping[str, Any]], deployment_id: str) -> Optional[dict]:
    """The deployment with this id in a ``GET /v2/deployments`` list, or ``None``."""
    for deployment in deployments:
        if isinstance(deployment, Mapping) and deployment.get("id") == deployment_id:
            return dict(deployment)
    return None


def has_health_checks(app: Mapping[str, Any]) -> bool:
    return bool(app.get("healthChecks"))


def counts_met(app: Mapping[str, Any]) -> bool:
    """Whether every wanted instance runs (and is healthy, for a health-checked app)."""
    wanted = _int(app.get("instances"), 1)
    if _int(app.get("tasksRunning")) < wanted:
        return False
    return not has_health_checks(app) or _int(app.get("tasksHealthy")) >= wanted


def compute_progress(
    target: WaitTarget,
    deployment: Optional[Mapping[str, Any]],
    app: Optional[Mapping[str, Any]],
    launch_delay: Optional[int] = None,
) -> DeployProgress:
    """Progress of one deployment from its ``/v2/deployments`` entry (None: gone), the app (with
    its tasks) and, when known, Marathon's launch delay for it (``GET /v2/queue``)."""
    app = app or {}
    running, healthy = new_version_counts(app)
    if deployment is None:
        step = total = 0
        actions: tuple[str, ...] = ()
        phase = DONE
    else:
        total = _int(deployment.get("totalSteps"), len(deployment.get("steps") or []))
        step = _int(deployment.get("currentStep"))
        actions = tuple(
            str(a.get("action", ""))
            for a in deployment.get("currentActions") or []
            if isinstance(a, Mapping) and a.get("app", target.app_id) == target.app_id
        )
        phase = target.phase
    return DeployProgress(
        app_id=target.app_id,
        deployment_id=target.deployment_id,
        phase=phase,
        step=step,
        total_steps=total,
        actions=actions,
        running=running,
        healthy=healthy,
        wanted=_int(app.get("instances"), 0) if app else 0,
        health_checked=has_health_checks(app),
        failure=new_version_failure(app),
        launch_delay=launch_delay,
    )


def _config_version(app: Mapping[str, Any]) -> str:
    info = app.get("versionInfo")
    return str((info or {}).get("lastConfigChangeAt") or "") if isinstance(info, Mapping) else ""


def new_version_counts(app: Mapping[str, Any]) -> tuple[int, int]:
    """(running, healthy) tasks of the app's current configuration. Without a task list (an
    answer without ``tasks``), Marathon's own counts."""
    tasks = app.get("tasks")
    if not isinstance(tasks, list):
        return _int(app.get("tasksRunning")), _int(app.get("tasksHealthy"))
    since = _config_version(app)
    current = [
        t
        for t in tasks
        if isinstance(t, Mapping)
        and t.get("state", "TASK_RUNNING") == "TASK_RUNNING"
        and str(t.get("version") or "") >= since
    ]
    healthy = [t for t in current if _all_alive(t.get("healthCheckResults"))]
    return len(current), len(healthy)


def _all_alive(results: Any) -> bool:
    return (
        isinstance(results, list)
        and bool(results)
        and all(isinstance(r, Mapping) and r.get("alive") is True for r in results)
    )


def new_version_failure(app: Mapping[str, Any]) -> str:
    """``TASK_FAILED on host: message`` from the app's ``lastTaskFailure`` when a task of the
    current configuration failed ("" otherwise)."""
    failure = app.get("lastTaskFailure")
    if not isinstance(failure, Mapping):
        return ""
    if str(failure.get("version") or "") < _config_version(app):
        return ""  # an older version's failure
    state = str(failure.get("state") or "failed")
    host = f" on {failure['host']}" if failure.get("host") else ""
    message = str(failure.get("message") or "").strip() or "no message"
    return f"{state}{host}: {message}"


def launch_delay(queue: Sequence[Mapping[str, Any]], app_id: str) -> Optional[int]:
    """Seconds Marathon still waits before launching the app's tasks again (its backoff after
    failures), from ``GET /v2/queue``; None when the app is not waiting in the queue."""
    for entry in queue:
        app = entry.get("app") if isinstance(entry, Mapping) else None
        if isinstance(app, Mapping) and app.get("id") == app_id:
            delay = entry.get("delay")
            if isinstance(delay, Mapping):
                return _int(delay.get("timeLeftSeconds"))
    return None


def why_text(progress: DeployProgress) -> str:
    """``; last task failure: ...; Marathon delays the next launch by N s`` (or "")."""
    text = ""
    if progress.failure:
        text += f"; last task failure: {progress.failure}"
    if progress.failure and progress.launch_delay:
        text += f"; Marathon delays the next launch by {progress.launch_delay} s (backoff)"
    return text


def outcome_problem(target: WaitTarget, app: Optional[Mapping[str, Any]]) -> str:
    """Why a finished deployment did not leave the app as expected ("" when it did)."""
    if target.expect == EXPECT_ANY:
        return ""
    if target.expect == EXPECT_GONE:
        return "" if app is None else f"app {target.app_id} still exists"
    if app is None:
        return f"app {target.app_id} no longer exists"
    if not counts_met(app):
        progress = compute_progress(target, None, app)
        return (
            f"deployment {target.deployment_id} of {target.app_id} ended but the app has "
            f"{tasks_text(progress)}: it was cancelled or superseded"
        )
    return ""


def tasks_text(progress: DeployProgress) -> str:
    text = f"{progress.running}/{progress.wanted} running"
    if progress.health_checked:
        text += f", {progress.healthy}/{progress.wanted} healthy"
    return text


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value)
