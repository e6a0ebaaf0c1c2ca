"""Deploy app definitions and wait for Marathon to finish; roll back on failure when asked.

How an app is sent:

- it does not exist (``GET`` answers 404): ``POST /v2/apps``;
- it exists and :func:`~marathon_bridge.definitions.diff_apps` finds no difference: nothing is sent
  (reported as ``unchanged``);
- otherwise ``PUT /v2/apps/{id}?partialUpdate=false``: the file is the whole truth, so a field
  removed from the file goes back to Marathon's default. This is what ``diff`` compares against
  (the file with Marathon's defaults filled), so after a deploy ``diff`` finds nothing. A partial
  update would keep fields that were deleted from the file and ``diff`` would never settle.

What is sent is the definition as written, unknown fields included, minus the read-only fields
Marathon writes (``version``, ``tasks``, counts, ...; see :data:`READ_ONLY_FIELDS`), so that a
file saved from ``GET /v2/apps/{id}`` deploys as it is.

Following a deployment (:mod:`marathon_bridge.waiting`): its id comes from the
``Marathon-Deployment-Id`` header (or the body); ``GET /v2/deployments`` is polled until the id
disappears, and the app is checked at the end (a cancelled deployment disappears too).

Rolling back (``rollback_on_failure``): each unfinished deployment is deleted with ``force=false``,
which makes Marathon start its own rollback deployment; if the deployment is already gone, the app
is put back to its previous version (``PUT {"version": v}``), or deleted if the deploy created it.
The rollback is waited for too, and the raised error says what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from marathon_bridge.definitions import diff_apps
from marathon_bridge.definitions.normalize import MARATHON_OWNED
from marathon_bridge.errors import (
    DeploymentError,
    MarathonError,
    NotFound,
)
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
    outcome_problem,
)
from marathon_bridge.waiting import get_app_or_none, wait_for_deployment, wait_for_deployments

log = logging.getLogger(__name__)

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"

MIN_ROLLBACK_TIMEOUT = 30.0

# What Marathon writes and never reads back. A file saved from ``GET /v2/apps/{id}`` carries
# them; sending ``version`` with other fields is even refused (it means "roll back").
READ_ONLY_FIELDS = MARATHON_OWNED


class DeploymentRefLike(Protocol):
    """What the client returns for a call that starts a deployment."""

    @property
    def deployment_id(self) -> str: ...

    @property
    def version(self) -> str: ...


class DeployClient(Protocol):
    """The part of :class:`marathon_bridge.client.MarathonClient` this module uses."""

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> dict: ...

    def create_app(self, app: Mapping[str, Any]) -> tuple[dict, Any]: ...

    def update_app(
        self,
        app_id: str,
        app: Mapping[str, Any],
        *,
        force: bool = False,
        partial_update: bool = True,
    ) -> Any: ...

    def delete_app(self, app_id: str, *, force: bool = True) -> Any: ...

    def restart_app(self, app_id: str, *, force: bool = False) -> Any: ...

    def scale_app(self, app_id: str, instances: int, *, force: bool = False) -> Any: ...

    def rollback_app(self, app_id: str, version: str, *, force: bool = False) -> Any: ...

    def list_versions(self, app_id: str) -> list[str]: ...

    def list_deployments(self) -> list[dict]: ...

    def get_queue(self) -> list[dict]: ...

    def delete_deployment(self, deployment_id: str, *, force: bool = False) -> Any: ...


@dataclass(frozen=True)
class AppDeployment:
    """What was done for one app."""

    app_id: str
    action: str  # created | updated | unchanged
    deployment_id: str = ""
    version: str = ""
    previous_version: str = ""


@dataclass(frozen=True)
class DeployResult:
    """The outcome of :func:`deploy_apps` (failures raise instead)."""

    apps: tuple[AppDeployment, ...]
    waited: bool

    @property
    def deployment_ids(self) -> list[str]:
        return [a.deployment_id for a in self.apps if a.deployment_id]


def previous_version(versions: Sequence[str], app: Mapping[str, Any]) -> Optional[str]:
    """The newest version older than the app's last configuration change (or its version).

    Marathon's versions are ISO timestamps of one fixed format, so they sort as strings; the
    order of ``GET /versions`` itself is not guaranteed.
    """
    info = app.get("versionInfo")
    if not isinstance(info, Mapping):
        info = {}
    current = str(info.get("lastConfigChangeAt") or app.get("version") or "")
    older = sorted((v for v in versions if current and v < current), reverse=True)
    return older[0] if older else None


def request_body(app: Mapping[str, Any]) -> dict[str, Any]:
    """The definition as sent to Marathon: everything but :data:`READ_ONLY_FIELDS`
    (unknown fields included: Marathon ignores them, and they are the user's to send)."""
    return {k: v for k, v in app.items() if k not in READ_ONLY_FIELDS}


def _ref_id(ref: Any) -> str:
    return str(getattr(ref, "deployment_id", "") or "") if ref is not None else ""


def _ref_version(ref: Any) -> str:
    return str(getattr(ref, "version", "") or "") if ref is not None else ""


# --- deploying ------------------------------------------------------------------------------------


def deploy_apps(
    client: DeployClient,
    apps: Sequence[Mapping[str, Any]],
    *,
    wait: bool = True,
    timeout: float = 600.0,
    force: bool = False,
    rollback_on_failure: bool = False,
    progress: Optional[ProgressCallback] = None,
    poll_interval: float = 0.5,
) -> DeployResult:
    """Create or update each app, then (``wait``) follow the deployments to the end.

    Apps are submitted in order; a 409 lock raises :class:`~marathon_bridge.errors.Conflict`
    (``deployment_ids`` names the locking deployments) unless ``force``. On timeout or failure,
    raises :class:`DeploymentTimeout` / :class:`DeploymentError`, after rolling back when
    ``rollback_on_failure`` (the message says how the rollback went).
    """
    done = [_submit(client, app, force=force) for app in apps]
    result = DeployResult(apps=tuple(done), waited=wait)
    for item in done:
        log.info(
            "app submitted",
            extra={
                "app_id": item.app_id,
                "action": item.action,
                "deployment_id": item.deployment_id,
            },
        )
    targets = [WaitTarget(a.deployment_id, a.app_id) for a in done if a.deployment_id]
    if not wait or not targets:
        return result
    try:
        wait_for_deployments(
            client, targets, timeout=timeout, poll_interval=poll_interval, progress=progress
        )
    except DeploymentError as failure:
        if not rollback_on_failure:
            raise
        note = _roll_back(
            client, done, timeout=timeout, poll_interval=poll_interval, progress=progress
        )
        raise type(failure)(
            f"{failure}; {note}", deployment_id=failure.deployment_id, app_ids=failure.app_ids
        ) from failure
    return result


def _submit(client: DeployClient, app: Mapping[str, Any], *, force: bool) -> AppDeployment:
    app_id = absolute_id(str(app.get("id", "")))
    app = request_body(app)
    live = get_app_or_none(client, app_id)
    if live is None:
        body, ref = client.create_app(app)
        return AppDeployment(
            app_id=app_id,
            action=CREATED,
            deployment_id=_ref_id(ref) or _first_deployment_id(body),
            version=_ref_version(ref) or str(body.get("version", "")),
        )
    previous = str(live.get("version", ""))
    if not _differs(app, live):
        return AppDeployment(app_id, UNCHANGED, version=previous, previous_version=previous)
    ref = client.update_app(app_id, app, force=force, partial_update=False)
    return AppDeployment(app_id, UPDATED, _ref_id(ref), _ref_version(ref), previous)


def _differs(app: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    return bool(diff_apps(app, live))


def _first_deployment_id(body: Mapping[str, Any]) -> str:
    deployments = body.get("deployments") or []
    first = deployments[0] if deployments and isinstance(deployments[0], Mapping) else {}
    return str(first.get("id", ""))


def _roll_back(
    client: DeployClient,
    done: Sequence[AppDeployment],
    *,
    timeout: float,
    poll_interval: float,
    progress: Optional[ProgressCallback],
) -> str:
    """Undo every deployment this deploy started; wait for the undo; describe the outcome.

    The rollback gets its own window: ``timeout`` again, and at least ``MIN_ROLLBACK_TIMEOUT``.
    """
    targets: list[WaitTarget] = []
    notes: list[str] = []
    for item in done:
        if not item.deployment_id:
            continue
        target, note = _start_rollback(client, item)
        notes.append(note)
        if target is not None:
            targets.append(target)
    try:
        wait_for_deployments(
            client,
            targets,
            timeout=max(timeout, MIN_ROLLBACK_TIMEOUT),
            poll_interval=poll_interval,
            progress=progress,
        )
    except (DeploymentError, MarathonError) as error:
        return f"rollback did not complete: {error}"
    return "rolled back: " + "; ".join(notes)


def _start_rollback(client: DeployClient, item: AppDeployment) -> tuple[Optional[WaitTarget], str]:
    expect = EXPECT_RUNNING if item.action == UPDATED else EXPECT_GONE
    try:
        ref = client.delete_deployment(item.deployment_id, force=False)
    except NotFound:
        ref = None
    if ref is not None and _ref_id(ref):
        target = WaitTarget(_ref_id(ref), item.app_id, expect, ROLLING_BACK)
        what = f"to version {item.previous_version}" if item.action == UPDATED else "(removed)"
        return target, f"{item.app_id} {what} by Marathon's rollback deployment {_ref_id(ref)}"
    if item.action == UPDATED and item.previous_version:
        ref = client.rollback_app(item.app_id, item.previous_version, force=True)
        target = WaitTarget(_ref_id(ref), item.app_id, EXPECT_RUNNING, ROLLING_BACK)
        return target, f"{item.app_id} to version {item.previous_version}"
    ref = client.delete_app(item.app_id, force=True)
    target = WaitTarget(_ref_id(ref), item.app_id, EXPECT_GONE, ROLLING_BACK)
    return target, f"{item.app_id} removed (the deploy created it)"


# --- single-app operations ------------------------------------------------------------------------


def rollback(
    client: DeployClient, app_id: str, version: Optional[str] = None, *, force: bool = False
) -> tuple[str, Any]:
    """Put the app back to ``version`` (default: the one before its last config change).

    Returns ``(version, DeploymentRef)``. Raises :class:`DeploymentError` when there is no
    earlier version, ``NotFound`` (Marathon's message) when the app does not exist.
    """
    app_id = absolute_id(app_id)
    app = client.get_app(app_id)
    if version is None:
        version = previous_version(client.list_versions(app_id), app)
        if version is None:
            raise DeploymentError(f"app {app_id} has no earlier version to roll back to")
    return version, client.rollback_app(app_id, version, force=force)


def scale(client: DeployClient, app_id: str, instances: int, *, force: bool = False) -> Any:
    """Start a scale deployment; returns its DeploymentRef.

    The app is read first: ``PUT /v2/apps/{id}`` would otherwise try to create a missing app,
    and Marathon's "App '/x' does not exist" is the answer a user needs.
    """
    app_id = absolute_id(app_id)
    client.get_app(app_id)
    return client.scale_app(app_id, instances, force=force)


def restart(client: DeployClient, app_id: str, *, force: bool = False) -> Any:
    """Start a rolling restart; returns its DeploymentRef.

    The app is read first, so that a client with several URLs knows which one answers before
    the ``POST`` (which is not sent again to another URL once it went out).
    """
    app_id = absolute_id(app_id)
    client.get_app(app_id)
    return client.restart_app(app_id, force=force)


def delete(client: DeployClient, app_id: str, *, force: bool = True) -> Any:
    """Delete the app (Marathon's default ``force=true`` cancels deployments that lock it)."""
    return client.delete_app(absolute_id(app_id), force=force)


__all__ = [  # waiting's names too: deploy is where callers find them
    "CREATED",
    "DEPLOYING",
    "DONE",
    "EXPECT_ANY",
    "EXPECT_GONE",
    "EXPECT_RUNNING",
    "READ_ONLY_FIELDS",
    "ROLLING_BACK",
    "UNCHANGED",
    "UPDATED",
    "AppDeployment",
    "DeployProgress",
    "DeployResult",
    "WaitTarget",
    "absolute_id",
    "compute_progress",
    "counts_met",
    "delete",
    "deploy_apps",
    "find_deployment",
    "has_health_checks",
    "outcome_problem",
    "previous_version",
    "request_body",
    "restart",
    "rollback",
    "scale",
    "wait_for_deployment",
    "wait_for_deployments",
]
