"""What happens to tasks from outside the scheduler: real health probe results (``run_tasks``)
and the tests' hooks (force health, fail, kill, lose the agent, blank health like a new leader)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Optional

from marathon_bridge.testing import appmodel
from marathon_bridge.testing.health import HealthResult, ProbeTarget
from marathon_bridge.testing.state.core import StateCore
from marathon_bridge.testing.state.records import FAILED, RUNNING, UNREACHABLE, Task
from marathon_bridge.testing.wire import play_numbers, timestamp


class TaskHooks(StateCore):
    """Health probes feed :meth:`record_probe`; tests call the hooks (each takes the lock)."""

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
