"""Fakes of the sidecar's collaborators, for tests of the daemon, the Marathon source and the
applier without a Marathon or an HAProxy:

- :class:`FakeMarathonClient`: Marathon as the Marathon source sees it
  (``sidecar.sources.marathon.follower.MarathonAPI``), with :class:`FakeStream` event streams;
- :class:`FakeHAProxy`: an HAProxy as the applier and the daemon see it
  (``sidecar.haproxy.process.HAProxyControl``), without a process.

A fake clock is :class:`testkit.clock.FakeClock`.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

from marathon_bridge.errors import NotFound, Unavailable
from marathon_bridge.events import Event
from sidecar.haproxy.runtime import ProcStatus, ReloadResult


class FakeStream:
    """An open event stream: yields what :meth:`FakeMarathonClient.send` puts in, counts
    heartbeats as activity, ends when closed (or on a ``None`` item)."""

    def __init__(self, on_connect: Optional[Callable[[], None]]) -> None:
        self.on_connect = on_connect
        self.events: queue.Queue[Optional[Event]] = queue.Queue()
        self.connects = 0
        self.last_activity = 0.0
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Event]:
        self.connects += 1
        self.last_activity = time.monotonic()
        if self.on_connect is not None:
            self.on_connect()
        while not self._closed.is_set():
            try:
                item = self.events.get(timeout=0.05)
            except queue.Empty:
                self.last_activity = time.monotonic()  # heartbeats
                continue
            if item is None:
                return
            self.last_activity = time.monotonic()
            yield item

    def close(self) -> None:
        self._closed.set()


class FakeMarathonClient:
    """Marathon in memory. ``list_apps`` answers the next of :attr:`answers` (a value, or an
    exception to raise) when one waits, else :attr:`apps` (a copy; an exception is raised);
    ``get_app`` answers from :attr:`single` (``NotFound`` otherwise); ``event_stream`` opens a
    :class:`FakeStream`, or raises ``Unavailable`` when ``streams`` is false (the source then
    polls). Safe to change from the test while the source reads from its threads."""

    def __init__(self, apps: Any, *, streams: bool = True) -> None:
        self._lock = threading.Lock()
        self._apps = apps
        self.streams_allowed = streams
        self.answers: queue.Queue[Any] = queue.Queue()
        self.single: dict[str, Any] = {}
        self.list_calls = 0
        self.get_calls: list[str] = []
        self.streams: list[FakeStream] = []
        self.stream_ready = threading.Event()

    @property
    def apps(self) -> Any:
        with self._lock:
            return self._apps

    @apps.setter
    def apps(self, value: Any) -> None:
        with self._lock:
            self._apps = value

    def list_apps(self, embed: Sequence[str] = ()) -> Any:
        assert tuple(embed) == ("apps.tasks",), "the source lists apps with their tasks"
        with self._lock:
            self.list_calls += 1
            try:
                answer = self.answers.get_nowait()
            except queue.Empty:
                answer = self._apps
        if isinstance(answer, BaseException):
            raise answer
        return copy.deepcopy(answer)

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> Any:
        self.get_calls.append(app_id)
        answer = self.single.get(app_id)
        if answer is None:
            raise NotFound("App does not exist", status=404)
        return answer

    def event_stream(
        self,
        event_types: Sequence[str] = (),
        *,
        on_connect: Optional[Callable[[], None]] = None,
        read_timeout: float = 30.0,
        stop: Optional[threading.Event] = None,
    ) -> FakeStream:
        if not self.streams_allowed:
            raise Unavailable("no event stream here")
        stream = FakeStream(on_connect)
        self.streams.append(stream)
        self.stream_ready.set()
        return stream

    def send(self, event_type: str, data: dict[str, Any]) -> None:
        """An event on the latest stream."""
        self.streams[-1].events.put(Event(event_type, data))

    def close(self) -> None:
        pass


CONFIRMED = ReloadResult(True)


class FakeHAProxy:
    """An HAProxy that runs until :meth:`stop`; a reload is counted and answers
    :attr:`reload_answer` (confirmed unless the test says otherwise); it never needs starting,
    restarting or adopting."""

    origin: Optional[str] = "started"
    master_socket = "/nonexistent/master.sock"
    admin_socket: Optional[str] = None
    starts = 0

    def __init__(self, reload_answer: ReloadResult = CONFIRMED) -> None:
        self.stopped = False
        self.reloads = 0
        self.reload_answer = reload_answer
        self.status: Optional[ProcStatus] = None

    def running(self) -> bool:
        return not self.stopped

    def leftover_master_pid(self) -> Optional[int]:
        return None

    def adopt(self, timeout: float = 30.0) -> bool:
        return False

    def ensure_started(self, timeout: float = 30.0) -> bool:
        return False

    def reload(self, timeout: float = 30.0) -> ReloadResult:
        self.reloads += 1
        return self.reload_answer

    def restart_if_dead(self, timeout: float = 30.0) -> bool:
        return False

    def proc_status(self) -> Optional[ProcStatus]:
        return self.status

    def stop(self, timeout: float = 10.0) -> None:
        self.stopped = True


if TYPE_CHECKING:  # mypy holds the fakes to the interfaces they stand in for
    from sidecar.haproxy.process import HAProxyControl
    from sidecar.sources.marathon.follower import MarathonAPI

    _haproxy: HAProxyControl = FakeHAProxy()
    _client: MarathonAPI = FakeMarathonClient([])
