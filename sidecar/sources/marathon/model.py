"""The Marathon source's in-memory view of Marathon, updated by events (pure).

:class:`MarathonState` holds app definitions (without tasks) and tasks by app id and task id. It is
built from a snapshot (``GET /v2/apps?embed=apps.tasks``) and advanced by Marathon events with
:meth:`MarathonState.apply_event`, which never raises: an event it cannot use asks for a re-read of
the apps it names (``fetch_apps``) or, when nothing usable is in it, a full snapshot (``resync``).

States are immutable: an update copies the one app it touches, and the outer mappings (app id ->
definition, app id -> tasks) are :class:`~sidecar.persistent_map.ShardedMap` objects whose
one-key update shares all but a shard of the old map (about ``sqrt(apps)`` entries copied, not
every app), so the state an event started from stays intact.
A fetched app that Marathon answers with 404 should be dropped with :meth:`without_app`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Optional

from marathon_bridge.services import port_specs
from sidecar.persistent_map import ShardedMap

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset(
    {
        "TASK_KILLED",
        "TASK_FAILED",
        "TASK_FINISHED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_DROPPED",
    }
)
ADDABLE_STATES = frozenset({"TASK_RUNNING", "TASK_STAGING", "TASK_STARTING"})
DEPLOYMENT_EVENTS = frozenset({"deployment_success", "deployment_failed", "group_change_success"})

TaskMap = Mapping[str, Mapping[str, Any]]
_NO_TASKS: TaskMap = MappingProxyType({})


@dataclass(frozen=True)
class EventOutcome:
    """The result of applying one event."""

    state: MarathonState
    changed: bool
    fetch_apps: frozenset[str] = frozenset()  # re-read these with GET /v2/apps/{id}
    resync: bool = False  # the event could not be used: take a full snapshot
    apps: frozenset[str] = frozenset()  # when changed: the apps whose definition or tasks did


@dataclass(frozen=True)
class MarathonState:
    apps: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    tasks: Mapping[str, TaskMap] = field(default_factory=dict)

    @classmethod
    def from_apps(cls, apps_with_tasks: Iterable[Any]) -> MarathonState:
        """From Marathon's app list with embedded tasks; entries without a string id are skipped."""
        apps: dict[str, Mapping[str, Any]] = {}
        tasks: dict[str, TaskMap] = {}
        for app in apps_with_tasks:
            split = _split_app(app)
            if split is not None:
                app_id, definition, app_tasks = split
                apps[app_id] = definition
                tasks[app_id] = app_tasks
        return cls(apps=ShardedMap(apps), tasks=ShardedMap(tasks))

    def with_app(self, app_with_tasks: Mapping[str, Any]) -> MarathonState:
        """This state with one app (definition and tasks) replaced, e.g. after GET /v2/apps/{id}."""
        split = _split_app(app_with_tasks)
        if split is None:
            return self
        app_id, definition, app_tasks = split
        return self._put(app_id, definition, app_tasks)

    def without_app(self, app_id: str) -> MarathonState:
        if app_id not in self.apps:
            return self
        apps = ShardedMap.of(self.apps).remove(app_id)
        tasks = ShardedMap.of(self.tasks).remove(app_id)
        return replace(self, apps=apps, tasks=tasks)

    def apps_with_tasks(self) -> list[dict[str, Any]]:
        """Back to the snapshot shape: app dicts with a ``tasks`` list, sorted by id."""
        out = []
        for app_id in sorted(self.apps):
            app = dict(self.apps[app_id])
            app_tasks = self.tasks.get(app_id, {})
            app["tasks"] = [dict(app_tasks[t]) for t in sorted(app_tasks)]
            out.append(app)
        return out

    def app_tasks(self, app_id: str) -> TaskMap:
        return self.tasks.get(app_id, _NO_TASKS)

    def apply_event(self, event_type: str, data: Any) -> EventOutcome:
        """Apply one Marathon event. Never raises; see the module docstring."""
        handler = _HANDLERS.get(event_type) if isinstance(event_type, str) else None
        if handler is None:
            return EventOutcome(self, False)
        if not isinstance(data, Mapping):
            return EventOutcome(self, False, resync=True)
        try:
            return handler(self, data)
        except Exception:  # a safety net: a hostile payload must never stop the follower
            log.exception("event could not be applied", extra={"event_type": event_type})
            return EventOutcome(self, False, resync=True)

    # --- helpers used by the handlers ----------------------------------------------------------

    def _put(self, app_id: str, definition: Mapping[str, Any], app_tasks: TaskMap) -> MarathonState:
        apps = ShardedMap.of(self.apps).set(app_id, definition)
        tasks = ShardedMap.of(self.tasks).set(app_id, app_tasks)
        return replace(self, apps=apps, tasks=tasks)

    def _put_tasks(self, app_id: str, app_tasks: TaskMap) -> MarathonState:
        return MarathonState(self.apps, ShardedMap.of(self.tasks).set(app_id, app_tasks))


