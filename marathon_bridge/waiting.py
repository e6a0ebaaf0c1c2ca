"""Waiting for deployments: poll ``/v2/deployments`` and the apps, report progress, and say how
a deployment ended (done, cancelled or superseded, timed out) and, when its tasks die, why.

Marathon drops a deployment both when it succeeds and when it is cancelled (by a forced
deployment, a rollback or a delete), so the app is checked at the end as well: running (and
healthy, for health-checked apps) instances must reach ``instances``. Progress (steps, the new
version's running / healthy / wanted tasks, its last task failure and Marathon's launch delay)
goes to a callback, only when it changed. How each answer is read is :mod:`.progress`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Callable, Optional, Protocol, Union

from marathon_bridge.errors import DeploymentError, DeploymentTimeout, NotFound, Unavailable
from marathon_bridge.progress import (
    DEPLOYING,
    DONE,
    EXPECT_ANY,
    EXPECT_GONE,
    EXPECT_RUNNING,
    ROLLING_BACK,
    DeployProgress,
    ProgressCallback,
    WaitTarget,
    absolute_id,
    compute_progress,
    counts_met,
    find_deployment,
    has_health_checks,
    launch_delay,
    outcome_problem,
    tasks_text,
    why_text,
)

log = logging.getLogger(__name__)


class WaitClient(Protocol):
    """The part of :class:`marathon_bridge.client.MarathonClient` waiting uses."""

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> dict: ...

    def list_deployments(self) -> list[dict]: ...

    def get_queue(self) -> list[dict]: ...


class DeploymentRefLike(Protocol):
    """What the client returns for a call that starts a deployment (``DeploymentRef``)."""

    @property
    def deployment_id(self) -> str: ...


Waitable = Union[WaitTarget, DeploymentRefLike, str]


def wait_for_deployments(
    client: WaitClient,
    targets: Sequence[Waitable],
    *,
    timeout: float = 600.0,
    poll_interval: float = 0.5,
    progress: Optional[ProgressCallback] = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll until every deployment is gone and its app looks as expected.

    ``targets``: :class:`WaitTarget` (a deployment, its app and what the app should look like at
    the end), or what the client's calls return (``DeploymentRef``, or a deployment id): those
    follow each app the deployment affects, expected running, or gone when it stops the app.

    Raises :class:`DeploymentTimeout` (naming the unfinished deployments, and why their tasks
    failed when they did) when ``timeout`` passes, :class:`DeploymentError` when a deployment
    ended without the expected result. A Marathon that is briefly unreachable (``Unavailable``: a
    leader election, a restart) does not end the wait; other Marathon errors are raised.
    """
    if not targets:
        return
    deadline = clock() + timeout
    pending: Optional[list[WaitTarget]] = None
    last_seen: dict[tuple[str, str], DeployProgress] = {}
    while pending is None or pending:
        try:
            deployments = client.list_deployments()
            if pending is None:
                pending = resolve_targets(targets, deployments)
            pending = _poll_once(client, deployments, pending, progress, last_seen)
        except Unavailable as error:
            log.warning("Marathon unavailable while waiting", extra={"error": str(error)})
        if pending == []:
            return
        if clock() >= deadline:
            raise _timeout_error(pending or [], targets, last_seen, timeout)
        sleep(poll_interval)


def resolve_targets(
    targets: Sequence[Waitable], deployments: Sequence[Mapping[str, Any]]
) -> list[WaitTarget]:
    """Targets for what the caller gave: a ``DeploymentRef`` (or id) becomes one target per app
    its deployment affects; one already gone needs no waiting and checks nothing."""
    out: list[WaitTarget] = []
    for item in targets:
        if isinstance(item, WaitTarget):
            out.append(item)
            continue
        deployment_id = item if isinstance(item, str) else str(item.deployment_id)
        deployment = find_deployment(deployments, deployment_id)
        if deployment is None:
            continue
        stopped = {
            str(a.get("app"))
            for step in deployment.get("steps") or []
            for a in (step.get("actions") or [] if isinstance(step, Mapping) else [])
            if isinstance(a, Mapping) and a.get("action") == "StopApplication"
        }
        for app_id in deployment.get("affectedApps") or []:
            expect = EXPECT_GONE if app_id in stopped else EXPECT_RUNNING
            out.append(WaitTarget(deployment_id, str(app_id), expect))
    return out


def _poll_once(
    client: WaitClient,
    deployments: Sequence[Mapping[str, Any]],
    pending: Sequence[WaitTarget],
    progress: Optional[ProgressCallback],
    last_seen: dict[tuple[str, str], DeployProgress],
) -> list[WaitTarget]:
    """One look at the deployments and the apps; returns the targets still running."""
    still: list[WaitTarget] = []
    queue: Optional[list[dict]] = None
    for target in pending:
        deployment = find_deployment(deployments, target.deployment_id)
        app = get_app_or_none(client, target.app_id)
        current = compute_progress(target, deployment, app)
        if current.failure and deployment is not None:
            queue = client.get_queue() if queue is None else queue
            current = replace(current, launch_delay=launch_delay(queue, target.app_id))
        _report(progress, last_seen, current)
        if deployment is not None:
            still.append(target)
            continue
        problem = outcome_problem(target, app)
        if problem:
            raise DeploymentError(
                problem + why_text(current),
                deployment_id=target.deployment_id,
                app_ids=[target.app_id],
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
    """Wait for one deployment (see :func:`wait_for_deployments`). Without ``app_id``, every
    app the deployment affects is followed."""
    target: Waitable = WaitTarget(deployment_id, absolute_id(app_id), expect)
    if not app_id:
        target = deployment_id
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
    last_seen: dict[tuple[str, str], DeployProgress],
    current: DeployProgress,
) -> None:
    """Send progress only when it changed, so a caller can print every call."""
    key = (current.deployment_id, current.app_id)
    if last_seen.get(key) == current:
        return
    last_seen[key] = current
    log.debug(
        "deployment progress",
        extra={"deployment_id": current.deployment_id, "app_id": current.app_id},
    )
    if callback is not None:
        callback(current)


def _timeout_error(
    pending: Sequence[WaitTarget],
    given: Sequence[Waitable],
    last_seen: Mapping[tuple[str, str], DeployProgress],
    timeout: float,
) -> DeploymentTimeout:
    parts = []
    for target in pending:
        seen = last_seen.get((target.deployment_id, target.app_id))
        state = f" ({tasks_text(seen)}{why_text(seen)})" if seen else ""
        parts.append(f"{target.deployment_id} of {target.app_id}{state}")
    if not pending:  # Marathon never answered: name what was asked for
        parts = [_given_id(item) for item in given]
    return DeploymentTimeout(
        f"deployment did not finish within {timeout:g}s: {'; '.join(parts)}",
        deployment_id=pending[0].deployment_id if pending else _given_id(given[0]),
        app_ids=[t.app_id for t in pending],
    )


def _given_id(item: Waitable) -> str:
    if isinstance(item, WaitTarget):
        return item.deployment_id
    return item if isinstance(item, str) else str(item.deployment_id)


__all__ = [
    "DEPLOYING",
    "DONE",
    "EXPECT_ANY",
    "EXPECT_GONE",
    "EXPECT_RUNNING",
    "ROLLING_BACK",
    "DeployProgress",
    "DeploymentRefLike",
    "WaitTarget",
    "counts_met",
    "has_health_checks",
    "resolve_targets",
    "wait_for_deployment",
    "wait_for_deployments",
]
