"""ZooKeeper mode end to end, under load: Marathon (the emulator, real echo tasks) -> a
`marathon-publisher` process -> a three-server ZooKeeper ensemble -> two
`marathon-sidecar --source zookeeper` processes with their real HAProxy, bound to 127.0.0.2 and
127.0.0.3. What the sidecars read is what the publisher wrote (both go through
sidecar/sources/zookeeper/mapping.py).

Each test sends a steady load (a new connection per request, from its own process) through both
sidecars while something changes, and counts every failed request. Nothing is timed: every step
waits on a condition with a deadline, and each phase waits for a number of requests so that "0
failures" means something.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from kazoo.client import KazooClient

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.names import server_name
from sidecar.sources.zookeeper import layout, mapping
from testkit.apps import echo_app
from testkit.load_process import LoadProcess
from testkit.ports import free_ports
from testkit.publisher import PublisherProcess
from testkit.waiting import wait_until
from testkit.zk_catalog import register_nerve
from testkit.zk_mode import ZooKeeperSidecar
from testkit.zookeeper import ZooKeeperEnsemble

pytestmark = [pytest.mark.slow]  # zookeeper and haproxy come from the fixtures

BINDS = ("127.0.0.2", "127.0.0.3")
RATE = 600.0  # requests per second over both sidecars, each on a new connection
PHASE = 1200  # requests to wait for in each phase (about 2 s at RATE)
LEGACY = "legacy"  # the nerve-registered service of the YAML services: map
TEST_AGENT = "zk-system-test"  # the User-Agent of this test's own Marathon requests


class ZooKeeperSystem:
    """The emulator, the publisher and two ZooKeeper-mode sidecars on one ensemble."""

    def __init__(self, ensemble: ZooKeeperEnsemble, haproxy_bin: str, work: Path) -> None:
        self.ensemble = ensemble
        self.zk_path = f"/t/sidecar-system-{os.getpid()}/services"
        self.legacy_port = free_ports(1)[0]
        self.emulator = MarathonEmulator(run_tasks=True, kill_grace=0.5, heartbeat_interval=1.0)
        self.emulator.start()
        self.client = MarathonClient(self.emulator.url, user_agent=TEST_AGENT)
        self.publisher = PublisherProcess(
            work, "publisher", self.emulator.url, ensemble.address, self.zk_path,
            "--zk-session-timeout", "10",  # one server of three killed must not end the session
            "--empty-confirm", "30",
        )  # fmt: skip
        self.publisher.wait_health("to lead", role="leader")
        services = {LEGACY: {"port": self.legacy_port, "mode": "http"}}
        self.nodes = [
            ZooKeeperSidecar(bind, ensemble.address, self.zk_path, haproxy_bin, services)
            for bind in BINDS
        ]
        for node in self.nodes:
            node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.publisher.stop()
        self.client.close()
        self.emulator.stop()

    def healthy(self, app_id: str) -> set[str]:
        return {
            t["id"]
            for t in self.emulator.tasks(app_id, states=["TASK_RUNNING"])
            if t.get("healthCheckResults") and all(r["alive"] for r in t["healthCheckResults"])
        }

    def wait_routed(self, app_id: str, port: int, count: int, timeout: float = 90.0) -> set[str]:
        """Wait until `count` tasks are healthy and both sidecars route to exactly them."""
        wait_until(lambda: len(self.healthy(app_id)) == count, timeout, f"{count} healthy tasks")
        wait_until(
            lambda: all(n.routes_to(app_id, port, self.healthy(app_id)) for n in self.nodes),
            timeout,
            f"both sidecars to route {app_id} to its {count} healthy tasks",
        )
        return self.healthy(app_id)

    def deploy(self, app_id: str, instances: int) -> int:
        (port,) = free_ports(1)
        self.client.create_app(echo_app(app_id, port, instances))
        self.wait_routed(app_id, port, instances)
        return port

    def remove(self, app_id: str, port: int) -> None:
        self.client.delete_app(app_id)
        wait_until(lambda: all(not n.servers(app_id, port) for n in self.nodes), 60, "removed")

    def load(self, port: int) -> LoadProcess:
        load = LoadProcess([f"{bind}:{port}" for bind in BINDS], RATE)
        load.wait_for_requests(PHASE)
        return load


@pytest.fixture(scope="module")
def system(
    zk_ensemble: ZooKeeperEnsemble, haproxy_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ZooKeeperSystem]:
    made = ZooKeeperSystem(zk_ensemble, haproxy_bin, tmp_path_factory.mktemp("zk-system"))
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def admin(system: ZooKeeperSystem) -> Iterator[KazooClient]:
    client = KazooClient(hosts=system.ensemble.address)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


def no_failures(load: LoadProcess, record: Callable[[str, object], None]) -> dict[str, Any]:
    """Stop the load; record its figures; they must show no failed request."""
    load.stop()
    summary = load.summary()
    record("load", summary)
    print(f"load: {summary}")
    assert summary["failures"] == 0, summary["errors"]
    return summary


def test_scale_up_kill_and_deploy_through_two_sidecars_lose_no_request(
    system: ZooKeeperSystem, record_property: Callable[[str, object], None]
) -> None:
    port = system.deploy("/zks/web", 2)
    assert system.emulator.event_stream_count() == 1  # the publisher's; no sidecar's
    load = system.load(port)

    system.client.scale_app("/zks/web", 4)
    system.wait_routed("/zks/web", port, 4)
    load.wait_for_requests(PHASE)

    victim = sorted(system.healthy("/zks/web"))[0]
    system.emulator.kill_task(victim)
    left_at = []
    for node in system.nodes:
        wait_until(
            lambda node=node: server_name(victim) not in node.ready("/zks/web", port),
            30,
            f"{node.bind} to take the killed task out of rotation",
        )
        left_at.append(time.monotonic())
    load.wait_for_requests(PHASE)
    system.wait_routed("/zks/web", port, 4)  # its replacement
    for node in system.nodes:  # drained, then deleted (or kept in MAINT until a reload)
        wait_until(
            lambda node=node: (
                node.servers("/zks/web", port).get(server_name(victim), "maint") == "maint"
            ),
            60,
            f"the killed task to leave {node.bind}",
        )

    old = system.healthy("/zks/web")
    system.client.patch_app("/zks/web", {"env": {"RELEASE": "2"}})
    wait_until(lambda: not old & system.healthy("/zks/web"), 120, "every task replaced")
    new = system.wait_routed("/zks/web", port, 4)
    load.wait_for_requests(PHASE)

    summary = no_failures(load, record_property)
    assert summary["requests"] >= 4 * PHASE
    stats = load.stats()["targets"]
    for bind, at in zip(BINDS, left_at):
        target = stats[f"{bind}:{port}"]
        assert target["last_start"].get(victim, 0.0) < at, f"{bind} sent to {victim} after"
        assert set(target["by_task"]) >= new  # every new task served through both
    system.remove("/zks/web", port)


def test_only_the_publisher_talks_to_marathon_the_sidecars_hold_no_connection(
    system: ZooKeeperSystem, record_property: Callable[[str, object], None]
) -> None:
    port = system.deploy("/zks/quiet", 2)  # a change flowed to both sidecars
    system.client.scale_app("/zks/quiet", 3)
    system.wait_routed("/zks/quiet", port, 3)
    marathon = system.emulator

    assert marathon.event_stream_count() == 1  # the publisher's
    assert system.publisher.marathon_connections(marathon.port) >= 1  # what the check sees
    for node in system.nodes:
        assert node.connections_to(marathon.port) == 0, node.bind
    agents: dict[str, int] = {}
    for request in marathon.requests:
        agent = request.headers.get("User-Agent", "")
        agents[agent] = agents.get(agent, 0) + 1
    record_property("marathon_requests_by_agent", agents)
    print(f"Marathon requests by User-Agent: {agents}")
    strangers = {a for a in agents if a != TEST_AGENT and not a.startswith("marathon-publisher/")}
    assert not strangers, agents
    system.remove("/zks/quiet", port)


def test_a_zookeeper_server_killed_loses_no_request_and_changes_keep_flowing(
    system: ZooKeeperSystem, record_property: Callable[[str, object], None]
) -> None:
    port = system.deploy("/zks/ha", 2)
    load = system.load(port)
    leader = system.ensemble.wait_quorum()
    leader.kill()
    try:
        system.client.scale_app("/zks/ha", 3)
        system.wait_routed("/zks/ha", port, 3)
        load.wait_for_requests(PHASE)
        no_failures(load, record_property)
    finally:
        leader.start()
        system.ensemble.wait_quorum()
    system.remove("/zks/ha", port)


def test_all_of_zookeeper_stopped_keeps_routing_says_so_and_recovers_without_restarts(
    system: ZooKeeperSystem, record_property: Callable[[str, object], None]
) -> None:
    port = system.deploy("/zks/outage", 2)
    before = system.healthy("/zks/outage")
    pids = [node.pid for node in system.nodes]
    load = system.load(port)

    for server in system.ensemble.servers:
        server.stop()
    try:
        for node in system.nodes:
            report = wait_until(
                lambda node=node: zookeeper_away(node.health()),
                30,
                f"{node.bind}'s /health to say ZooKeeper is away",
            )
            assert report["http_status"] == 200 and report["status"] == "degraded"
        system.client.scale_app("/zks/outage", 3)  # Marathon changes; nobody can write it
        wait_until(lambda: len(system.healthy("/zks/outage")) == 3, 60, "a third task")
        load.wait_for_requests(PHASE)
        assert all(n.routes_to("/zks/outage", port, before) for n in system.nodes)
    finally:
        for server in system.ensemble.servers:
            server.launch()
        system.ensemble.wait_quorum()

    system.wait_routed("/zks/outage", port, 3)  # the change flows again
    for node in system.nodes:
        wait_until(lambda node=node: not zookeeper_reason(node.health()), 60, "the reason cleared")
    load.wait_for_requests(PHASE)
    no_failures(load, record_property)
    assert [node.pid for node in system.nodes] == pids
    system.remove("/zks/outage", port)


def zookeeper_reason(report: dict[str, Any]) -> bool:
    return any("ZooKeeper" in reason for reason in report.get("reasons", []))


def zookeeper_away(report: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The report, when it says ZooKeeper is away (a reason, and the source not connected)."""
    source = report.get("source") or {}
    away = zookeeper_reason(report) and source.get("connected") is False
    return report if away else None