# --- event handlers ---------------------------------------------------------------------------


def _status_update(state: MarathonState, data: Mapping[str, Any]) -> EventOutcome:
    app_id, task_id = _as_id(data.get("appId")), _as_id(data.get("taskId"))
    status = data.get("taskStatus")
    if app_id is None:
        return EventOutcome(state, False, resync=True)
    if task_id is None or not isinstance(status, str) or not status:
        return EventOutcome(state, False, fetch_apps=frozenset({app_id}))
    if app_id not in state.apps:
        if status in TERMINAL_STATES:
            return EventOutcome(state, False)
        return EventOutcome(state, False, fetch_apps=frozenset({app_id}))
    app_tasks = state.app_tasks(app_id)
    known = app_tasks.get(task_id)
    if status in TERMINAL_STATES:
        if known is None:
            return EventOutcome(state, False)
        remaining = {k: v for k, v in app_tasks.items() if k != task_id}
        return EventOutcome(state._put_tasks(app_id, remaining), True, apps=frozenset({app_id}))
    if known is None and status not in ADDABLE_STATES:
        return EventOutcome(state, False)
    task = dict(known) if known is not None else {"id": task_id, "appId": app_id}
    _update_task_from_event(task, status, data)
    if known is not None and task == known:
        return EventOutcome(state, False)
    updated = dict(app_tasks)
    updated[task_id] = task
    return EventOutcome(state._put_tasks(app_id, updated), True, apps=frozenset({app_id}))


def _update_task_from_event(task: dict[str, Any], status: str, data: Mapping[str, Any]) -> None:
    task["state"] = status
    host = data.get("host")
    if isinstance(host, str) and host:
        task["host"] = host
    ports = data.get("ports")
    if isinstance(ports, list) and all(_is_port(p) for p in ports):
        task["ports"] = list(ports)
    addresses = data.get("ipAddresses")
    if isinstance(addresses, list) and all(isinstance(a, Mapping) for a in addresses):
        task["ipAddresses"] = [dict(a) for a in addresses]
    for source, target in (("version", "version"), ("slaveId", "slaveId")):
        value = data.get(source)
        if isinstance(value, str) and value:
            task[target] = value
    timestamp = data.get("timestamp")
    if isinstance(timestamp, str):
        task.setdefault("stagedAt", timestamp)
        if status == "TASK_RUNNING":
            task.setdefault("startedAt", timestamp)
    task.setdefault("healthCheckResults", [])


def _health_status_changed(state: MarathonState, data: Mapping[str, Any]) -> EventOutcome:
    app_id = data.get("appId")
    instance_id = data.get("instanceId", data.get("taskId"))
    alive = data.get("alive")
    return _set_health(state, app_id, instance_id, alive if isinstance(alive, bool) else "bad")


def _instance_health_changed(state: MarathonState, data: Mapping[str, Any]) -> EventOutcome:
    healthy = data.get("healthy")
    value: Any = healthy if healthy is None or isinstance(healthy, bool) else "bad"
    return _set_health(state, data.get("runSpecId"), data.get("instanceId"), value)


def _set_health(state: MarathonState, raw_app: Any, raw_instance: Any, alive: Any) -> EventOutcome:
    """Set the results of the task(s) of one instance: ``[{"alive": b}]``; ``[]`` for ``None``."""
    app_id, instance_id = _as_id(raw_app), _as_id(raw_instance)
    if app_id is None:
        return EventOutcome(state, False, resync=True)
    fetch = frozenset({app_id})
    if instance_id is None or alive == "bad" or app_id not in state.apps:
        return EventOutcome(state, False, fetch_apps=fetch)
    app_tasks = state.app_tasks(app_id)
    prefix = instance_id + "."
    matches = [t for t in app_tasks if t == instance_id or t.startswith(prefix)]
    if not matches:
        return EventOutcome(state, False, fetch_apps=fetch)
    results = [] if alive is None else [{"alive": alive, "instanceId": instance_id}]
    updated = dict(app_tasks)
    changed = False
    for task_id in matches:
        task = dict(app_tasks[task_id])
        if _alive_flags(task.get("healthCheckResults")) != _alive_flags(results):
            task["healthCheckResults"] = results
            updated[task_id] = task
            changed = True
    # An event names no check: with several checks per app only a re-read gives every result.
    checks = state.apps[app_id].get("healthChecks")
    several = isinstance(checks, list) and len(checks) > 1
    new_state = state._put_tasks(app_id, updated) if changed else state
    return EventOutcome(
        new_state, changed, fetch_apps=fetch if several else frozenset(), apps=frozenset({app_id})
    )


