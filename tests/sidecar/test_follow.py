"""MarathonFollower against a fake client: snapshots, events, fetches, errors, garbage, empties."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Callable, Optional

import pytest

from marathon_bridge.errors import NotFound, ServerError, Unavailable
from marathon_bridge.events import Event
from sidecar.follow import MarathonFollower, SnapshotRejected, check_snapshot, jittered
from sidecar.metrics import SidecarMetrics
from sidecar.model import ClusterState


def app(app_id: str, *task_ids: str, port: int = 10001) -> dict[str, Any]:
    return {
        "id": app_id,
        "portDefinitions": [{"port": port, "protocol": "tcp"}],
        "tasks": [task(app_id, t) for t in task_ids],
    }


def task(app_id: str, task_id: str, port: int = 31000) -> dict[str, Any]:
    return {
        "id": task_id,
        "appId": app_id,
        "host": "127.0.0.1",
        "ports": [port],
        "state": "TASK_RUNNING",
        "startedAt": "2026-01-01T00:00:00.000Z",
    }


class FakeStream:
    def __init__(self, on_connect: Optional[Callable[[], None]]) -> None:
        self.on_connect = on_connect
        self.events: queue.Queue[Optional[Event]] = queue.Queue()
        self.connects = 0
        self.last_activity = 0.0
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[Event]:
        import time

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


class FakeClient:
    """``answers``: what list_apps returns next (a value, or an exception to raise)."""

    def __init__(self, apps: Any) -> None:
        self.apps = apps
        self.answers: queue.Queue[Any] = queue.Queue()
        self.single: dict[str, Any] = {}
        self.list_calls = 0
        self.get_calls: list[str] = []
        self.streams: list[FakeStream] = []
        self.stream_ready = threading.Event()

    def list_apps(self, embed: Sequence[str] = ()) -> Any:
        assert tuple(embed) == ("apps.tasks",)
        self.list_calls += 1
        try:
            answer = self.answers.get_nowait()
        except queue.Empty:
            answer = self.apps
        if isinstance(answer, BaseException):
            raise answer
        return answer

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
        on_connect: Any = None,
        read_timeout: float = 30.0,
        stop: Any = None,
    ) -> FakeStream:
        stream = FakeStream(on_connect)
        self.streams.append(stream)
        self.stream_ready.set()
        return stream

    def send(self, event_type: str, data: dict[str, Any]) -> None:
        self.streams[-1].events.put(Event(event_type, data))


class Recorder:
    def __init__(self) -> None:
        self.states: list[ClusterState] = []
        self.reasons: list[str] = []
        self.problems: list[Optional[str]] = []
        self.lock = threading.Lock()

    def on_state(self, state: ClusterState, reason: str) -> None:
        with self.lock:
            self.states.append(state)
            self.reasons.append(reason)

    @property
    def last(self) -> ClusterState:
        with self.lock:
            return self.states[-1]

    def count(self) -> int:
        with self.lock:
            return len(self.states)


@pytest.fixture
def make(
    request: pytest.FixtureRequest,
) -> Callable[..., tuple[MarathonFollower, FakeClient, Recorder]]:
    followers: list[MarathonFollower] = []

    def build(apps: Any, **kwargs: Any) -> tuple[MarathonFollower, FakeClient, Recorder]:
        client = FakeClient(apps)
        recorder = Recorder()
        kwargs.setdefault("retry_backoff", 0.05)
        kwargs.setdefault("max_retry_backoff", 0.2)
        follower = MarathonFollower(
            client,
            recorder.on_state,
            metrics=SidecarMetrics(),
            on_problem=recorder.problems.append,
            **kwargs,
        )
        followers.append(follower)
        return follower, client, recorder

    yield build
    for follower in followers:
        follower.stop()


def errors(follower: MarathonFollower, kind: str) -> float:
    value = follower.metrics.registry.get_sample_value(
        "marathon_sidecar_marathon_errors_total", {"kind": kind}
    )
    return value or 0.0


def test_check_snapshot_rejects_garbage() -> None:
    assert check_snapshot([app("/a")]) == [app("/a")]
    for bad in ({"apps": []}, "html", None, [1], [{"no": "id"}], [{"id": "/a", "tasks": {}}]):
        with pytest.raises(SnapshotRejected):
            check_snapshot(bad)


def test_jitter_stays_below_the_interval() -> None:
    assert jittered(100, lambda a, b: a) == 75
    assert jittered(100, lambda a, b: b) == 100


def test_stream_mode_snapshot_on_connect_then_events_without_refetching(
    make: Any, wait_until: Any
) -> None:
    follower, client, rec = make([app("/web", "web.1")])
    follower.start()
    wait_until(lambda: rec.count() == 1)
    assert set(rec.last.tasks["/web"]) == {"web.1"}
    assert client.list_calls == 1
    client.send(
        "status_update_event",
        {
            "taskId": "web.2",
            "appId": "/web",
            "taskStatus": "TASK_RUNNING",
            "host": "127.0.0.1",
            "ports": [31002],
            "ipAddresses": [],
            "version": "v1",
            "slaveId": "s",
            "message": "",
            "timestamp": "2026-01-01T00:00:01.000Z",
            "eventType": "status_update_event",
        },
    )
    wait_until(lambda: "web.2" in rec.last.tasks["/web"])
    client.send(
        "status_update_event",
        {
            "taskId": "web.1",
            "appId": "/web",
            "taskStatus": "TASK_KILLED",
            "host": "127.0.0.1",
            "ports": [31000],
            "ipAddresses": [],
            "version": "v1",
            "slaveId": "s",
            "message": "",
            "timestamp": "2026-01-01T00:00:02.000Z",
            "eventType": "status_update_event",
        },
    )
    wait_until(lambda: "web.1" not in rec.last.tasks["/web"])
    assert client.list_calls == 1  # events were applied, not refetched
    assert (
        follower.metrics.registry.get_sample_value(
            "marathon_sidecar_marathon_events_total", {"type": "status_update_event"}
        )
        == 2
    )
    assert follower.stream_connected


def test_reconnect_takes_a_new_snapshot(make: Any, wait_until: Any) -> None:
    follower, client, rec = make([app("/web", "web.1")])
    follower.start()
    wait_until(lambda: rec.count() == 1)
    client.apps = [app("/web", "web.1", "web.3")]
    client.streams[-1].events.put(None)  # Marathon closes the stream; the follower reopens it
    wait_until(lambda: len(client.streams) == 2 and "web.3" in rec.last.tasks["/web"])
    assert client.list_calls == 2


def test_fetch_apps_reads_single_apps_and_drops_deleted_ones(make: Any, wait_until: Any) -> None:
    follower, client, rec = make([app("/web", "web.1"), app("/old", "old.1", port=10002)])
    follower.start()
    wait_until(lambda: rec.count() == 1)
    client.single["/new"] = app("/new", "new.1", port=10003)
    client.send(
        "deployment_success",
        {
            "id": "d1",
            "eventType": "deployment_success",
            "timestamp": "t",
            "plan": {
                "id": "d1",
                "version": "v",
                "steps": [
                    {"actions": [{"action": "StartApplication", "app": "/new"}]},
                    {"actions": [{"action": "StopApplication", "app": "/old"}]},
                ],
            },
        },
    )
    wait_until(lambda: "/new" in rec.last.apps and "/old" not in rec.last.apps)
    assert sorted(client.get_calls) == ["/new", "/old"]
    assert client.list_calls == 1


def test_errors_and_garbage_keep_the_last_good_state(make: Any, wait_until: Any) -> None:
    follower, client, rec = make([app("/web", "web.1")], poll=True, poll_interval=0.05)
    follower.start()
    wait_until(lambda: rec.count() >= 1)
    published = rec.count()
    client.answers.put(ServerError("boom", status=500))
    client.answers.put(Unavailable("connection refused"))
    client.answers.put({"message": "not a list"})
    client.answers.put([{"garbage": True}])
    wait_until(lambda: client.answers.empty() and errors(follower, "garbage") == 2)
    assert errors(follower, "marathon") == 2
    assert all(set(s.apps) == {"/web"} for s in rec.states)
    assert any(p and "keeping the last good state" in p for p in rec.problems)
    wait_until(lambda: rec.problems[-1] is None)  # recovered: the problem is cleared
    assert rec.count() == published  # the same apps again: nothing new to publish
    client.apps = [app("/web", "web.1", "web.2")]
    wait_until(lambda: "web.2" in rec.last.tasks["/web"])


def test_an_empty_list_after_apps_needs_confirmation(make: Any, wait_until: Any) -> None:
    follower, client, rec = make(
        [app("/web", "web.1")], poll=True, poll_interval=0.05, empty_confirm=0.5
    )
    follower.start()
    wait_until(lambda: rec.count() >= 1)
    client.apps = []
    wait_until(lambda: errors(follower, "suspicious_empty") >= 2)
    assert all(s.apps for s in rec.states)  # not believed yet
    wait_until(lambda: not rec.last.apps, timeout=20)  # believed once it persisted


def test_a_short_empty_blip_changes_nothing(make: Any, wait_until: Any) -> None:
    follower, client, rec = make(
        [app("/web", "web.1")], poll=True, poll_interval=0.05, empty_confirm=30
    )
    follower.start()
    wait_until(lambda: rec.count() >= 1)
    client.answers.put([])
    client.answers.put([])
    wait_until(lambda: client.answers.empty() and client.list_calls >= 5)
    assert all(s.apps for s in rec.states)


def test_no_events_before_a_trusted_snapshot(make: Any, wait_until: Any) -> None:
    follower, client, rec = make([app("/web", "web.1")])
    client.answers.put(ServerError("down", status=503))
    follower.seed(ClusterState.from_apps([app("/web", "web.1")]))
    follower.start()
    client.stream_ready.wait(5)
    wait_until(lambda: client.list_calls >= 1)
    wait_until(lambda: rec.count() >= 1)  # the retry snapshot succeeds
    assert follower.last_sync is not None


def test_stream_down_falls_back_to_polling(make: Any, wait_until: Any) -> None:
    follower, client, rec = make(
        [app("/web", "web.1")], poll_interval=0.1, stream_silence=0.2, resync_interval=3600
    )

    def no_stream(*args: Any, **kwargs: Any) -> Any:
        raise Unavailable("stream refused")  # every attempt to open the stream fails

    client.event_stream = no_stream  # type: ignore[method-assign]
    follower.start()
    wait_until(lambda: rec.count() >= 1)
    client.apps = [app("/web", "web.1", "web.2")]
    wait_until(lambda: "web.2" in rec.last.tasks["/web"])
    assert not follower.stream_connected