def test_hostile_data_never_reaches_haproxy_and_never_stops_the_other_services(
    system: ZooKeeperSystem, admin: KazooClient, record_property: Callable[[str, object], None]
) -> None:
    port = system.deploy("/zks/hostile", 2)
    load = system.load(port)
    base = layout.service_path(system.zk_path, mapping.service_name("/zks/hostile", 0))
    evil = "evil-marker"
    children = {
        "bad-json_0000000001": b"{not json " + evil.encode(),
        "huge_0000000002": b'{"host":"' + evil.encode() * 2000 + b'","port":1,"name":"n"}',
        "unknown_0000000003": b'{"host":"10.9.9.9","port":1,"name":"n","evil-marker":"x"}',
        "badhost_0000000004": b'{"host":"10.9.9.9\\nserver evil-marker","port":1,"name":"n"}',
        "base64_12_evil!marker!!_": b"",
    }
    for name, data in children.items():
        admin.create(f"{base}/{name}", data)
    admin.create(f"{system.zk_path}/{evil} with spaces")
    options = layout.options_path(system.zk_path, mapping.service_name("/zks/hostile", 0))
    good_options = admin.get(options)[0]
    admin.set(options, good_options.replace(b'"roundrobin"', b'"roundrobin\\nevil-marker"'))
    try:
        for node in system.nodes:
            wait_until(
                lambda node=node: (
                    node.metric("marathon_sidecar_zookeeper_problems") >= len(children) + 2
                ),
                30,
                f"{node.bind} to report every bad entry",
            )
            wait_until(
                lambda node=node: lists_every_entry(node.status("/services")[1], children),
                30,
                f"{node.bind}'s /services to list every bad entry",
            )
        system.client.scale_app("/zks/hostile", 3)  # the service still follows Marathon
        system.wait_routed("/zks/hostile", port, 3)
        load.wait_for_requests(PHASE)
        for node in system.nodes:
            assert evil not in node.config_text()
            assert "10.9.9.9" not in node.config_text()
            assert node.log_text().count("bad-json_0000000001") == 1  # logged once
        no_failures(load, record_property)
    finally:
        admin.set(options, good_options)
        for name in children:
            admin.delete(f"{base}/{name}")
        admin.delete(f"{system.zk_path}/{evil} with spaces")
    system.remove("/zks/hostile", port)