def _api_post(state: MarathonState, data: Mapping[str, Any]) -> EventOutcome:
    definition = data.get("appDefinition")
    app_id = _as_id(definition.get("id")) if isinstance(definition, Mapping) else None
    if not isinstance(definition, Mapping) or app_id is None:
        return EventOutcome(state, False, resync=True)
    new_definition = {k: v for k, v in definition.items() if k != "tasks"}
    fetch = frozenset({app_id}) if _has_unassigned_port(new_definition) else frozenset()
    if state.apps.get(app_id) == new_definition:
        return EventOutcome(state, False, fetch_apps=fetch)
    new_state = state._put(app_id, new_definition, state.app_tasks(app_id))
    return EventOutcome(new_state, True, fetch_apps=fetch, apps=frozenset({app_id}))


def _has_unassigned_port(app: Mapping[str, Any]) -> bool:
    try:
        return any(spec.service_port == 0 for spec in port_specs(app))
    except Exception:  # a malformed definition: re-read it from Marathon
        return True


def _app_terminated(state: MarathonState, data: Mapping[str, Any]) -> EventOutcome:
    app_id = _as_id(data.get("appId"))
    if app_id is None:
        return EventOutcome(state, False, resync=True)
    if app_id not in state.apps:
        return EventOutcome(state, False)
    return EventOutcome(state.without_app(app_id), True, apps=frozenset({app_id}))


def _deployment(state: MarathonState, data: Mapping[str, Any]) -> EventOutcome:
    """Re-read the apps a finished deployment touched (its plan's steps), when a plan is given."""
    if "plan" not in data:
        if data.get("eventType") == "group_change_success" or "groupId" in data:
            return EventOutcome(state, False)  # carries no plan by design; deployments do
        return EventOutcome(state, False, resync=True)
    apps = _plan_apps(data.get("plan"))
    if apps is None:
        return EventOutcome(state, False, resync=True)
    return EventOutcome(state, False, fetch_apps=frozenset(apps))


def _plan_apps(plan: Any) -> Optional[set[str]]:
    steps = plan.get("steps") if isinstance(plan, Mapping) else None
    if not isinstance(steps, list):
        return None
    apps: set[str] = set()
    for step in steps:
        actions = step.get("actions") if isinstance(step, Mapping) else step
        for action in actions if isinstance(actions, list) else []:
            app_id = _as_id(action.get("app")) if isinstance(action, Mapping) else None
            if app_id is not None:
                apps.add(app_id)
    return apps


_HANDLERS: dict[str, Callable[[MarathonState, Mapping[str, Any]], EventOutcome]] = {
    "status_update_event": _status_update,
    "health_status_changed_event": _health_status_changed,
    "instance_health_changed_event": _instance_health_changed,
    "api_post_event": _api_post,
    "app_terminated_event": _app_terminated,
    "deployment_success": _deployment,
    "deployment_failed": _deployment,
    "group_change_success": _deployment,
}


# --- small helpers ----------------------------------------------------------------------------


def _split_app(app: Any) -> Optional[tuple[str, dict[str, Any], dict[str, Mapping[str, Any]]]]:
    if not isinstance(app, Mapping) or not _is_id(app.get("id")):
        return None
    definition = {k: v for k, v in app.items() if k != "tasks"}
    raw_tasks = app.get("tasks")
    tasks: dict[str, Mapping[str, Any]] = {}
    for task in raw_tasks if isinstance(raw_tasks, list) else []:
        if isinstance(task, Mapping) and _is_id(task.get("id")):
            tasks[task["id"]] = dict(task)
    return app["id"], definition, tasks


def _alive_flags(results: Any) -> list[Any]:
    """What selection looks at in ``healthCheckResults``: the ``alive`` of each result."""
    if not isinstance(results, list):
        return []
    return [r.get("alive") for r in results if isinstance(r, Mapping)]


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _as_id(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value != "" else None


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535
