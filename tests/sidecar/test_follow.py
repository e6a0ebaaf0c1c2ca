"""The Marathon source against a fake client: snapshots, events, fetches, errors, empties."""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import pytest

from marathon_bridge.errors import ServerError, Unavailable
from sidecar.catalog import Catalog
from sidecar.metrics import SidecarMetrics
from sidecar.sources.marathon.follower import SnapshotRejected, check_snapshot, jittered
from sidecar.sources.marathon.source import MarathonSource
from sidecar.sources.marathon.translate import catalog_from_apps
from testkit import wait_until
from testkit.fakes import FakeMarathonClient


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


class Recorder:
    """The daemon's side of the source: every catalog, problem and contact."""

    def __init__(self) -> None:
        self.catalogs: list[Catalog] = []
        self.reasons: list[str] = []
        self.problems: list[Optional[str]] = []
        self.lock = threading.Lock()

    def catalog_changed(self, catalog: Catalog, reason: str) -> None:
        with self.lock:
            self.catalogs.append(catalog)
            self.reasons.append(reason)

    def source_problem(self, problem: Optional[str]) -> None:
        self.problems.append(problem)

    def source_contact(self) -> None:
        pass

    @property
    def last(self) -> Catalog:
        with self.lock:
            return self.catalogs[-1]

    def count(self) -> int:
        with self.lock:
            return len(self.catalogs)


def tasks_of(catalog: Catalog, app_id: str) -> set[str]:
    """The instance ids of an app's first port."""
    service = catalog.services.get(f"{app_id}:0")
    return {i.id for i in service.instances} if service is not None else set()


def apps_of(catalog: Catalog) -> set[str]:
    return {s.app_id for s in catalog}


@pytest.fixture
def make(
    request: pytest.FixtureRequest,
) -> Callable[..., tuple[MarathonSource, FakeMarathonClient, Recorder]]:
    sources: list[MarathonSource] = []

    def build(
        apps: Any, start: bool = True, **kwargs: Any
    ) -> tuple[MarathonSource, FakeMarathonClient, Recorder]:
        client = FakeMarathonClient(apps)
        recorder = Recorder()
        kwargs.setdefault("retry_backoff", 0.05)
        kwargs.setdefault("max_retry_backoff", 0.2)
        source = MarathonSource(client, metrics=SidecarMetrics(), **kwargs)
        sources.append(source)
        if start:
            source.start(recorder)
        return source, client, recorder

    yield build
    for source in sources:
        source.stop()


def errors(source: MarathonSource, kind: str) -> float:
    value = source.follower.metrics.registry.get_sample_value(
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


def test_stream_mode_snapshot_on_connect_then_events_without_refetching(make: Any) -> None:
    source, client, rec = make([app("/web", "web.1")])
    wait_until(lambda: rec.count() == 1)
    assert tasks_of(rec.last, "/web") == {"web.1"}
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
    wait_until(lambda: "web.2" in tasks_of(rec.last, "/web"))
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
    wait_until(lambda: "web.1" not in tasks_of(rec.last, "/web"))
    assert client.list_calls == 1  # events were applied, not refetched
    assert (
        source.follower.metrics.registry.get_sample_value(
            "marathon_sidecar_marathon_events_total", {"type": "status_update_event"}
        )
        == 2
    )
    assert source.health().connected and source.health().mode == "stream"


def test_reconnect_takes_a_new_snapshot(make: Any) -> None:
    _source, client, rec = make([app("/web", "web.1")])
    wait_until(lambda: rec.count() == 1)
    client.apps = [app("/web", "web.1", "web.3")]
    client.streams[-1].events.put(None)  # Marathon closes the stream; the follower reopens it
    wait_until(lambda: len(client.streams) == 2 and "web.3" in tasks_of(rec.last, "/web"))
    assert client.list_calls == 2


def test_fetch_apps_reads_single_apps_and_drops_deleted_ones(make: Any) -> None:
    _source, client, rec = make([app("/web", "web.1"), app("/old", "old.1", port=10002)])
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
    wait_until(lambda: "/new" in apps_of(rec.last) and "/old" not in apps_of(rec.last))
    assert sorted(client.get_calls) == ["/new", "/old"]
    assert client.list_calls == 1


def test_errors_and_garbage_keep_the_last_good_state(make: Any) -> None:
    source, client, rec = make([app("/web", "web.1")], poll=True, poll_interval=0.05)
    wait_until(lambda: rec.count() >= 1)
    published = rec.count()
    client.answers.put(ServerError("boom", status=500))
    client.answers.put(Unavailable("connection refused"))
    client.answers.put({"message": "not a list"})
    client.answers.put([{"garbage": True}])
    wait_until(lambda: client.answers.empty() and errors(source, "garbage") == 2)
    assert errors(source, "marathon") == 2
    assert all(apps_of(c) == {"/web"} for c in rec.catalogs)
    assert any(p and "keeping the last good state" in p for p in rec.problems)
    wait_until(lambda: rec.problems[-1] is None)  # recovered: the problem is cleared
    assert rec.count() == published  # the same apps again: nothing new to publish
    client.apps = [app("/web", "web.1", "web.2")]
    wait_until(lambda: "web.2" in tasks_of(rec.last, "/web"))


def test_an_empty_list_after_apps_needs_confirmation(make: Any) -> None:
    source, client, rec = make(
        [app("/web", "web.1")], poll=True, poll_interval=0.05, empty_confirm=0.5
    )
    wait_until(lambda: rec.count() >= 1)
    client.apps = []
    wait_until(lambda: errors(source, "suspicious_empty") >= 2)
    assert all(len(c) for c in rec.catalogs)  # not believed yet
    assert any(p and "keeping them until confirmed" in p for p in rec.problems)
    wait_until(lambda: not len(rec.last), timeout=20)  # believed once it persisted


def test_a_short_empty_blip_changes_nothing(make: Any) -> None:
    _source, client, rec = make(
        [app("/web", "web.1")], poll=True, poll_interval=0.05, empty_confirm=30
    )
    wait_until(lambda: rec.count() >= 1)
    client.answers.put([])
    client.answers.put([])
    wait_until(lambda: client.answers.empty() and client.list_calls >= 5)
    assert all(len(c) for c in rec.catalogs)


def test_no_events_before_a_trusted_snapshot(make: Any) -> None:
    source, client, rec = make([app("/web", "web.1")], start=False)
    client.answers.put(ServerError("down", status=503))
    source.seed(catalog_from_apps([app("/web", "web.1")]))
    assert not source.health().synced
    source.start(rec)
    client.stream_ready.wait(5)
    wait_until(lambda: client.list_calls >= 1)
    wait_until(lambda: rec.count() >= 1)  # the retry snapshot succeeds
    assert source.health().synced and source.health().last_contact is not None


def test_stream_down_falls_back_to_polling(make: Any) -> None:
    source, client, rec = make(
        [app("/web", "web.1")],
        start=False,
        poll_interval=0.1,
        stream_silence=0.2,
        resync_interval=3600,
    )

    def no_stream(*args: Any, **kwargs: Any) -> Any:
        raise Unavailable("stream refused")  # every attempt to open the stream fails

    client.event_stream = no_stream  # type: ignore[method-assign]
    source.start(rec)
    wait_until(lambda: rec.count() >= 1)
    client.apps = [app("/web", "web.1", "web.2")]
    wait_until(lambda: "web.2" in tasks_of(rec.last, "/web"))
    assert not source.health().connected
    assert source.health().mode == "poll (event stream down)"