def lists_every_entry(services: str, children: dict[str, bytes]) -> bool:
    """/services names every bad child, the bad options and the bad service name."""
    wanted = [*children, "options node not used", "evil-marker with spaces"]
    return all(text in services for text in wanted)


@contextlib.contextmanager
def echo_task(identity: str) -> Iterator[int]:
    """An echo server outside Marathon (what nerve would register), on a free port."""
    (port,) = free_ports(1)
    command = [sys.executable, "-m", "marathon_bridge.testing.echo_server", "--port", str(port)]
    process = subprocess.Popen(command, env={**os.environ, "MESOS_TASK_ID": identity})
    try:
        wait_until(lambda: _listens(port), 30, f"{identity} to listen")
        yield port
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_a_nerve_registered_service_is_served_with_the_port_of_the_services_map(
    system: ZooKeeperSystem, admin: KazooClient, record_property: Callable[[str, object], None]
) -> None:
    base = layout.service_path(system.zk_path, LEGACY)
    port = system.legacy_port
    with echo_task("nerve-a") as first, echo_task("nerve-b") as second:
        register_nerve(admin, base, "host-a", "127.0.0.1", first, ephemeral=True)  # nerve's default
        served = {server_name(f"host-a_127.0.0.1:{first}")}
        wait_until(
            lambda: all(n.ready(LEGACY, port) == served for n in system.nodes),
            60,
            "both sidecars to serve the nerve service on the port of the services: map",
        )
        load = LoadProcess([f"{bind}:{port}" for bind in BINDS], RATE)
        load.wait_for_requests(PHASE)
        summary = no_failures(load, record_property)
        assert all(t["by_task"] == {"nerve-a": t["ok"]} for t in load.stats()["targets"].values())
        assert summary["requests"] >= PHASE

        # the service node deleted (believed: the service leaves both sidecars) and created
        # again with another instance (followed); a Marathon app under load meanwhile loses
        # no request
        bystander_port = system.deploy("/zks/bystander", 2)
        bystander = system.load(bystander_port)
        admin.delete(base, recursive=True)
        wait_until(
            lambda: all(not n.ready(LEGACY, port) for n in system.nodes),
            60,
            "the deleted service to leave both sidecars",
        )
        register_nerve(admin, base, "host-b", "127.0.0.1", second)
        served = {server_name(f"host-b_127.0.0.1:{second}")}
        wait_until(
            lambda: all(n.ready(LEGACY, port) == served for n in system.nodes),
            60,
            "both sidecars to serve the recreated service",
        )
        bystander.wait_for_requests(PHASE)
        no_failures(bystander, record_property)
        system.remove("/zks/bystander", bystander_port)
    admin.delete(base, recursive=True)
