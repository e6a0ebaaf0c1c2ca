"""ZooKeeper failing under the publisher and the watcher: restarts, a leader kill, session expiry,
and a publisher paused past its session that must not write when it wakes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import orjson
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
DRIVER = Path(__file__).with_name("publisher_process.py")


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


class PublisherProcess:
    """tests/zookeeper/publisher_process.py in a child process, its events collected."""

    def __init__(self, hosts: str, identifier: str, session_timeout: float) -> None:
        command = [sys.executable, str(DRIVER), hosts, ZK, identifier, str(session_timeout)]
        root = str(Path(__file__).resolve().parents[2])
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": root},
        )
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.append(orjson.loads(line))

    def publish(self, catalog: dict[str, ServiceSpec]) -> None:
        assert self.process.stdin is not None
        document = {
            s: [orjson.loads(layout.instance_json(i)) for i in spec.instances]
            for s, spec in catalog.items()
        }
        self.process.stdin.write(orjson.dumps(document) + b"\n")
        self.process.stdin.flush()

    def wait_event(self, what: str, **fields: Any) -> dict[str, Any]:
        def found() -> Any:
            if self.process.poll() is not None:
                raise AssertionError(f"the publisher process exited ({self.process.returncode})")
            return next((e for e in self.events if fields.items() <= e.items()), None)

        return wait_until(found, 60, f"{what} (events: {self.events})")

    def close(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.process.kill()
        self.process.wait()


def test_a_publisher_paused_past_its_session_cannot_write_when_it_wakes(
    zk_server: ZooKeeperServer,
    kazoo_client_factory: Callable[..., KazooClient],
    zk_chroot: str,
) -> None:
    hosts = zk_server.address + zk_chroot
    kazoo_client_factory(zk_server.address, chroot=zk_chroot)  # creates the chroot
    paused = PublisherProcess(hosts, "paused", session_timeout=1.0)
    try:
        paused.wait_event("the first process to lead", role="leader")
        paused.publish({"web": spec("v1")})
        paused.wait_event("v1 written", written=1)
        standby = Publisher(kazoo_client_factory(hosts), ZK, identifier="standby")
        standby.start()
        standby.publish({"web": spec("v2")})
        assert standby.role == "standby"

        paused.process.send_signal(signal.SIGSTOP)
        wait_until(lambda: standby.role == "leader", 60, "the standby to lead")
        assert standby.wait_written(1, 30)
        paused.publish({"web": spec("v3")})  # waits in the pipe until it wakes
        paused.process.send_signal(signal.SIGCONT)

        paused.wait_event("the woken publisher to take catalog 2", published=2)
        deposed = paused.wait_event("the woken publisher to step down", role="standby")
        reader = kazoo_client_factory(hosts)
        names = reader.get_children(layout.service_path(ZK, "web"))
        assert {layout.decode_child_name("", n) for n in names} == set(spec("v2").instances)
        assert deposed["role"] == "standby"
        assert {"written": 2} not in paused.events
        heartbeat = orjson.loads(reader.get(layout.heartbeat_path(ZK))[0])
        assert heartbeat["leader"] == "standby"
        standby.stop()
    finally:
        paused.close()
