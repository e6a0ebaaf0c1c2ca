"""Reads of the emulated cluster: apps, tasks, versions, deployments, the queue and groups."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Optional

from marathon_bridge.testing import appmodel
from marathon_bridge.testing.state import views
from marathon_bridge.testing.state.core import StateCore
from marathon_bridge.testing.state.records import (
    ACTIVE_STATES,
    RUNNING,
    STAGING,
    ApiError,
    Json,
    not_found_app,
)
from marathon_bridge.testing.wire import timestamp


class StateQueries(StateCore):
    """The ``GET`` answers (each takes the lock) and the snapshots tests read."""

    def list_apps(
        self, embed: Iterable[str], app_filter: str = "", cmd: str = "", label: str = ""
    ) -> list[Json]:
        selector = appmodel.parse_label_selector(label) if label else []
        with self.lock:
            out = []
            for app_id, state in self.apps.items():
                app = state.app
                if app_filter and app_filter.lower() not in app_id.lower():
                    continue
                if cmd and cmd.lower() not in str(app.get("cmd", "")).lower():
                    continue
                if selector and not appmodel.labels_match(app.get("labels") or {}, selector):
                    continue
                out.append(self.app_info(app_id, embed))
            return out

    def get_app(self, app_id: str, embed: Iterable[str]) -> Json:
        with self.lock:
            if app_id not in self.apps:
                raise not_found_app(app_id)
            return self.app_info(app_id, embed, full=True)

    def group_apps(self, group_id: str, embed: Iterable[str]) -> list[Json]:
        """Apps under a group (``GET /v2/apps/<group>/*``)."""
        prefix = "/" if group_id == "/" else group_id + "/"
        with self.lock:
            ids = [a for a in self.apps if a.startswith(prefix)]
            if not ids and group_id != "/":
                raise ApiError(404, {"message": f"Group '{group_id}' does not exist"})
            return [self.app_info(a, embed, full=True) for a in ids]

    def app_tasks(self, app_id: str) -> list[Json]:
        with self.lock:
            if app_id.endswith("/*"):
                group = app_id[:-2] or "/"
                prefix = "/" if group == "/" else group + "/"
                return [
                    self.task_json(t) for t in self.tasks.values() if t.app_id.startswith(prefix)
                ]
            if app_id not in self.apps:
                raise not_found_app(app_id)
            return [self.task_json(t) for t in self._app_tasks(app_id)]

    def all_tasks(self, statuses: Iterable[str] = ()) -> list[Json]:
        wanted = {s.lower() for s in statuses} & {"running", "staging"}
        with self.lock:
            out = []
            for task in self.tasks.values():
                if wanted:
                    if task.state == RUNNING and "running" not in wanted:
                        continue
                    if task.state == STAGING and "staging" not in wanted:
                        continue
                    if task.state not in (RUNNING, STAGING):
                        continue
                app = self.apps.get(task.app_id)
                ports = appmodel.service_ports(app.app) if app else []
                out.append(self.task_json(task, ports))
            return out

    def versions(self, app_id: str) -> list[str]:
        with self.lock:
            if app_id not in self.apps:
                raise not_found_app(app_id)
            return list(reversed(self.apps[app_id].versions))

    def app_version(self, app_id: str, version: str) -> Json:
        with self.lock:
            if app_id not in self.apps:
                raise not_found_app(app_id)
            snapshot = self.apps[app_id].versions.get(version)
            if snapshot is None:
                raise ApiError(
                    404, {"message": f"App '{app_id}' does not exist in version {version}"}
                )
            return self._definition(snapshot)

    def deployments_json(self) -> list[Json]:
        with self.lock:
            return [views.deployment_json(dep) for dep in self.deployments.values()]

    def queue_json(self) -> list[Json]:
        now = time.monotonic()
        with self.lock:
            out = []
            for app_id, state in self.apps.items():
                active = [t for t in self._app_tasks(app_id) if t.state in ACTIVE_STATES]
                missing = int(state.app.get("instances", 0)) - len(active)
                if missing <= 0:
                    continue
                left = max(0.0, state.next_launch_mono - now)
                out.append(
                    {
                        "app": self._definition(state.app),
                        "count": missing,
                        "role": self.options.role,
                        "delay": {"timeLeftSeconds": math.ceil(left), "overdue": left <= 0},
                        "since": timestamp(state.since),
                        "processedOffersSummary": {
                            "processedOffersCount": 0,
                            "unusedOffersCount": 0,
                        },
                    }
                )
            return out

    def group_json(self, group_id: str, embed: Iterable[str]) -> Json:
        """GroupInfo for a group (apps without counts unless embedded)."""
        wanted = set(embed)
        app_embed = {
            e for e in wanted if e in ("tasks", "counts", "deployments", "lastTaskFailure")
        }
        with self.lock:
            ids = sorted(self.apps)
            groups = {"/"}
            for app_id in ids:
                parts = app_id.strip("/").split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    groups.add("/" + "/".join(parts[:i]))
            if group_id not in groups:
                raise ApiError(404, {"message": f"Group '{group_id}' does not exist"})
            return self._group_node(group_id, ids, groups, app_embed)

    def _group_node(self, group_id: str, ids: list[str], groups: set[str], embed: set[str]) -> Json:
        apps = []
        for app_id in ids:
            if appmodel.parent_group(app_id) == group_id:
                if embed:
                    info = self.app_info(app_id, embed)
                    if "counts" not in embed:
                        for key in (
                            "tasksStaged",
                            "tasksRunning",
                            "tasksHealthy",
                            "tasksUnhealthy",
                        ):
                            info.pop(key, None)
                    if "deployments" not in embed and "tasks" not in embed:
                        info.pop("deployments", None)
                    apps.append(info)
                else:
                    apps.append(self._definition(self.apps[app_id].app))
        children = sorted(g for g in groups if g != "/" and appmodel.parent_group(g) == group_id)
        return {
            "id": group_id,
            "apps": apps,
            "groups": [self._group_node(g, ids, groups, embed) for g in children],
            "pods": [],
            "dependencies": [],
            "version": self.root_version,
            "enforceRole": False,
        }

    # ------------------------------------------------------------------ changes

    # ------------------------------------------------------------------ snapshots for tests

    def snapshot_apps(self) -> list[Json]:
        with self.lock:
            return [self.app_info(a, ("tasks",), full=True) for a in self.apps]

    def snapshot_tasks(self, app_id: Optional[str] = None) -> list[Json]:
        with self.lock:
            return [
                self.task_json(t)
                for t in self.tasks.values()
                if app_id is None or t.app_id == app_id
            ]

    def process_pids(self) -> dict[str, int]:
        with self.lock:
            return {t.id: t.process.pid for t in self.tasks.values() if t.process is not None}
