"""The emulated cluster: apps, versions, deployments, tasks, service ports and events.

Everything here runs under one lock (:attr:`ClusterState.lock`). The HTTP layer calls the public
methods, which raise :class:`ApiError` for Marathon's error answers; a scheduler thread calls
:meth:`ClusterState.tick` every few milliseconds to move tasks through their lifecycle, apply
health, replace old tasks and finish deployments. Events go to a ``publish(type, payload)``
callback that never blocks (the event bus only queues them).
"""

from __future__ import annotations

import copy
import logging
import math
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from marathon_bridge.errors import Issue
from marathon_bridge.testing import appmodel
from marathon_bridge.testing.health import PROBED_PROTOCOLS, HealthResult, ProbeTarget
from marathon_bridge.testing.tasks import ProcessRunner, TaskProcess, port_is_free, task_environment
from marathon_bridge.testing.wire import play_numbers, timestamp

LOG = logging.getLogger(__name__)

Json = dict[str, Any]
Publish = Callable[[str, Json], None]

STAGING = "TASK_STAGING"
RUNNING = "TASK_RUNNING"
KILLING = "TASK_KILLING"
KILLED = "TASK_KILLED"
FAILED = "TASK_FAILED"
FINISHED = "TASK_FINISHED"
UNREACHABLE = "TASK_UNREACHABLE"
ACTIVE_STATES = (STAGING, RUNNING)
CONDITIONS = {
    STAGING: "Staging",
    RUNNING: "Running",
    KILLING: "Killing",
    KILLED: "Killed",
    FAILED: "Failed",
    FINISHED: "Finished",
    UNREACHABLE: "Unreachable",
}
LOCKED_MESSAGE = (
    "App is locked by one or more deployments. Override with the option '?force=true'. "
    "View details at '/v2/deployments/<DEPLOYMENT_ID>'."
)
MAX_VERSIONS = 50


class PortsExhausted(Exception):
    """The emulated agent has no free host port left."""


