"""The emulated cluster's shared core: its records, events, and a task's start and end.

:class:`StateCore` holds the apps, tasks and deployments and everything more than one part of
the emulator needs: publishing events, rendering tasks and apps, launching a task, killing it and
recording its end (with Marathon's relaunch backoff). The parts built on it are
:mod:`.queries` (reads), :mod:`.changes` (API writes), :mod:`.scheduler` (the tick) and
:mod:`.task_hooks` (health probes and test hooks); :class:`~.EmulatorState` combines them.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

from marathon_bridge.testing import appmodel
from marathon_bridge.testing.health import PROBED_PROTOCOLS
from marathon_bridge.testing.state import views
from marathon_bridge.testing.state.records import (
    CONDITIONS,
    FAILED,
    FINISHED,
    KILLED,
    KILLING,
    STAGING,
    UNREACHABLE,
    Agent,
    AppState,
    Deployment,
    Json,
    Options,
    PortsExhausted,
    Task,
)
from marathon_bridge.testing.tasks import ProcessRunner, port_is_free, task_environment
from marathon_bridge.testing.wire import timestamp

LOG = logging.getLogger(__name__)

Publish = Callable[[str, Json], None]


class StateCore:
    """The emulated Marathon's data: call every public method with no lock held; each takes
    :attr:`lock`. Methods starting with ``_`` expect the lock held."""

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
        self._emit(
            "status_update_event",
            {
                "slaveId": task.agent.slave_id,
                "taskId": task.id,
                "taskStatus": status,
                "message": message,
                "appId": task.app_id,
                "host": task.agent.host,
                "ipAddresses": views.ip_addresses(task) if views.has_address(status) else [],
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
        self._emit(event_type, views.plan_event(event_type, dep, reason))

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
        """Events for checks that flipped, and for the task's verdict when it changed."""
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

    # ------------------------------------------------------------------ rendering

    def _health_visible(self, now: float) -> bool:
        return now >= self.health_blank_until

    def _is_healthy(self, task: Task, now: float) -> Optional[bool]:
        return views.is_healthy(task, self._health_visible(now))

    def _probed(self, check: Mapping[str, Any]) -> bool:
        """A check the emulator really probes (tasks run as processes, Marathon-level check)."""
        return self.options.run_tasks and check.get("protocol", "HTTP") in PROBED_PROTOCOLS

    def task_json(self, task: Task, service_ports: Optional[list[int]] = None) -> Json:
        """Marathon 1.10 task JSON (``servicePorts`` [] unless given)."""
        return views.task_json(
            task,
            role=self.options.role,
            health_visible=self._health_visible(time.monotonic()),
            service_ports=service_ports,
        )

    def _app_tasks(self, app_id: str) -> list[Task]:
        return list(self._by_app.get(app_id, {}).values())

    def _touch(self, app_id: str, task_id: Optional[str] = None) -> None:
        """Mark an app (and a task) for attention on the next tick."""
        self._dirty.add(app_id)
        if task_id is not None:
            self._watch.add(task_id)

    def _definition(self, app: Json) -> Json:
        return appmodel.order_app(app, self.options.keep_unknown_fields)

    def app_info(self, app_id: str, embed: Iterable[str], full: bool = False) -> Json:
        """AppInfo: the definition plus counts, deployments and the embeds asked for."""
        state = self.apps[app_id]
        now = time.monotonic()
        visible = self._health_visible(now)
        tasks = self._app_tasks(app_id)
        wanted = set(embed)
        out = self._definition(state.app)
        out.update(views.counts(tasks, visible))
        out["deployments"] = [
            {"id": d.id} for d in self.deployments.values() if app_id in d.affected_apps
        ]
        if "readiness" in wanted:
            out["readinessCheckResults"] = []
        if full or "tasks" in wanted or "failures" in wanted:
            out["tasks"] = [self.task_json(t) for t in tasks]
        if (full or "lastTaskFailure" in wanted or "failures" in wanted) and state.last_failure:
            out["lastTaskFailure"] = dict(state.last_failure)
        if "taskStats" in wanted:
            out["tasksStats"] = views.task_stats(tasks, now, visible)
        return out

    # ------------------------------------------------------------------ a task's start and end

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
            self._back_off(state, task, status, message)

    def _back_off(self, state: AppState, task: Task, status: str, message: str) -> None:
        """A task that ended on its own delays the app's next launch (Marathon's backoff); a
        failed one is logged and becomes the app's ``lastTaskFailure``."""
        if status == FAILED:
            sandbox = self.runner.sandbox(task.id) if task.process and self.runner else ""
            LOG.warning(
                "task failed",
                extra={
                    "task_id": task.id,
                    "app_id": task.app_id,
                    "host": task.agent.host,
                    "reason": message,
                    "sandbox": sandbox,
                },
            )
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

    def shutdown(self) -> None:
        """Stop every task process."""
        if self.runner is not None:
            self.runner.stop_all(grace=max(self.options.kill_timeout, 0.5))
