"""When the Marathon emulator published the events a benchmark waits for (monotonic times, taken
inside the emulator as it publishes: register :meth:`EventClock.record` with ``on_event``)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional


def task_id_of_instance(instance_id: str) -> str:
    """The task id of an emulated instance (the emulator runs one task per instance)."""
    return f"{instance_id}._app.1"


@dataclass
class EventClock:
    """Publish times (monotonic) of the events a change waits for, keyed by what they say."""

    killing: dict[str, float] = field(default_factory=dict)  # task id -> TASK_KILLING
    alive: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)  # task id -> flips
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event_type: str, payload: dict[str, Any]) -> None:
        now = time.monotonic()
        with self._lock:
            if event_type == "status_update_event" and payload.get("taskStatus") == "TASK_KILLING":
                self.killing.setdefault(str(payload["taskId"]), now)
            elif event_type == "health_status_changed_event":
                task_id = task_id_of_instance(str(payload["instanceId"]))
                self.alive.setdefault(task_id, []).append((now, bool(payload["alive"])))

    def killing_at(self, task_id: str) -> Optional[float]:
        with self._lock:
            return self.killing.get(task_id)

    def alive_at(self, task_id: str, alive: bool, after: float = 0.0) -> Optional[float]:
        with self._lock:
            for at, value in self.alive.get(task_id, []):
                if value == alive and at >= after:
                    return at
        return None

    def killed_since(self, since: float, among: set[str]) -> Optional[str]:
        with self._lock:
            for task_id, at in self.killing.items():
                if at >= since and task_id in among:
                    return task_id
        return None

    def running_since(self, since: float, app_prefix: str) -> list[tuple[str, float]]:
        """(task id, alive time) of the tasks whose ids start with ``app_prefix`` that turned
        healthy at or after ``since``, oldest first."""
        with self._lock:
            found = [
                (task_id, at)
                for task_id, flips in self.alive.items()
                if task_id.startswith(app_prefix)
                for at, value in flips
                if value and at >= since
            ]
        return sorted(found, key=lambda item: item[1])
