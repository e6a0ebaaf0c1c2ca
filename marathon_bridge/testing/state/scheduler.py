"""The emulated cluster's clock tick: tasks move through their lifecycle, apps converge on their
definition (launch, replace, scale down as the upgrade strategy allows), deployments finish."""

from __future__ import annotations

import math
import time
from typing import Optional

from marathon_bridge.testing import appmodel
from marathon_bridge.testing.health import HealthResult
from marathon_bridge.testing.state.core import StateCore
from marathon_bridge.testing.state.records import (
    ACTIVE_STATES,
    FAILED,
    FINISHED,
    KILLED,
    KILLING,
    RUNNING,
    STAGING,
    UNREACHABLE,
    Deployment,
    Json,
    Task,
)
from marathon_bridge.testing.tasks import TaskProcess


class StateScheduler(StateCore):
    """:meth:`tick`, called every few milliseconds by the emulator's scheduler thread."""

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
        """The command ended on its own: TASK_FINISHED for status 0, else TASK_FAILED with the
        executor's message."""
        if exit_code == 0:
            self._terminal(task, FINISHED, "Command exited with status 0")
        elif exit_code < 0:
            self._terminal(task, FAILED, f"Command terminated with signal {-exit_code}")
        else:
            self._terminal(task, FAILED, f"Command exited with status {exit_code}")

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
