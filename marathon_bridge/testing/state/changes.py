"""Writes to the emulated cluster, as Marathon's API makes them: apps, tasks and deployments.

Every write validates and normalizes first (422 with Marathon's body on a bad app), refuses an
app locked by a deployment unless forced (409), stores the new version with its service ports and
starts a deployment whose steps the scheduler carries out.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from marathon_bridge.definitions.unknown import drop_unknown_fields
from marathon_bridge.testing import appmodel
from marathon_bridge.testing.state.core import StateCore
from marathon_bridge.testing.state.records import (
    ACTIVE_STATES,
    LOCKED_MESSAGE,
    MAX_VERSIONS,
    ApiError,
    AppState,
    Deployment,
    Json,
    Task,
    invalid_json,
    issues_body,
    not_found_app,
)
from marathon_bridge.testing.state.views import COUNT_KEYS
from marathon_bridge.testing.wire import play_numbers, timestamp

DeploymentResult = tuple[str, str]  # (version, deployment id)


class StateChanges(StateCore):
    """``POST``/``PUT``/``PATCH``/``DELETE`` on apps, tasks, deployments and the launch queue."""

    def _locking(self, app_ids: Iterable[str]) -> list[Deployment]:
        ids = set(app_ids)
        return [d for d in self.deployments.values() if ids & set(d.affected_apps)]

    def _check_lock(self, app_ids: Iterable[str], force: bool) -> None:
        locking = self._locking(app_ids)
        if not locking:
            return
        if not force:
            raise ApiError(
                409, {"message": LOCKED_MESSAGE, "deployments": [{"id": d.id} for d in locking]}
            )
        for dep in locking:
            self._cancel(dep, "Deployment was cancelled")

    def _cancel(self, dep: Deployment, reason: str) -> None:
        self.deployments.pop(dep.id, None)
        self._plan_event("deployment_failed", dep, reason=reason)

    def _used_service_ports(self, exclude: Iterable[str]) -> set[int]:
        skip = set(exclude)
        used: set[int] = set()
        for app_id, state in self.apps.items():
            if app_id not in skip:
                used.update(p for p in appmodel.service_ports(state.app) if p)
        return used

    def _api_post_event(self, client_ip: str, uri: str, definition: Json) -> None:
        self._emit(
            "api_post_event",
            {
                "clientIp": client_ip,
                "uri": uri,
                "appDefinition": play_numbers(definition),
                "eventType": "api_post_event",
                "timestamp": timestamp(),
            },
        )

    def _prepare(self, body: Any) -> Json:
        """Read an app body as Marathon does (only the fields it declares, at every depth, unless
        ``keep_unknown_fields``), validate it (422 on issues) and normalize it."""
        if not isinstance(body, dict):
            raise invalid_json("/", "error.expected.jsobject")
        if not self.options.keep_unknown_fields:
            body = drop_unknown_fields(body)
        cleaned = {k: v for k, v in body.items() if k not in appmodel.OWNED_KEYS}
        issues = appmodel.validate(cleaned)
        if issues:
            raise issues_body(issues)
        return appmodel.normalize(cleaned)

    def _store(
        self, app: Json, previous: Optional[Json], version: str, config_changed: bool
    ) -> Json:
        """Assign service ports, stamp version/versionInfo, remember the version."""
        # the other apps' ports matter only for a port to assign (a walk over every app: a
        # cluster created app by app would cost time quadratic in its size)
        to_assign = not all(appmodel.service_ports(app))
        used = self._used_service_ports([app["id"]]) if to_assign else set()
        try:
            stored = appmodel.assign_service_ports(
                app, previous, used, self.options.service_port_min, self.options.service_port_max
            )
        except appmodel.PortRangeExhausted as exc:
            raise ApiError(422, {"message": str(exc)}) from exc
        last_config = version
        if previous is not None and not config_changed:
            last_config = previous.get("versionInfo", {}).get("lastConfigChangeAt", version)
        stored["version"] = version
        stored["versionInfo"] = {"lastScalingAt": version, "lastConfigChangeAt": last_config}
        state = self.apps.get(stored["id"])
        if state is None:
            state = AppState(app=stored, versions={})
            self.apps[stored["id"]] = state
        else:
            state.app = stored
            if config_changed:
                state.launch_failures = 0
                state.next_launch_mono = 0.0
        state.versions[version] = copy.deepcopy(stored)
        self._touch(stored["id"])
        while len(state.versions) > MAX_VERSIONS:
            del state.versions[next(iter(state.versions))]
        self.root_version = version
        return stored

    def _new_deployment(
        self, steps: list[list[Json]], original: dict[str, Optional[Json]], version: str
    ) -> Deployment:
        dep = Deployment(
            id=str(uuid.uuid4()),
            version=version,
            steps=[s for s in steps if s],
            original=original,
            started_mono=time.monotonic(),
        )
        self.deployments[dep.id] = dep
        if dep.steps:
            self._plan_event("deployment_info", dep)
        return dep

    def create_app(self, body: Any, force: bool, uri: str, client_ip: str) -> tuple[Json, str]:
        """POST /v2/apps: (201 body, deployment id)."""
        app = self._prepare(body)
        with self.lock:
            app_id = app["id"]
            if app_id in self.apps:
                raise ApiError(409, {"message": f"An app with id [{app_id}] already exists."})
            self._check_lock([app_id], force)
            version = timestamp()
            posted = self._definition(dict(app, version=version))
            self._store(app, None, version, config_changed=True)
            dep = self._new_deployment(
                [
                    [{"action": "StartApplication", "app": app_id}],
                    [{"action": "ScaleApplication", "app": app_id}],
                ],
                {app_id: None},
                version,
            )
            self._api_post_event(client_ip, uri, posted)
            body_out = dict(posted)
            body_out.update(dict.fromkeys(COUNT_KEYS, 0))
            body_out["deployments"] = [{"id": dep.id}]
            return body_out, dep.id

    def _about_to_change(self, app_id: str, force: bool) -> tuple[AppState, str, Json]:
        """An existing, unlocked app (404 or 409 otherwise): its state, the new version and its
        definition before the change. Called with the lock held."""
        state = self.apps.get(app_id)
        if state is None:
            raise not_found_app(app_id)
        self._check_lock([app_id], force)
        return state, timestamp(), copy.deepcopy(state.app)

    def _merge_update(
        self, app_id: str, body: Any, partial: bool, existing: Optional[AppState]
    ) -> Json:
        """The full definition a PUT/PATCH asks for (rollback included), normalized."""
        if not isinstance(body, dict):
            raise invalid_json("/", "error.expected.jsobject")
        declared = {k for k in body if k in appmodel.APP_FIELDS and k not in ("id", "versionInfo")}
        if "version" in declared:
            if declared != {"version"}:
                raise ApiError(
                    422,
                    {
                        "message": "Object is not valid",
                        "details": [
                            {
                                "path": "/",
                                "errors": [
                                    "The 'version' field may only be combined with the 'id' field."
                                ],
                            }
                        ],
                    },
                )
            if existing is None:
                raise not_found_app(app_id)
            version = str(body["version"])
            snapshot = existing.versions.get(version)
            if snapshot is None:
                raise ApiError(
                    404, {"message": f"App '{app_id}' does not exist in version {version}"}
                )
            merged = {k: v for k, v in snapshot.items() if k not in appmodel.OWNED_KEYS}
        elif existing is not None and partial:
            merged = {k: v for k, v in existing.app.items() if k not in appmodel.OWNED_KEYS}
            merged.update({k: v for k, v in body.items() if k not in appmodel.OWNED_KEYS})
        else:
            merged = {k: v for k, v in body.items() if k not in appmodel.OWNED_KEYS}
        merged["id"] = app_id
        return self._prepare(merged)

    def _apply_update(
        self, app: Json, version: str
    ) -> tuple[list[Json], list[Json], Optional[Json], bool]:
        """Store one updated app: (first-step actions, second-step actions, original, created)."""
        app_id = app["id"]
        existing = self.apps.get(app_id)
        if existing is None:
            self._store(app, None, version, config_changed=True)
            return (
                [{"action": "StartApplication", "app": app_id}],
                [{"action": "ScaleApplication", "app": app_id}],
                None,
                True,
            )
        previous = existing.app
        original = copy.deepcopy(previous)
        candidate = appmodel.assign_service_ports(
            app,
            previous,
            self._used_service_ports([app_id]),
            self.options.service_port_min,
            self.options.service_port_max,
        )
        config_changed = appmodel.config_part(candidate) != appmodel.config_part(previous)
        scaled = candidate.get("instances") != previous.get("instances")
        if not config_changed and not scaled:
            return [], [], original, False
        self._store(app, previous, version, config_changed=config_changed)
        action = "RestartApplication" if config_changed else "ScaleApplication"
        return [], [{"action": action, "app": app_id}], original, False

    def update_app(
        self,
        app_id: str,
        body: Any,
        *,
        force: bool,
        partial: bool,
        must_exist: bool,
        uri: str,
        client_ip: str,
    ) -> tuple[bool, str, str]:
        """PUT/PATCH /v2/apps/{id}: (created, version, deployment id)."""
        with self.lock:
            existing = self.apps.get(app_id)
            if existing is None and must_exist:
                raise not_found_app(app_id)
        app = self._merge_update(app_id, body, partial, existing)
        with self.lock:
            self._check_lock([app_id], force)
            version = timestamp()
            first, second, original, created = self._apply_update(app, version)
            dep = self._new_deployment([first, second], {app_id: original}, version)
            if app_id in self.apps:
                self._api_post_event(client_ip, uri, self._definition(self.apps[app_id].app))
            return created, version, dep.id

    def update_apps(
        self, body: Any, *, force: bool, partial: bool, must_exist: bool
    ) -> DeploymentResult:
        """PUT/PATCH /v2/apps with a list: one deployment for all."""
        if not isinstance(body, list):
            raise invalid_json("/", "error.expected.jsarray")
        prepared: list[Json] = []
        for index, item in enumerate(body):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise invalid_json(f"/({index})/id", "error.path.missing")
            app_id = appmodel.absolute_id(item["id"])
            with self.lock:
                existing = self.apps.get(app_id)
            if existing is None and must_exist:
                raise not_found_app(app_id)
            prepared.append(self._merge_update(app_id, item, partial, existing))
        with self.lock:
            ids = [a["id"] for a in prepared]
            self._check_lock(ids, force)
            version = timestamp()
            first_all: list[Json] = []
            second_all: list[Json] = []
            originals: dict[str, Optional[Json]] = {}
            for app in prepared:
                first, second, original, _ = self._apply_update(app, version)
                first_all += first
                second_all += second
                originals[app["id"]] = original
            dep = self._new_deployment([first_all, second_all], originals, version)
            return version, dep.id

    def delete_app(self, app_id: str, force: bool) -> DeploymentResult:
        """DELETE /v2/apps/{id}: the app disappears now; its tasks are killed."""
        with self.lock:
            _state, version, original = self._about_to_change(app_id, force)
            del self.apps[app_id]
            self.root_version = version
            dep = self._new_deployment(
                [[{"action": "StopApplication", "app": app_id}]], {app_id: original}, version
            )
            for task in self._app_tasks(app_id):
                self._kill(task)
            return version, dep.id

    def restart_app(self, app_id: str, force: bool) -> DeploymentResult:
        """POST /v2/apps/{id}/restart: a new config version, every task replaced."""
        with self.lock:
            state, version, original = self._about_to_change(app_id, force)
            app = {k: v for k, v in state.app.items() if k not in ("version", "versionInfo")}
            self._store(app, state.app, version, config_changed=True)
            dep = self._new_deployment(
                [[{"action": "RestartApplication", "app": app_id}]], {app_id: original}, version
            )
            return version, dep.id

    def kill_app_tasks(
        self,
        app_id: str,
        task_ids: Optional[Sequence[str]],
        *,
        host: str = "",
        scale: bool = False,
        wipe: bool = False,
        force: bool = False,
    ) -> tuple[Optional[list[Json]], Optional[DeploymentResult]]:
        """Kill some (or all) tasks of an app: (killed tasks, None) or (None, deployment)."""
        if scale and wipe:
            raise ApiError(400, {"message": "You cannot use scale and wipe at the same time."})
        with self.lock:
            if app_id not in self.apps:
                raise not_found_app(app_id)
            tasks = self._app_tasks(app_id)
            if task_ids is not None:
                wanted = set(task_ids)
                tasks = [t for t in tasks if t.id in wanted]
                if not tasks:
                    raise ApiError(404, {"message": f"Task '{task_ids[0]}' does not exist"})
            if host and host != "*":
                tasks = [t for t in tasks if t.agent.host == host]
            return self._kill_selected(tasks, scale=scale, force=force)

    def _kill_selected(
        self, tasks: list[Task], *, scale: bool, force: bool
    ) -> tuple[Optional[list[Json]], Optional[DeploymentResult]]:
        if not scale:
            out = [self.task_json(t) for t in tasks]
            for task in tasks:
                self._kill(task)
            return out, None
        by_app: dict[str, list[Task]] = {}
        for task in tasks:
            if task.app_id in self.apps:
                by_app.setdefault(task.app_id, []).append(task)
        self._check_lock(by_app, force)
        version = timestamp()
        actions: list[Json] = []
        originals: dict[str, Optional[Json]] = {}
        for app_id, app_tasks in by_app.items():
            state = self.apps[app_id]
            originals[app_id] = copy.deepcopy(state.app)
            app = {k: v for k, v in state.app.items() if k not in ("version", "versionInfo")}
            live = [t for t in app_tasks if t.state in ACTIVE_STATES]
            app["instances"] = max(0, int(app.get("instances", 0)) - len(live))
            self._store(app, state.app, version, config_changed=False)
            actions.append({"action": "ScaleApplication", "app": app_id})
            for task in app_tasks:
                self._kill(task)
        dep = self._new_deployment([actions], originals, version)
        return None, (version, dep.id)

    def delete_tasks(
        self, task_ids: Sequence[str], *, scale: bool, wipe: bool, force: bool
    ) -> tuple[Optional[list[Json]], Optional[DeploymentResult]]:
        """POST /v2/tasks/delete."""
        if scale and wipe:
            raise ApiError(400, {"message": "You cannot use scale and wipe at the same time."})
        for task_id in task_ids:
            if not isinstance(task_id, str) or (".instance-" not in task_id and "." not in task_id):
                raise ApiError(
                    400,
                    {"message": f"Invalid task id '{task_id}'. [Unable to parse task id]"},
                )
        with self.lock:
            tasks = [self.tasks[t] for t in task_ids if t in self.tasks]
            killed, dep = self._kill_selected(tasks, scale=scale, force=force)
            if killed is not None:
                for item in killed:
                    item["healthCheckResults"] = []
            return killed, dep

    def cancel_deployment(self, dep_id: str, force: bool) -> Optional[DeploymentResult]:
        """DELETE /v2/deployments/{id}: force cancels, otherwise a rollback deployment."""
        with self.lock:
            dep = self.deployments.get(dep_id)
            if dep is None:
                raise ApiError(404, {"message": f"DeploymentPlan {dep_id} does not exist"})
            self._cancel(dep, "Deployment was cancelled")
            if force:
                return None
            version = timestamp()
            steps: list[Json] = []
            originals: dict[str, Optional[Json]] = {}
            for app_id, original in dep.original.items():
                current = self.apps.get(app_id)
                originals[app_id] = copy.deepcopy(current.app) if current else None
                if original is None:
                    if current is not None:
                        del self.apps[app_id]
                        for task in self._app_tasks(app_id):
                            self._kill(task)
                        steps.append({"action": "StopApplication", "app": app_id})
                    continue
                restored = copy.deepcopy(original)
                state = self.apps.get(app_id)
                if state is None:
                    state = AppState(app=restored, versions={})
                    self.apps[app_id] = state
                state.app = restored
                state.versions[restored["version"]] = copy.deepcopy(restored)
                steps.append({"action": "RestartApplication", "app": app_id})
            self.root_version = version
            new = self._new_deployment([steps], originals, version)
            return version, new.id

    def reset_delay(self, app_id: str) -> None:
        with self.lock:
            state = self.apps.get(app_id)
            if state is None:
                raise ApiError(404, {"message": f"Application {app_id} not found in tasks queue."})
            state.launch_failures = 0
            state.next_launch_mono = 0.0
