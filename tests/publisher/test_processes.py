"""`marathon-publisher` processes against a real ZooKeeper and the Marathon emulator.

Only the leader follows Marathon (its sockets, the emulator's request log and event streams say
so); the leader killed (SIGKILL): the standby leads, changes flow, and no instance node that did
not change is recreated; a leader paused past its session cannot write when it wakes; Marathon
unreachable or answering with no apps leaves ZooKeeper as it was; bad labels skip that one
service, reported on /health.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import Any, Callable, Optional

import orjson
import pytest
from kazoo.client import KazooClient

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from sidecar.sources.zookeeper import layout
from testkit import wait_until
from testkit.apps import idle_app
from testkit.publisher import PublisherProcess, children_stats, instances

pytestmark = pytest.mark.slow

SERVICE = "shop_web:0"


def app(app_id: str = "/shop/web", count: int = 2, **labels: str) -> dict[str, Any]:
    return idle_app(app_id, count, **labels)


def deploy(client: MarathonClient, marathon: MarathonEmulator, definition: dict[str, Any]) -> None:
    client.create_app(definition)
    count = definition["instances"]
    marathon.wait_for(lambda: len(task_ids(marathon, definition["id"])) == count)


def scale(client: MarathonClient, marathon: MarathonEmulator, count: int) -> None:
    """Scale /shop/web and wait until Marathon runs that many tasks."""
    client.scale_app("/shop/web", count)
    marathon.wait_for(lambda: len(task_ids(marathon)) == count)


def task_ids(marathon: MarathonEmulator, app_id: str = "/shop/web") -> set[str]:
    return {t["id"] for t in marathon.tasks(app_id, ("TASK_RUNNING",))}


def published_ids(reader: KazooClient, zk_path: str, service: str = SERVICE) -> set[str]:
    return {i.label("task_id") or "" for i in instances(reader, zk_path, service)}


def wait_published(
    reader: KazooClient, zk_path: str, wanted: Callable[[], set[str]], what: str
) -> set[str]:
    def matched() -> Optional[set[str]]:
        found = published_ids(reader, zk_path)
        return found if found and found == wanted() else None

    return wait_until(matched, 60, f"ZooKeeper to hold {what}")


def leader_and_standby(
    processes: Sequence[PublisherProcess],
) -> tuple[PublisherProcess, PublisherProcess]:
    def roles() -> Any:
        found = {p.role(): p for p in processes}
        return found if set(found) == {"leader", "standby"} else None

    found = wait_until(roles, 60, "one leader and one standby")
    return found["leader"], found["standby"]


def requests_by(marathon: MarathonEmulator, process: PublisherProcess) -> int:
    """Requests whose User-Agent names this process (`marathon-publisher/<v> (<host>:<pid>)`)."""
    tag = f":{process.pid})"
    return sum(1 for r in marathon.requests if r.headers.get("User-Agent", "").endswith(tag))


def test_only_the_leader_follows_marathon(
    publishers: Callable[..., PublisherProcess],
    marathon: MarathonEmulator,
    marathon_client: MarathonClient,
    reader: KazooClient,
    zk_path: str,
) -> None:
    deploy(marathon_client, marathon, app(count=2))
    leader, standby = leader_and_standby([publishers("a"), publishers("b")])
    wait_published(reader, zk_path, lambda: task_ids(marathon), "both tasks")

    health = standby.wait_health("the standby", role="standby")
    assert (health["http_status"], health["status"], health["marathon"]) == (200, "ok", None)
    assert (
        leader.wait_health("the leader synced", role="leader", status="ok")["marathon"]["mode"]
        == "stream"
    )
    assert standby.marathon_connections(marathon.port) == 0
    assert requests_by(marathon, standby) == 0
    assert leader.marathon_connections(marathon.port) >= 1
    assert requests_by(marathon, leader) >= 2  # the event stream and a snapshot at least
    wait_until(lambda: marathon.event_stream_count() == 1, 30, "one event stream")
    assert standby.metric("marathon_publisher_leader") == 0
    assert leader.metric("marathon_publisher_leader") == 1


def test_the_leader_killed_the_standby_leads_without_recreating_unchanged_instances(
    publishers: Callable[..., PublisherProcess],
    marathon: MarathonEmulator,
    marathon_client: MarathonClient,
    reader: KazooClient,
    zk_path: str,
) -> None:
    deploy(marathon_client, marathon, app(count=3))
    first = publishers("a")
    first.wait_health("a to lead", role="leader")
    second = publishers("b")
    second.wait_health("b to stand by", role="standby")
    wait_published(reader, zk_path, lambda: task_ids(marathon), "three tasks")
    before = children_stats(reader, zk_path, SERVICE)

    first.signal(signal.SIGKILL)
    second.wait_health("b to lead and sync", 60, role="leader", status="ok")
    wait_until(lambda: second.health()["catalog"]["written"], 30, "b's first write")

    assert children_stats(reader, zk_path, SERVICE) == before
    assert second.metric("marathon_publisher_zk_nodes_created_total") == 0
    assert second.metric("marathon_publisher_zk_nodes_deleted_total") == 0
    scale(marathon_client, marathon, 4)
    wait_published(reader, zk_path, lambda: task_ids(marathon), "the fourth task")
    after = children_stats(reader, zk_path, SERVICE)
    assert {name: after[name] for name in before} == before
    assert second.metric("marathon_publisher_leader_changes_total") == 1
    wait_until(lambda: marathon.event_stream_count() == 1, 30, "the dead leader's stream gone")


def test_a_leader_paused_past_its_session_cannot_write_when_it_wakes(
    publishers: Callable[..., PublisherProcess],
    marathon: MarathonEmulator,
    marathon_client: MarathonClient,
    reader: KazooClient,
    zk_path: str,
) -> None:
    deploy(marathon_client, marathon, app(count=2))
    paused = publishers("a")
    paused.wait_health("a to lead", role="leader")
    wait_published(reader, zk_path, lambda: task_ids(marathon), "two tasks")
    other = publishers("b")
    other.wait_health("b to stand by", role="standby")
    transactions = paused.metric("marathon_publisher_zk_transactions_total")

    paused.signal(signal.SIGSTOP)
    other.wait_health("b to lead", 60, role="leader", status="ok")
    scale(marathon_client, marathon, 3)  # a's Marathon state stays at two tasks
    wait_published(reader, zk_path, lambda: task_ids(marathon), "b's write of three tasks")
    before = children_stats(reader, zk_path, SERVICE)
    paused.signal(signal.SIGCONT)

    def stepped_down() -> Any:
        found = paused.health()
        return found if found.get("role") == "standby" and found["leader_changes"] >= 2 else None

    woke = wait_until(stepped_down, 60, "a to notice it lost the lead")
    assert woke["marathon"] is None
    assert paused.metric("marathon_publisher_zk_transactions_total") == transactions
    assert children_stats(reader, zk_path, SERVICE) == before
    assert published_ids(reader, zk_path) == task_ids(marathon)
    heartbeat = orjson.loads(reader.get(layout.heartbeat_path(zk_path))[0])
    assert heartbeat["leader"] == other.health()["identifier"]
    wait_until(lambda: paused.marathon_connections(marathon.port) == 0, 30, "a to close Marathon")
    assert other.role() == "leader"


def test_marathon_unreachable_or_answering_empty_leaves_zookeeper_as_it_was(
    publishers: Callable[..., PublisherProcess],
    marathon: MarathonEmulator,
    marathon_client: MarathonClient,
    reader: KazooClient,
    zk_path: str,
) -> None:
    deploy(marathon_client, marathon, app(count=2))
    leader = publishers("a", "--empty-confirm", "600")
    wait_published(reader, zk_path, lambda: task_ids(marathon), "two tasks")
    before = children_stats(reader, zk_path, SERVICE)

    marathon.faults.add("/v2/apps", method="GET", body=b'{"apps": []}')
    marathon.close_event_streams()  # the reconnect asks for a snapshot: the empty one
    held = ("marathon_publisher_marathon_errors_total", {"kind": "suspicious_empty"})
    wait_until(lambda: leader.metric(*held) >= 3, 60, "empty snapshots held back")
    assert children_stats(reader, zk_path, SERVICE) == before
    reasons = leader.wait_health("the empty answer reported", role="leader")["reasons"]
    assert any("no services" in r for r in reasons), reasons
    marathon.faults.clear()

    marathon.suspend()
    wait_until(
        lambda: any("Marathon" in r for r in leader.health()["reasons"]),
        60,
        "the unreachable Marathon reported",
    )
    assert children_stats(reader, zk_path, SERVICE) == before
    marathon.resume()
    scale(marathon_client, marathon, 3)
    wait_published(reader, zk_path, lambda: task_ids(marathon), "a change after Marathon is back")


def test_bad_labels_skip_that_service_and_are_reported(
    publishers: Callable[..., PublisherProcess],
    marathon: MarathonEmulator,
    marathon_client: MarathonClient,
    reader: KazooClient,
    zk_path: str,
) -> None:
    deploy(marathon_client, marathon, app(count=2))
    deploy(marathon_client, marathon, app("/broken", 1, HAPROXY_0_PORT="not-a-port"))
    leader = publishers("a")
    wait_published(reader, zk_path, lambda: task_ids(marathon), "the good app")

    health = leader.wait_health("the catalog written", role="leader")
    assert {(s["app_id"], s["port_index"]) for s in health["catalog"]["skipped"]} == {
        ("/broken", 0)
    }
    assert all("not-a-port" not in str(s) for s in health["catalog"]["skipped"])
    assert reader.exists(layout.service_path(zk_path, "broken:0")) is None
    assert leader.metric("marathon_publisher_skipped_apps") == 1
    assert leader.metric("marathon_publisher_services") == 1
