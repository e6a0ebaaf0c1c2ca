"""ZooKeeper failing under the publisher and the watcher: restarts, a leader kill, session expiry.

A publisher process paused past its session (it must not write when it wakes) is
tests/publisher/test_processes.py's, through testkit.publisher.PublisherProcess."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from publisher.plan import ServiceSpec
from publisher.publisher import Publisher
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import Instance
from sidecar.sources.zookeeper.watcher import CatalogWatcher
from testkit import wait_until
from testkit.zookeeper import (
    UpdateRecorder,
    ZooKeeperEnsemble,
    ZooKeeperServer,
    expire_session,
)

ZK = layout.DEFAULT_ZK_PATH


def task(n: int, version: str) -> Instance:
    labels = {
        "source": "marathon-bridge",
        "app_id": "/web",
        "task_id": f"web.{n}",
        "version": version,
    }
    return Instance.make(f"10.0.0.{n + 1}", 31000 + n, f"web.{n}", weight=1, labels=labels)


def spec(version: str, count: int = 2) -> ServiceSpec:
    return ServiceSpec.of([task(n, version) for n in range(count)], {"port": 10080})


def has_version(version: str) -> Callable[[Any], bool]:
    return lambda u: bool(u.instances) and all(i.label("version") == version for i in u.instances)


@pytest.fixture
def stack(kazoo_client_factory: Callable[..., KazooClient]) -> Iterator[Callable[..., Any]]:
    """`start(hosts, **client options)` -> (publisher, recorder, watcher client)."""
    made: list[Any] = []

    def start(
        hosts: str, chroot: str, **options: Any
    ) -> tuple[Publisher, UpdateRecorder, KazooClient]:
        publisher = Publisher(kazoo_client_factory(hosts, chroot=chroot, **options), ZK, "p")
        client = kazoo_client_factory(hosts, chroot=chroot, **options)
        recorder = UpdateRecorder()
        watcher = CatalogWatcher(client, ZK, recorder)
        recorder.watcher = watcher
        made.extend([publisher, watcher])
        publisher.start()
        watcher.start()
        return publisher, recorder, client

    yield start
    for thing in made:
        thing.stop()


def test_a_restarted_server_loses_no_update(
    zk_server_factory: Callable[..., ZooKeeperServer], stack: Callable[..., Any], zk_chroot: str
) -> None:
    server = zk_server_factory()
    publisher, seen, _ = stack(server.address, zk_chroot)
    publisher.publish({"web": spec("v1")})
    seen.wait_for("web", has_version("v1"), "v1")

    server.stop()
    wait_until(lambda: seen.watcher.state != KazooState.CONNECTED, 30, "the watcher to notice")
    assert seen.watcher.snapshot()["web"].instances == tuple(
        sorted(spec("v1").instances, key=lambda i: i.key)
    )
    publisher.publish({"web": spec("v2")})  # while ZooKeeper is away
    server.start()

    seen.wait_for("web", has_version("v2"), "v2 after the restart")
    assert seen.watcher.state == KazooState.CONNECTED


def test_the_ensemble_leader_killed_loses_no_update(
    zk_ensemble: ZooKeeperEnsemble,
    stack: Callable[..., Any],
    zk_chroot: str,
) -> None:
    leader = zk_ensemble.wait_quorum()
    others = [s.address for s in zk_ensemble.servers if s is not leader]
    hosts = ",".join([leader.address, *others])  # both clients start on the leader
    publisher, seen, _ = stack(hosts, zk_chroot, randomize_hosts=False)
    publisher.publish({"web": spec("v1")})
    seen.wait_for("web", has_version("v1"), "v1")

    leader.kill()
    for version in ("v2", "v3", "v4"):
        publisher.publish({"web": spec(version)})
    try:
        seen.wait_for("web", has_version("v4"), "v4 after the failover", timeout=60)
        assert publisher.wait_written(publisher.publish({"web": spec("v4")}), 30)
    finally:
        leader.start()
        zk_ensemble.wait_quorum()


def test_session_expiry_reestablishes_every_watch(
    zk_server: ZooKeeperServer, stack: Callable[..., Any], zk_chroot: str
) -> None:
    publisher, seen, client = stack(zk_server.address, zk_chroot)
    publisher.publish({"web": spec("v1"), "api": spec("v1", 1)})
    seen.wait_for("web", has_version("v1"), "v1")
    seen.wait_for("api", has_version("v1"), "api v1")

    expire_session(client)

    publisher.publish({"web": spec("v2", 3)})  # one service changed, one removed
    seen.wait_for(
        "web", lambda u: has_version("v2")(u) and len(u.instances) == 3, "v2 after expiry"
    )
    seen.wait_for("api", lambda u: not u.exists, "api removed after expiry")
    publisher.publish({"web": spec("v2", 3), "api": spec("v3", 1)})
    seen.wait_for("api", has_version("v3"), "a service created after expiry")
