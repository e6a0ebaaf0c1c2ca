"""What the emulator's HTTP server shares with its handlers, and the log of requests it got."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from marathon_bridge.testing.events import EventBus
from marathon_bridge.testing.faults import FaultInjector
from marathon_bridge.testing.state import EmulatorState


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it (Authorization left out)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw: bytes


class RequestLog:
    """Thread-safe list of recorded requests."""

    def __init__(self, limit: int = 10000) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []
        self._limit = limit
        self.total = 0

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self.total += 1
            self._items.append(item)
            if len(self._items) > self._limit:
                del self._items[: len(self._items) - self._limit]

    def all(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@dataclass
class ServerContext:
    """Everything a request handler needs."""

    state: Optional[EmulatorState]
    bus: Optional[EventBus]
    faults: FaultInjector
    requests: RequestLog
    auth: Any = None
    heartbeat_interval: float = 10.0
    version: str = "1.10.26"
    leader_url: Callable[[], Optional[str]] = lambda: None
    self_url: Callable[[], str] = lambda: ""
    on_abdicate: Callable[[], None] = lambda: None
    stopping: threading.Event = field(default_factory=threading.Event)
    framework_id: str = "emulated-framework-0000"
