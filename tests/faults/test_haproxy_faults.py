"""The fault matrix, HAProxy and state-directory side, under continuous loopback traffic.

One node serves one app of two echo tasks for the module; the rows that could damage it come
last (HAProxy killed). A bad user template gets its own node.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar.names import server_name
from sidecar.render import default_template
from testkit import wait_until
from testkit.apps import echo_app
from testkit.haproxy import haproxy_processes
from testkit.load import LoadGenerator
from testkit.marathon import MarathonCluster
from testkit.node import SidecarNode, StartNode
from testkit.ports import free_ports

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

GROUP = "flt-haproxy"
APP = "/flth/web"
DURING = 150


@dataclass
class Shared:
    cluster: MarathonCluster
    node: SidecarNode
    port: int

    def converged(self) -> bool:
        return self.node.routes_exactly(self.cluster.emulator, APP, self.port)


@pytest.fixture(scope="module")
def shared(cluster: MarathonCluster, start_node: StartNode) -> Iterator[Shared]:
    (port,) = free_ports(1)
    node = start_node((cluster.emulator.url,), GROUP)
    try:
        cluster.deploy(echo_app(APP, port, 2, group=GROUP))
        state = Shared(cluster, node, port)
        wait_until(state.converged, 30, message="the node routes to the app")
        yield state
    finally:
        node.stop()


@pytest.fixture
def traffic(shared: Shared, load: LoadGenerator) -> LoadGenerator:
    wait_until(shared.converged, 30, message="converged before the row")
    load.add_port(shared.port)
    load.start()
    load.wait_for_requests(shared.port, 50)
    return load


def no_failures(load: LoadGenerator, port: int) -> None:
    stats = load.stats(port)
    assert stats.failures == 0, f"{stats.failures} of {stats.sent} failed: {stats.errors[:5]}"


def flip_and_see(shared: Shared) -> None:
    """A server change (runtime API or reload) reaches HAProxy, and is undone."""
    emulator = shared.cluster.emulator
    victim = sorted(shared.cluster.healthy(APP))[0]
    emulator.set_task_health(victim, False)
    wait_until(
        lambda: server_name(victim) not in shared.node.ready_servers(APP, shared.port),
        30,
        message="the unhealthy task left the rotation",
    )
    emulator.set_task_health(victim, True)
    wait_until(shared.converged, 30, message="the task is back")


# ----------------------------------------------------------------------------- rows


def test_a_reload_refused_for_a_taken_port_leaves_the_running_config_serving(
    shared: Shared, traffic: LoadGenerator
) -> None:
    node = shared.node
    (taken,) = free_ports(1)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEPORT
    squatter.bind(("127.0.0.1", taken))
    squatter.listen(1)
    try:
        shared.cluster.client.create_app(echo_app("/flth/blocked", taken, 1, group=GROUP))
        wait_until(
            lambda: f"127.0.0.1:{taken}" in " ".join(node.health()["reasons"]),
            60,
            message="/health names the port that cannot be bound",
        )
        assert node.health()["status"] == "degraded"
        traffic.wait_for_requests(shared.port, DURING)
        no_failures(traffic, shared.port)
        assert shared.converged()
    finally:
        squatter.close()
    wait_until(
        lambda: len(node.ready_servers("/flth/blocked", taken)) == 1,
        90,
        message="the port is free: the new app is served",
    )
    shared.cluster.client.delete_app("/flth/blocked")
    traffic.wait_for_requests(shared.port, DURING)
    no_failures(traffic, shared.port)


def test_a_state_dir_that_cannot_be_written_keeps_serving_and_says_why(
    shared: Shared, traffic: LoadGenerator
) -> None:
    node = shared.node
    state_file = Path(node.state_dir) / "last-applied.json"
    errors = node.metric("marathon_sidecar_state_write_errors_total")
    state_file.unlink()
    state_file.mkdir()  # "full": the rename onto it fails, as on a full or broken disk
    try:
        flip_and_see(shared)
        wait_until(
            lambda: node.metric("marathon_sidecar_state_write_errors_total") > errors,
            30,
            message="the failed write was counted",
        )
        health = node.health()
        assert health["status"] == "degraded", health
        assert any("not saved" in r for r in health["reasons"]), health
        traffic.wait_for_requests(shared.port, DURING)
        no_failures(traffic, shared.port)
    finally:
        state_file.rmdir()
    flip_and_see(shared)
    wait_until(lambda: node.health()["status"] == "ok", 30, message="the problem clears")
    assert state_file.is_file()


def test_haproxy_killed_is_restarted_and_traffic_comes_back(
    shared: Shared, traffic: LoadGenerator
) -> None:
    node = shared.node
    haproxy = node.daemon.haproxy
    master = haproxy.master_pid
    assert master is not None
    restarts = node.metric("marathon_sidecar_haproxy_restarts_total")
    os.kill(master, signal.SIGKILL)  # requests fail until the new master binds: a real outage
    wait_until(lambda: haproxy.master_pid not in (None, master), 60, message="a new master")
    wait_until(
        lambda: node.metric("marathon_sidecar_haproxy_restarts_total") > restarts,
        30,
        message="the restart was counted",
    )
    wait_until(shared.converged, 30, message="every task routed again")
    before = traffic.stats(shared.port)
    traffic.wait_for_requests(shared.port, DURING)
    after = traffic.stats(shared.port)
    assert after.failures == before.failures, after.errors[-5:]  # none since the restart
    assert set(after.by_task) >= shared.cluster.healthy(APP)
    # the killed master's worker left: one master and one worker serve
    wait_until(
        lambda: len(haproxy_processes(node.state_dir)) == 2,
        30,
        message="no leftover haproxy process",
    )
    wait_until(lambda: node.health()["status"] == "ok", 30)


BAD_TEMPLATE_TAILS = {
    # fine for one backend; a second one hits an undefined name (StrictUndefined raises)
    "render-error": "\n{% if backends | length > 1 %}{{ no_such_setting }}{% endif %}\n",
    # fine for one backend; with two, a line HAProxy refuses (haproxy -c fails)
    "haproxy-refuses": "\n{% if backends | length > 1 %}\nbackend be_bogus\n    no-such-keyword 1\n"
    "{% endif %}\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_TEMPLATE_TAILS))
def test_a_bad_user_template_leaves_the_old_config_serving(
    cluster: MarathonCluster, start_node: StartNode, load: LoadGenerator, tmp_path: Path, kind: str
) -> None:
    group = f"flt-tpl-{kind}"
    template = tmp_path / "haproxy.cfg.j2"
    template.write_text(default_template() + BAD_TEMPLATE_TAILS[kind], encoding="utf-8")
    port, second = free_ports(2)
    one, two = f"/fltt/{kind}/one", f"/fltt/{kind}/two"
    node = start_node((cluster.emulator.url,), group, template=str(template))
    try:
        cluster.deploy(echo_app(one, port, 2, group=group))
        wait_until(lambda: node.routes_exactly(cluster.emulator, one, port), 30, message="served")
        load.add_port(port)
        load.start()
        load.wait_for_requests(port, 50)
        cluster.client.create_app(echo_app(two, second, 1, group=group))
        wait_until(
            lambda: node.health()["status"] == "degraded",
            60,
            message="/health reports the failed apply",
        )
        reasons = " ".join(node.health()["reasons"])
        assert (
            "apply failed" in reasons
            or "HAProxy keeps its running config" in reasons
            or ("refused" in reasons)
        ), reasons
        load.wait_for_requests(port, DURING)
        no_failures(load, port)
        assert node.routes_exactly(cluster.emulator, one, port)
        assert f":{second}" not in node.status("/config")[1]
        load.stop()
    finally:
        node.stop()
        for app_id in (one, two):
            if cluster.emulator.app(app_id) is not None:
                cluster.client.delete_app(app_id)