class ApiError(Exception):
    """An error answer: HTTP status and Marathon's JSON body."""

    def __init__(
        self, status: int, body: Json, headers: Optional[Mapping[str, str]] = None
    ) -> None:
        super().__init__(f"{status} {body.get('message', '')}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def not_found_app(app_id: str) -> ApiError:
    return ApiError(404, {"message": f"App '{app_id}' does not exist"})


def issues_body(issues: Sequence[Issue]) -> ApiError:
    """422 for validation issues: type issues win ("Invalid JSON"), else "Object is not valid"."""
    type_issues = [i for i in issues if i.kind == "type"]
    chosen = type_issues or list(issues)
    grouped: dict[str, list[str]] = {}
    for issue in chosen:
        grouped.setdefault(issue.path or "/", []).append(issue.message)
    details = [{"path": path, "errors": errors} for path, errors in grouped.items()]
    message = "Invalid JSON" if type_issues else "Object is not valid"
    return ApiError(422, {"message": message, "details": details})


@dataclass(frozen=True)
class Agent:
    """An emulated Mesos agent: the host name tasks report, its IP, its id."""

    host: str
    ip: str
    slave_id: str


@dataclass
class Options:
    """Behaviour knobs of the emulated cluster (see MarathonEmulator for their meaning)."""

    agent_host: str = "127.0.0.1"
    agent_ip: str = "127.0.0.1"
    slave_id: str = "emulated-agent-S0"
    task_start_delay: float = 0.05
    health_delay: float = 0.05
    health_grace: float = 1.0
    kill_grace: float = 0.2
    kill_timeout: float = 3.0
    deployment_delay: float = 0.0
    run_tasks: bool = False
    host_port_min: int = 31000
    host_port_max: int = 32000
    service_port_min: int = 10000
    service_port_max: int = 20000
    backoff_scale: float = 0.05
    keep_unknown_fields: bool = False
    kill_unhealthy: bool = False
    role: str = "*"
    agents: tuple[Agent, ...] = ()

    def agent_list(self) -> tuple[Agent, ...]:
        """The configured agents, or the single default one."""
        return self.agents or (Agent(self.agent_host, self.agent_ip, self.slave_id),)


@dataclass
class Task:
    """One task (one instance, incarnation 1)."""

    id: str
    instance_id: str
    app_id: str
    version: str
    config_version: str
    ports: list[int]
    staged_at: float
    staged_mono: float
    checks: list[Json]
    agent: Agent
    state: str = STAGING
    started_at: Optional[float] = None
    started_mono: Optional[float] = None
    killing_since: Optional[float] = None
    health: list[HealthResult] = field(default_factory=list)
    health_forced: bool = False
    healthy_reported: Optional[bool] = None
    process: Optional[TaskProcess] = None


@dataclass
class AppState:
    """An app with its history."""

    app: Json
    versions: dict[str, Json]
    last_failure: Optional[Json] = None
    launch_failures: int = 0
    next_launch_mono: float = 0.0
    since: float = field(default_factory=time.time)


@dataclass
class Deployment:
    """A deployment plan in progress."""

    id: str
    version: str
    steps: list[list[Json]]
    original: dict[str, Optional[Json]]
    started_mono: float
    current_step: int = 1

    @property
    def affected_apps(self) -> list[str]:
        seen: list[str] = []
        for step in self.steps:
            for action in step:
                if action["app"] not in seen:
                    seen.append(action["app"])
        return seen

    def plan_json(self) -> Json:
        return {
            "id": self.id,
            "steps": [{"actions": list(s)} for s in self.steps],
            "version": self.version,
        }


class ClusterState:
    """The emulated Marathon: call every method with no lock held; each takes :attr:`lock`."""

    def __init__(self, options: Options, publish: Publish, lock: Any) -> None:
        self.options = options
        self.lock = lock
        self._publish = publish
        self.apps: dict[str, AppState] = {}
        self.tasks: dict[str, Task] = {}
        self.deployments: dict[str, Deployment] = {}
        self.root_version = timestamp()
        self.health_blank_until = 0.0
        self._blank_active = False
        self._by_app: dict[str, dict[str, Task]] = {}
        self._watch: set[str] = set()
        self._dirty: set[str] = set()
        self._next_sweep = 0.0
        self._host_ports_used: set[int] = set()
        # a random start: emulators running side by side rarely hand out the same host port
        span = options.host_port_max - options.host_port_min + 1
        self._host_port_cursor = options.host_port_min + secrets.randbelow(max(1, span))
        self._agent_cursor = 0
        self.runner: Optional[ProcessRunner] = ProcessRunner() if options.run_tasks else None

    # ------------------------------------------------------------------ events

    def _emit(self, event_type: str, payload: Json) -> None:
        payload = dict(payload)
        payload.setdefault("eventType", event_type)
        payload.setdefault("timestamp", timestamp())
        self._publish(event_type, payload)

    def _status_event(self, task: Task, status: str, message: str = "") -> None:
        running = status in (RUNNING, KILLING, UNREACHABLE)
        self._emit(
            "status_update_event",
            {
                "slaveId": task.agent.slave_id,
                "taskId": task.id,
                "taskStatus": status,
                "message": message,
                "appId": task.app_id,
                "host": task.agent.host,
                "ipAddresses": self._ip_addresses(task) if running else [],
                "ports": list(task.ports),
                "version": task.version,
                "eventType": "status_update_event",
                "timestamp": timestamp(),
            },
        )
        self._emit(
            "instance_changed_event",
            {
                "instanceId": task.instance_id,
                "condition": CONDITIONS.get(status, "Unknown"),
                "runSpecId": task.app_id,
                "agentId": task.agent.slave_id,
                "host": task.agent.host,
                "runSpecVersion": task.version,
                "timestamp": timestamp(),
                "eventType": "instance_changed_event",
            },
        )

    def _plan_event(self, event_type: str, dep: Deployment, reason: Optional[str] = None) -> None:
        if event_type in ("deployment_info", "deployment_step_success"):
            step = dep.steps[dep.current_step - 1] if dep.steps else []
            payload: Json = {"plan": dep.plan_json(), "currentStep": {"actions": list(step)}}
        else:
            payload = {"id": dep.id, "plan": dep.plan_json()}
        payload["eventType"] = event_type
        payload["timestamp"] = timestamp()
        if reason is not None:
            payload["reason"] = reason
        self._emit(event_type, payload)

    @staticmethod
    def _ip_addresses(task: Task) -> list[Json]:
        return [{"ipAddress": task.agent.ip, "protocol": "IPv4"}]

    # ------------------------------------------------------------------ rendering

    def _health_visible(self, now: float) -> bool:
        return now >= self.health_blank_until

    def task_health_json(self, task: Task, now: float) -> list[Json]:
        if not self._health_visible(now):
            return []
        return [
            h.to_json(task.instance_id) for h in task.health if h.last_success or h.last_failure
        ]

    def task_json(self, task: Task, service_ports: Optional[list[int]] = None) -> Json:
        """Marathon 1.10 task JSON (``servicePorts`` [] unless given)."""
        now = time.monotonic()
        out: Json = {
            "appId": task.app_id,
            "healthCheckResults": self.task_health_json(task, now),
            "host": task.agent.host,
            "id": task.id,
            "ipAddresses": self._ip_addresses(task)
            if task.state in (RUNNING, KILLING, UNREACHABLE)
            else [],
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
        out["role"] = self.options.role
        return out

    def _is_healthy(self, task: Task, now: float) -> Optional[bool]:
        """True/False when every check has a result; None without checks or results."""
        if not task.checks:
            return None
        if not self._health_visible(now):
            return None
        results = [h for h in task.health if h.last_success or h.last_failure]
        if not results:
            return None
        if len(results) < len(task.checks):
            return False if any(not h.alive for h in results) else None
        return all(h.alive for h in results)

    def _app_tasks(self, app_id: str) -> list[Task]:
        return list(self._by_app.get(app_id, {}).values())

    def _touch(self, app_id: str, task_id: Optional[str] = None) -> None:
        """Mark an app (and a task) for attention on the next tick."""
        self._dirty.add(app_id)
        if task_id is not None:
            self._watch.add(task_id)

    def _counts(self, app_id: str, now: float) -> Json:
        staged = running = healthy = unhealthy = 0
        for task in self._app_tasks(app_id):
            if task.state == STAGING:
                staged += 1
            elif task.state == RUNNING:
                running += 1
                verdict = self._is_healthy(task, now)
                if verdict is True:
                    healthy += 1
                elif verdict is False:
                    unhealthy += 1
        return {
            "tasksStaged": staged,
            "tasksRunning": running,
            "tasksHealthy": healthy,
            "tasksUnhealthy": unhealthy,
        }

    def _deployment_refs(self, app_id: str) -> list[Json]:
        return [{"id": d.id} for d in self.deployments.values() if app_id in d.affected_apps]

    def _definition(self, app: Json) -> Json:
        return appmodel.order_app(app, self.options.keep_unknown_fields)

    def app_info(self, app_id: str, embed: Iterable[str], full: bool = False) -> Json:
        """AppInfo: the definition plus counts, deployments and the embeds asked for."""
        state = self.apps[app_id]
        now = time.monotonic()
        wanted = set(embed)
        out = self._definition(state.app)
        out.update(self._counts(app_id, now))
        out["deployments"] = self._deployment_refs(app_id)
        if "readiness" in wanted:
            out["readinessCheckResults"] = []
        if full or "tasks" in wanted or "failures" in wanted:
            out["tasks"] = [self.task_json(t) for t in self._app_tasks(app_id)]
        if (full or "lastTaskFailure" in wanted or "failures" in wanted) and state.last_failure:
            out["lastTaskFailure"] = dict(state.last_failure)
        if "taskStats" in wanted:
            out["tasksStats"] = self._task_stats(app_id, now)
        return out

    def _task_stats(self, app_id: str, now: float) -> Json:
        tasks = self._app_tasks(app_id)
        if not tasks:
            return {}
        counts = self._counts(app_id, now)
        stats = {
            "counts": {
                "staged": counts["tasksStaged"],
                "running": counts["tasksRunning"],
                "healthy": counts["tasksHealthy"],
                "unhealthy": counts["tasksUnhealthy"],
            }
        }
        lifetimes = sorted(now - t.started_mono for t in tasks if t.started_mono is not None)
        if lifetimes:
            mid = len(lifetimes) // 2
            median = (
                lifetimes[mid] if len(lifetimes) % 2 else (lifetimes[mid - 1] + lifetimes[mid]) / 2
            )
            stats["lifeTime"] = {
                "averageSeconds": sum(lifetimes) / len(lifetimes),
                "medianSeconds": median,
            }
        return {"totalSummary": {"stats": stats}}

    # ------------------------------------------------------------------ queries

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
            out = []
            for dep in self.deployments.values():
                step = dep.steps[dep.current_step - 1] if dep.steps else []
                out.append(
                    {
                        "id": dep.id,
                        "steps": [{"actions": list(s)} for s in dep.steps],
                        "version": dep.version,
                        "affectedApps": dep.affected_apps,
                        "affectedPods": [],
                        "currentActions": [dict(a, readinessCheckResults=[]) for a in step],
                        "currentStep": dep.current_step if dep.steps else 0,
                        "totalSteps": len(dep.steps),
                    }
                )
            return out

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

    def reset_delay(self, app_id: str) -> None:
        with self.lock:
            state = self.apps.get(app_id)
            if state is None:
                raise ApiError(404, {"message": f"Application {app_id} not found in tasks queue."})
            state.launch_failures = 0
            state.next_launch_mono = 0.0

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

    def _prepare(self, body: Any) -> Json:
        """Validate an app body and normalize it (422 on issues)."""
        if not isinstance(body, dict):
            raise ApiError(
                422,
                {
                    "message": "Invalid JSON",
                    "details": [{"path": "/", "errors": ["error.expected.jsobject"]}],
                },
            )
        cleaned = {k: v for k, v in body.items() if k not in appmodel.OWNED_KEYS}
        issues = appmodel.validate(cleaned)
        if issues:
            raise issues_body(issues)
        return appmodel.normalize(cleaned)

    def _store(
        self, app: Json, previous: Optional[Json], version: str, config_changed: bool
    ) -> Json:
        """Assign service ports, stamp version/versionInfo, remember the version."""
        used = self._used_service_ports([app["id"]])
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
            self._emit(
                "api_post_event",
                {
                    "clientIp": client_ip,
                    "uri": uri,
                    "appDefinition": play_numbers(posted),
                    "eventType": "api_post_event",
                    "timestamp": timestamp(),
                },
            )
            body_out = dict(posted)
            body_out.update(
                {"tasksStaged": 0, "tasksRunning": 0, "tasksHealthy": 0, "tasksUnhealthy": 0}
            )
            body_out["deployments"] = [{"id": dep.id}]
            return body_out, dep.id

    def _merge_update(
        self, app_id: str, body: Any, partial: bool, existing: Optional[AppState]
    ) -> Json:
        """The full definition a PUT/PATCH asks for (rollback included), normalized."""
        if not isinstance(body, dict):
            raise ApiError(
                422,
                {
                    "message": "Invalid JSON",
                    "details": [{"path": "/", "errors": ["error.expected.jsobject"]}],
                },
            )
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
                self._emit(
                    "api_post_event",
                    {
                        "clientIp": client_ip,
                        "uri": uri,
                        "appDefinition": play_numbers(self._definition(self.apps[app_id].app)),
                        "eventType": "api_post_event",
                        "timestamp": timestamp(),
                    },
                )
            return created, version, dep.id

    def update_apps(
        self, body: Any, *, force: bool, partial: bool, must_exist: bool
    ) -> tuple[str, str]:
        """PUT/PATCH /v2/apps with a list: one deployment for all."""
        if not isinstance(body, list):
            raise ApiError(
                422,
                {
                    "message": "Invalid JSON",
                    "details": [{"path": "/", "errors": ["error.expected.jsarray"]}],
                },
            )
        prepared: list[Json] = []
        for index, item in enumerate(body):
            if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                raise ApiError(
                    422,
                    {
                        "message": "Invalid JSON",
                        "details": [{"path": f"/({index})/id", "errors": ["error.path.missing"]}],
                    },
                )
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

    def delete_app(self, app_id: str, force: bool) -> tuple[str, str]:
        """DELETE /v2/apps/{id}: the app disappears now; its tasks are killed."""
        with self.lock:
            state = self.apps.get(app_id)
            if state is None:
                raise not_found_app(app_id)
            self._check_lock([app_id], force)
            version = timestamp()
            original = copy.deepcopy(state.app)
            del self.apps[app_id]
            self.root_version = version
            dep = self._new_deployment(
                [[{"action": "StopApplication", "app": app_id}]], {app_id: original}, version
            )
            for task in self._app_tasks(app_id):
                self._kill(task)
            return version, dep.id

    def restart_app(self, app_id: str, force: bool) -> tuple[str, str]:
        """POST /v2/apps/{id}/restart: a new config version, every task replaced."""
        with self.lock:
            state = self.apps.get(app_id)
            if state is None:
                raise not_found_app(app_id)
            self._check_lock([app_id], force)
            version = timestamp()
            original = copy.deepcopy(state.app)
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
    ) -> tuple[Optional[list[Json]], Optional[tuple[str, str]]]:
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
    ) -> tuple[Optional[list[Json]], Optional[tuple[str, str]]]:
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
    ) -> tuple[Optional[list[Json]], Optional[tuple[str, str]]]:
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

    def cancel_deployment(self, dep_id: str, force: bool) -> Optional[tuple[str, str]]:
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

    # ------------------------------------------------------------------ test hooks

    def set_task_health(self, task_id: str, alive: Optional[bool]) -> None:
        """Force a task's health: True/False on every check, None = no result (stays blank)."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                raise KeyError(task_id)
            task.health_forced = True
            now = time.monotonic()
            if alive is None:
                task.health = [HealthResult() for _ in task.checks]
                self._health_changed(task, now, flips=[])
                return
            if not task.health:
                task.health = [HealthResult() for _ in task.checks]
            flips = [i for i, h in enumerate(task.health) if h.record(alive, time.time(), "forced")]
            self._health_changed(task, now, flips)

    def fail_task(self, task_id: str, message: str = "Command exited with status 1") -> None:
        """The task fails (TASK_FAILED); Marathon relaunches it."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                raise KeyError(task_id)
            if task.process is not None:
                task.process.kill()
            self._terminal(task, FAILED, message)

    def kill_task(self, task_id: str) -> None:
        """Kill a task as ``DELETE /v2/apps/{id}/tasks/{taskId}`` does (it gets relaunched)."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                raise KeyError(task_id)
            self._kill(task)

    def set_task_reachable(self, task_id: str, reachable: bool) -> None:
        """Its agent drops off (TASK_UNREACHABLE; a replacement starts) or comes back (RUNNING)."""
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                raise KeyError(task_id)
            if not reachable and task.state == RUNNING:
                task.state = UNREACHABLE
                self._status_event(task, UNREACHABLE, "Agent is unreachable")
            elif reachable and task.state == UNREACHABLE:
                task.state = RUNNING
                self._status_event(task, RUNNING)
            self._touch(task.app_id, task.id)

    def blank_health(self, seconds: float) -> None:
        """Every healthCheckResults is [] for ``seconds`` (a new leader starts empty)."""
        with self.lock:
            self.health_blank_until = time.monotonic() + seconds
            self._blank_active = True
            for task in self.tasks.values():
                task.healthy_reported = None

    # ------------------------------------------------------------------ lifecycle

    def _next_agent(self) -> Agent:
        agents = self.options.agent_list()
        agent = agents[self._agent_cursor % len(agents)]
        self._agent_cursor += 1
        return agent

    def _allocate_host_port(self) -> int:
        low, high = self.options.host_port_min, self.options.host_port_max
        size = high - low + 1
        for _ in range(size):
            port = self._host_port_cursor
            self._host_port_cursor = low if port >= high else port + 1
            if port in self._host_ports_used:
                continue
            if self.options.run_tasks and not port_is_free(port):
                continue
            self._host_ports_used.add(port)
            return port
        raise PortsExhausted(f"no free host port in {low}-{high}")

    def _launch(self, app: Json, now: float) -> bool:
        """Start one task of ``app``; False when no host port is left (it stays queued)."""
        app_id = app["id"]
        ports: list[int] = []
        for requested in appmodel.host_port_requests(app):
            if requested:
                ports.append(requested)
                continue
            try:
                ports.append(self._allocate_host_port())
            except PortsExhausted:
                for port in ports:
                    self._host_ports_used.discard(port)
                return False
        uid = str(uuid.uuid1())
        instance_id = f"{appmodel.safe_path(app_id)}.instance-{uid}"
        task = Task(
            id=f"{instance_id}._app.1",
            instance_id=instance_id,
            app_id=app_id,
            version=app["version"],
            config_version=app["versionInfo"]["lastConfigChangeAt"],
            ports=ports,
            staged_at=time.time(),
            staged_mono=now,
            checks=[dict(c) for c in app.get("healthChecks") or []],
            agent=self._next_agent(),
        )
        self.tasks[task.id] = task
        self._by_app.setdefault(app_id, {})[task.id] = task
        self._touch(app_id, task.id)
        if self.runner is not None and app.get("cmd"):
            env = task_environment(task.id, app_id, task.version, task.agent.host, ports)
            for key, value in (app.get("env") or {}).items():
                if isinstance(value, str):
                    env.setdefault(key, value)
            try:
                task.process = self.runner.start(task.id, str(app["cmd"]), env)
            except (OSError, RuntimeError) as exc:
                LOG.warning(
                    "task process did not start", extra={"task_id": task.id, "error": str(exc)}
                )
        self._status_event(task, STAGING)
        return True

    def _kill(self, task: Task) -> None:
        if task.state in (KILLING, KILLED, FAILED, FINISHED):
            return
        if task.state == UNREACHABLE and task.process is None:
            self._terminal(task, KILLED, "Unreachable task killed")  # nothing to wait for
            return
        task.state = KILLING
        task.killing_since = time.monotonic()
        self._touch(task.app_id, task.id)
        self._status_event(task, KILLING)

    def _terminal(self, task: Task, status: str, message: str = "") -> None:
        """The task ends: event, bookkeeping, removal, relaunch backoff on failure."""
        task.state = status
        self._status_event(task, status, message)
        self.tasks.pop(task.id, None)
        siblings = self._by_app.get(task.app_id, {})
        siblings.pop(task.id, None)
        if not siblings:
            self._by_app.pop(task.app_id, None)
        self._watch.discard(task.id)
        self._dirty.add(task.app_id)
        for port in task.ports:
            self._host_ports_used.discard(port)
        if self.runner is not None:
            self.runner.forget(task.id)
        state = self.apps.get(task.app_id)
        if state is not None and status in (FAILED, FINISHED):
            if status == FAILED:
                state.last_failure = {
                    "appId": task.app_id,
                    "host": task.agent.host,
                    "message": message,
                    "state": status,
                    "taskId": task.id,
                    "timestamp": timestamp(),
                    "version": task.version,
                    "slaveId": task.agent.slave_id,
                }
            state.launch_failures += 1
            app = state.app
            delay = float(app.get("backoffSeconds", 1)) * float(app.get("backoffFactor", 1.15)) ** (
                state.launch_failures - 1
            )
            delay = min(delay, float(app.get("maxLaunchDelaySeconds", 300)))
            state.next_launch_mono = time.monotonic() + delay * self.options.backoff_scale

    def tick(self) -> None:
        """Advance the tasks and apps that need it, and every deployment, one step."""
        with self.lock:
            now = time.monotonic()
            self._tick_health_blank(now)
            if now >= self._next_sweep:
                self._next_sweep = now + 5.0
                self._watch.update(self.tasks)
                self._dirty.update(self.apps)
                self._dirty.update(self._by_app)
            for task_id in list(self._watch):
                task = self.tasks.get(task_id)
                if task is not None:
                    self._tick_task(task, now)
                if task is None or self._stable(task):
                    self._watch.discard(task_id)
            for app_id in list(self._dirty):
                if app_id in self.apps:
                    settled = self._reconcile(app_id, now)
                else:
                    for task in self._app_tasks(app_id):
                        self._kill(task)
                    settled = not self._app_tasks(app_id)
                if settled:
                    self._dirty.discard(app_id)
            for dep in list(self.deployments.values()):
                self._tick_deployment(dep, now)

    def _stable(self, task: Task) -> bool:
        """True when nothing will happen to the task without an outside event."""
        if task.state == UNREACHABLE:
            return True
        if task.state != RUNNING or task.process is not None:
            return False
        if not task.checks or task.health_forced:
            return True
        return all(
            self._probed(c) or h.last_success or h.last_failure
            for c, h in zip(task.checks, task.health)
        )

    def _tick_health_blank(self, now: float) -> None:
        if self._blank_active and now >= self.health_blank_until:
            self._blank_active = False
            for task in self.tasks.values():
                if task.state == RUNNING:
                    for h in task.health:
                        if h.last_success or h.last_failure:
                            self._health_event(task, h.alive)
                    self._health_changed(task, now, flips=[])

    def _tick_task(self, task: Task, now: float) -> None:
        proc = task.process
        exit_code = proc.poll() if proc is not None else None
        if task.state == STAGING:
            if exit_code is not None:
                self._process_ended(task, exit_code)
            elif now - task.staged_mono >= self.options.task_start_delay:
                task.state = RUNNING
                task.started_at = time.time()
                task.started_mono = now
                if not task.health_forced:
                    task.health = [HealthResult() for _ in task.checks]
                self._status_event(task, RUNNING)
        elif task.state == RUNNING:
            if exit_code is not None:
                self._process_ended(task, exit_code)
            else:
                self._simulate_health(task, now)
        elif task.state == KILLING:
            self._tick_killing(task, now, proc, exit_code)

    def _tick_killing(
        self, task: Task, now: float, proc: Optional[TaskProcess], exit_code: Optional[int]
    ) -> None:
        since = task.killing_since or now
        if proc is None:
            if now - since >= self.options.kill_grace:
                self._terminal(task, KILLED)
            return
        if exit_code is not None:
            self._terminal(task, KILLED, f"Command terminated with signal {abs(exit_code)}")
            return
        if now - since >= self.options.kill_grace:
            proc.terminate()
            if (
                proc.term_sent_at is not None
                and now - proc.term_sent_at >= self.options.kill_timeout
            ):
                proc.kill()

    def _process_ended(self, task: Task, exit_code: int) -> None:
        if exit_code == 0:
            self._terminal(task, FINISHED, "Command exited with status 0")
        else:
            self._terminal(task, FAILED, f"Command exited with status {exit_code}")

    def _probed(self, check: Mapping[str, Any]) -> bool:
        return self.options.run_tasks and check.get("protocol", "HTTP") in PROBED_PROTOCOLS

    def _simulate_health(self, task: Task, now: float) -> None:
        if task.health_forced or not task.checks or task.started_mono is None:
            return
        if now - task.started_mono < self.options.health_delay:
            return
        flips = []
        for index, check in enumerate(task.checks):
            result = task.health[index]
            if self._probed(check) or result.last_success or result.last_failure:
                continue
            if result.record(True, time.time()):
                flips.append(index)
        if flips:
            self._health_changed(task, now, flips)

    def _health_event(self, task: Task, alive: bool) -> None:
        self._emit(
            "health_status_changed_event",
            {
                "appId": task.app_id,
                "instanceId": task.instance_id,
                "version": task.version,
                "alive": alive,
                "eventType": "health_status_changed_event",
                "timestamp": timestamp(),
            },
        )

    def _health_changed(self, task: Task, now: float, flips: list[int]) -> None:
        self._touch(task.app_id)
        visible = self._health_visible(now)
        if visible:
            for index in flips:
                self._health_event(task, task.health[index].alive)
        healthy = self._is_healthy(task, now)
        if visible and healthy != task.healthy_reported:
            task.healthy_reported = healthy
            self._emit(
                "instance_health_changed_event",
                {
                    "instanceId": task.instance_id,
                    "runSpecId": task.app_id,
                    "healthy": healthy,
                    "runSpecVersion": task.version,
                    "timestamp": timestamp(),
                    "eventType": "instance_health_changed_event",
                },
            )

    def probe_targets(self) -> list[ProbeTarget]:
        """Checks the health prober should run now (running tasks, not forced)."""
        out = []
        with self.lock:
            for task in self.tasks.values():
                if task.state != RUNNING or task.health_forced:
                    continue
                state = self.apps.get(task.app_id)
                if state is None:
                    continue
                for index, check in enumerate(task.checks):
                    if not self._probed(check):
                        continue
                    port = appmodel.health_check_port(state.app, check, task.ports)
                    out.append(
                        ProbeTarget(
                            task_id=task.id,
                            index=index,
                            protocol=str(check.get("protocol", "HTTP")),
                            host=task.agent.ip,
                            port=port,
                            path=str(check.get("path", "/")),
                            timeout=min(float(check.get("timeoutSeconds", 20)), 2.0),
                        )
                    )
        return out

    def record_probe(self, target: ProbeTarget, ok: bool, cause: str) -> None:
        """One real probe outcome for a task's check."""
        with self.lock:
            task = self.tasks.get(target.task_id)
            if task is None or task.state != RUNNING or task.health_forced:
                return
            if target.index >= len(task.health):
                return
            now = time.monotonic()
            result = task.health[target.index]
            in_grace = (
                not result.last_success
                and task.started_mono is not None
                and now - task.started_mono < self.options.health_grace
            )
            if not ok and in_grace:
                return
            was_failing = result.consecutive_failures > 0
            flipped = result.record(ok, time.time(), cause)
            if not ok and not was_failing:
                self._emit(
                    "failed_health_check_event",
                    {
                        "appId": task.app_id,
                        "eventType": "failed_health_check_event",
                        "healthCheck": play_numbers(task.checks[target.index]),
                        "taskId": task.instance_id,
                        "timestamp": timestamp(),
                    },
                )
            self._health_changed(task, now, [target.index] if flipped else [])
            if not ok:
                self._maybe_kill_unhealthy(task, task.checks[target.index], result, cause)

    def _maybe_kill_unhealthy(
        self, task: Task, check: Mapping[str, Any], result: HealthResult, cause: str
    ) -> None:
        """Marathon kills a task after maxConsecutiveFailures failed Marathon-level probes."""
        limit = int(check.get("maxConsecutiveFailures", 3))
        if not self.options.kill_unhealthy or limit <= 0 or result.consecutive_failures < limit:
            return
        if task.state != RUNNING or check.get("protocol", "HTTP") not in ("HTTP", "HTTPS", "TCP"):
            return
        self._emit(
            "unhealthy_instance_kill_event",
            {
                "appId": task.app_id,
                "taskId": task.id,
                "instanceId": task.instance_id,
                "version": task.version,
                "reason": cause,
                "host": task.agent.host,
                "slaveId": task.agent.slave_id,
                "eventType": "unhealthy_instance_kill_event",
                "timestamp": timestamp(),
            },
        )
        self._kill(task)

    def _ready(self, task: Task, now: float) -> bool:
        if task.state != RUNNING:
            return False
        if not task.checks:
            return True
        return self._is_healthy(task, now) is True

    def _reconcile(self, app_id: str, now: float) -> bool:
        """Move an app's tasks towards its definition (launch, replace, scale down)."""
        state = self.apps[app_id]
        app = state.app
        target = int(app.get("instances", 0))
        config = app["versionInfo"]["lastConfigChangeAt"]
        active = [t for t in self._app_tasks(app_id) if t.state in ACTIVE_STATES]
        new = [t for t in active if t.config_version == config]
        old = [t for t in active if t.config_version != config]
        strategy = app.get("upgradeStrategy") or {}
        max_over = float(strategy.get("maximumOverCapacity", 1.0))
        min_health = float(strategy.get("minimumHealthCapacity", 1.0))
        if len(new) > target:
            oldest_first = app.get("killSelection") == "OLDEST_FIRST"
            ranked = sorted(new, key=lambda t: t.staged_mono, reverse=not oldest_first)
            for task in ranked[: len(new) - target]:
                self._kill(task)
            new = ranked[len(new) - target :]
        launched = 0
        if len(new) < target and now >= state.next_launch_mono:
            max_total = target + math.floor(max_over * target)
            room = max(0, max_total - len(active)) if old else target - len(new)
            launched = min(target - len(new), room)
            for index in range(launched):
                if not self._launch(app, now):
                    launched = index
                    break
        if not old:
            return len(new) + launched == target and all(t.state == RUNNING for t in new)
        ready_new = sum(1 for t in new if self._ready(t, now))
        ready_old = [t for t in old if self._ready(t, now)]
        for task in old:
            if task not in ready_old:
                self._kill(task)
        min_ready = appmodel.ceil_fraction(min_health, target)
        killed = False
        while ready_old and ready_new + len(ready_old) - 1 >= min_ready:
            self._kill(ready_old.pop())
            killed = True
        stuck = len(new) < target and launched == 0 and not killed
        if stuck and ready_old and now >= state.next_launch_mono:
            self._kill(ready_old.pop())
        return False

    def _action_done(self, action: Json, dep: Deployment, now: float) -> bool:
        app_id = action["app"]
        kind = action["action"]
        if kind == "StartApplication":
            return True
        if now - dep.started_mono < self.options.deployment_delay:
            return False
        if kind == "StopApplication":
            return app_id not in self.apps and not self._app_tasks(app_id)
        state = self.apps.get(app_id)
        if state is None:
            return False
        config = state.app["versionInfo"]["lastConfigChangeAt"]
        tasks = [t for t in self._app_tasks(app_id) if t.state != UNREACHABLE]
        if any(t.config_version != config for t in tasks):
            return False
        if len(tasks) != int(state.app.get("instances", 0)):
            return False
        return all(self._ready(t, now) for t in tasks)

    def _tick_deployment(self, dep: Deployment, now: float) -> None:
        while dep.id in self.deployments:
            if not dep.steps:
                self.deployments.pop(dep.id, None)
                self._finish(dep)
                return
            step = dep.steps[dep.current_step - 1]
            if not all(self._action_done(a, dep, now) for a in step):
                return
            self._plan_event("deployment_step_success", dep)
            if dep.current_step >= len(dep.steps):
                self.deployments.pop(dep.id, None)
                self._finish(dep)
                return
            dep.current_step += 1
            self._plan_event("deployment_info", dep)

    def _finish(self, dep: Deployment) -> None:
        self._plan_event("deployment_success", dep)
        groups = []
        for app_id in dep.affected_apps:
            group = appmodel.parent_group(app_id)
            if group not in groups:
                groups.append(group)
            if any(
                a["action"] == "StopApplication" and a["app"] == app_id
                for s in dep.steps
                for a in s
            ):
                self._emit("app_terminated_event", {"appId": app_id})
        for group in groups or ["/"]:
            self._emit(
                "group_change_success",
                {"groupId": group, "version": dep.version, "eventType": "group_change_success"},
            )

    def shutdown(self) -> None:
        """Stop every task process."""
        if self.runner is not None:
            self.runner.stop_all(grace=max(self.options.kill_timeout, 0.5))

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
