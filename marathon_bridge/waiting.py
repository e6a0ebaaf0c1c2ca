"""Waiting for deployments: poll ``/v2/deployments`` and the apps, report progress, and say how
a deployment ended (done, cancelled or superseded, timed out).

Marathon drops a deployment both when it succeeds and when it is cancelled (by a forced
deployment, a rollback or a delete), so the app is checked at the end as well: running (and
healthy, for health-checked apps) instances must reach ``instances``. Progress (steps, running /
healthy / wanted) goes to a callback, only when it changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Protocol

from marathon_bridge.errors import DeploymentError, DeploymentTimeout, NotFound, Unavailable

log = logging.getLogger(__name__)

DEPLOYING = "deploying"
ROLLING_BACK = "rolling back"
DONE = "done"

EXPECT_RUNNING = "running"
EXPECT_GONE = "gone"
EXPECT_ANY = "any"


class WaitClient(Protocol):
    """The part of :class:`marathon_bridge.client.MarathonClient` waiting uses."""

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> dict: ...

    def list_deployments(self) -> list[dict]: ...


@dataclass(frozen=True)
class DeployProgress:
    """Where one app's deployment stands (what the progress callback receives)."""

    app_id: str
    deployment_id: str
    phase: str
    step: int = 0
    total_steps: int = 0
    actions: tuple[str, ...] = ()
    running: int = 0
    healthy: int = 0
    wanted: int = 0
    health_checked: bool = False

    def __str__(self) -> str:
        parts = [f"{self.app_id}: {self.phase}"]
        if self.total_steps:
            actions = f" ({', '.join(self.actions)})" if self.actions else ""
            parts.append(f"step {self.step}/{self.total_steps}{actions}")
        tasks = f"{self.running}/{self.wanted} running"
        if self.health_checked:
            tasks += f", {self.healthy}/{self.wanted} healthy"
        parts.append(tasks)
        return ", ".join(parts)


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
) -> DeployProgress:
    """Progress of one deployment from its ``/v2/deployments`` entry (None: gone) and the app."""
    app = app or {}
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
        running=_int(app.get("tasksRunning")),
        healthy=_int(app.get("tasksHealthy")),
        wanted=_int(app.get("instances"), 0) if app else 0,
        health_checked=has_health_checks(app),
    )


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
            f"{_tasks_text(progress)}: it was cancelled or superseded"
        )
    return ""


def _tasks_text(progress: DeployProgress) -> str:
    text = f"{progress.running}/{progress.wanted} running"
    if progress.health_checked:
        text += f", {progress.healthy}/{progress.wanted} healthy"
    return text


def _int(value: Any, default: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return default
    return int(value)


def wait_for_deployments(
    client: WaitClient,
    targets: Sequence[WaitTarget],
    *,
    timeout: float = 600.0,
    poll_interval: float = 0.5,
    progress: Optional[ProgressCallback] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll until every target's deployment is gone and its app looks as expected.

    Raises :class:`DeploymentTimeout` (naming the unfinished deployments) when ``timeout`` passes,
    :class:`DeploymentError` when a deployment ended without the expected result. A Marathon
    that is briefly unreachable (``Unavailable``: a leader election, a restart) does not end the
    wait; other Marathon errors are raised.
    """
    deadline = clock() + timeout
    pending = list(targets)
    last_seen: dict[str, DeployProgress] = {}
    while pending:
        try:
            pending = _poll_once(client, pending, progress, last_seen)
        except Unavailable as error:
            log.warning("Marathon unavailable while waiting", extra={"error": str(error)})
        if not pending:
            return
        if clock() >= deadline:
            raise _timeout_error(pending, last_seen, timeout)
        sleep(poll_interval)


def _poll_once(
    client: WaitClient,
    pending: Sequence[WaitTarget],
    progress: Optional[ProgressCallback],
    last_seen: dict[str, DeployProgress],
) -> list[WaitTarget]:
    """One look at ``/v2/deployments`` and the apps; returns the targets still running."""
    deployments = client.list_deployments()
    still: list[WaitTarget] = []
    for target in pending:
        deployment = find_deployment(deployments, target.deployment_id)
        app = get_app_or_none(client, target.app_id)
        _report(progress, last_seen, compute_progress(target, deployment, app))
        if deployment is not None:
            still.append(target)
            continue
        problem = outcome_problem(target, app)
        if problem:
            raise DeploymentError(
                problem, deployment_id=target.deployment_id, app_ids=[target.app_id]
            )
    return still


def wait_for_deployment(
    client: WaitClient,
    deployment_id: str,
    app_id: str = "",
    *,
    expect: str = EXPECT_RUNNING,
    timeout: float = 600.0,
    poll_interval: float = 0.5,
    progress: Optional[ProgressCallback] = None,
) -> None:
    """Wait for one deployment (see :func:`wait_for_deployments`). Without ``app_id``, only
    its disappearance from ``/v2/deployments`` is waited for."""
    target = WaitTarget(deployment_id, absolute_id(app_id) if app_id else "", expect)
    if not app_id:
        target = replace(target, expect=EXPECT_ANY)
    wait_for_deployments(
        client, [target], timeout=timeout, poll_interval=poll_interval, progress=progress
    )


def get_app_or_none(client: WaitClient, app_id: str) -> Optional[dict]:
    if not app_id:
        return None
    try:
        return client.get_app(app_id)
    except NotFound:
        return None


def _report(
    callback: Optional[ProgressCallback],
    last_seen: dict[str, DeployProgress],
    current: DeployProgress,
) -> None:
    """Send progress only when it changed, so a caller can print every call."""
    if last_seen.get(current.deployment_id) == current:
        return
    last_seen[current.deployment_id] = current
    log.debug(
        "deployment progress",
        extra={"deployment_id": current.deployment_id, "app_id": current.app_id},
    )
    if callback is not None:
        callback(current)


def _timeout_error(
    pending: Sequence[WaitTarget], last_seen: Mapping[str, DeployProgress], timeout: float
) -> DeploymentTimeout:
    parts = []
    for target in pending:
        seen = last_seen.get(target.deployment_id)
        state = f" ({_tasks_text(seen)})" if seen else ""
        parts.append(f"{target.deployment_id} of {target.app_id}{state}")
    return DeploymentTimeout(
        f"deployment did not finish within {timeout:g}s: {'; '.join(parts)}",
        deployment_id=pending[0].deployment_id,
        app_ids=[t.app_id for t in pending],
    )
