"""Zero dropped requests, with the whole system: emulator + sidecar daemon + a real HAProxy.

Every test runs a continuous loopback load (keep-alive ``requests.Session`` clients and
one-connection-per-request clients) through ``127.0.0.1:<servicePort>`` while Marathon changes
something, and counts every failed or non-200 request. Nothing is timed: conditions are polled
with deadlines, and each test asserts a minimum number of requests so "0 failures" means
something. HAProxy's worker pid (``show info`` on the admin socket) and the master's reload
counter (``show proc`` on the master CLI) tell a reload from a runtime change.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from sidecar.haproxy.runtime import RuntimeAPIError
from testkit import wait_until
from testkit.apps import echo_app
from testkit.load import LoadGenerator, PortStats
from testkit.ports import free_ports
from testkit.system import System

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

MIN_REQUESTS = 300  # per phase: enough traffic to make "no failure" meaningful


def no_failures(stats: PortStats) -> str:
    return f"{stats.failures} of {stats.sent} failed: {stats.errors[:5]}"


@pytest.fixture
def load() -> Iterator[LoadGenerator]:
    generator = LoadGenerator(keepalive=3, fresh=2)
    try:
        yield generator
    finally:
        generator.stop()


def reports_blocked(node: System, port: int, app_id: str) -> bool:
    """/health is degraded and a reason names the port or the app left out."""
    report = node.health()
    reasons = report.get("reasons", [])
    named = any(str(port) in r or app_id in r for r in reasons)
    return bool(named and report.get("status") == "degraded")


def remove_app(node: System, app_id: str) -> None:
    """Delete the app, and wait until HAProxy has dropped its backend too: otherwise that
    reload could land inside the next test, after it recorded the worker pid."""
    node.client.delete_app(app_id)
    wait_until(lambda: node.emu.app(app_id) is None, 30, message=f"{app_id} deleted")
    prefix = "be_" + app_id.strip("/").replace("/", "_")

    def backend_gone() -> bool:
        try:
            listed = node.runtime.execute("show backend").split()
        except RuntimeAPIError:
            return False
        return not any(name.startswith(prefix + "_") for name in listed)

    wait_until(backend_gone, 60, message=f"{app_id}'s backend gone from HAProxy")


def test_a_scale_down_under_load_loses_no_request(node: System, load: LoadGenerator) -> None:
    (port,) = free_ports(1)
    node.deploy(echo_app("/zd/scale", port, 4))
    load.add_port(port)
    load.start()
    load.wait_for_requests(port, MIN_REQUESTS)

    node.client.scale_app("/zd/scale", 1)
    # TASK_KILLING, then SIGTERM after the kill grace, then TASK_KILLED: the tasks are gone
    wait_until(lambda: len(node.emu.tasks("/zd/scale")) == 1, 60, message="three tasks ended")
    wait_until(lambda: node.converged("/zd/scale", port), 30, message="one server left")
    load.wait_for_requests(port, MIN_REQUESTS)
    load.stop()

    stats = load.stats(port)
    assert stats.sent >= 2 * MIN_REQUESTS
    assert stats.failures == 0, no_failures(stats)
    assert len(stats.by_task) == 4  # every task served before the scale-down
    remove_app(node, "/zd/scale")


def test_a_killed_task_stops_receiving_traffic(node: System, load: LoadGenerator) -> None:
    (port,) = free_ports(1)
    node.deploy(echo_app("/zd/kill", port, 3))
    load.add_port(port)
    load.start()
    victim = sorted(node.healthy_ids("/zd/kill"))[0]
    wait_until(lambda: load.stats(port).by_task[victim] > 0, 30, message="the victim serves")

    node.emu.kill_task(victim)  # TASK_KILLING now; the process gets SIGTERM after the grace
    wait_until(
        lambda: node.server_admin("/zd/kill", port, victim) != "ready",
        30,
        message="HAProxy stopped sending to the killed task",
    )
    applied_at = time.monotonic()
    load.wait_for_requests(port, MIN_REQUESTS)
    wait_until(lambda: node.converged("/zd/kill", port), 60, message="the replacement joins")
    load.wait_for_requests(port, MIN_REQUESTS // 3)
    load.stop()

    stats = load.stats(port)
    assert stats.last_start[victim] < applied_at, "a request sent after the drain reached it"
    assert stats.failures == 0, no_failures(stats)
    remove_app(node, "/zd/kill")


def test_adding_and_removing_servers_does_not_reload_haproxy(
    node: System, load: LoadGenerator
) -> None:
    (port,) = free_ports(1)
    node.deploy(echo_app("/zd/noreload", port, 2))
    load.add_port(port)
    load.start()
    worker = node.worker_pid()
    reloads = node.show_proc().reloads

    node.client.scale_app("/zd/noreload", 4)
    node.wait_scaled("/zd/noreload", port, 4, 60)
    node.emu.kill_task(sorted(node.healthy_ids("/zd/noreload"))[0])
    wait_until(lambda: len(node.emu.tasks("/zd/noreload")) == 4, 60, message="replaced")
    node.wait_scaled("/zd/noreload", port, 4, 60)
    node.client.scale_app("/zd/noreload", 2)
    wait_until(lambda: len(node.emu.tasks("/zd/noreload")) == 2, 60, message="scaled down")
    node.wait_scaled("/zd/noreload", port, 2, 60)
    load.wait_for_requests(port, MIN_REQUESTS)
    load.stop()

    assert node.worker_pid() == worker
    status = node.show_proc()
    assert status.reloads == reloads
    assert [w.pid for w in status.workers] == [worker]
    stats = load.stats(port)
    assert stats.failures == 0, no_failures(stats)
    assert len(stats.by_task) >= 5  # 2 first, 2 added, 1 replacement
    remove_app(node, "/zd/noreload")


def test_a_new_service_port_reloads_haproxy_seamlessly(node: System, load: LoadGenerator) -> None:
    old_port, new_port = free_ports(2)
    node.deploy(echo_app("/zd/existing", old_port, 2))
    load.add_port(old_port)
    load.start()
    load.wait_for_requests(old_port, MIN_REQUESTS // 3)
    worker = node.worker_pid()
    reloads = node.show_proc().reloads

    node.deploy(echo_app("/zd/newport", new_port, 2))  # a new listener: a reload
    wait_until(lambda: node.worker_pid() != worker, 30, message="a new worker serves")
    load.add_port(new_port)
    load.wait_for_requests(new_port, MIN_REQUESTS // 3)
    load.wait_for_requests(old_port, MIN_REQUESTS // 3)
    load.stop()

    assert node.show_proc().reloads > reloads
    existing = load.stats(old_port)
    assert existing.sent >= MIN_REQUESTS // 2
    assert existing.failures == 0, no_failures(existing)
    added = load.stats(new_port)
    assert added.failures == 0, no_failures(added)
    assert len(added.by_task) == 2
    remove_app(node, "/zd/newport")
    remove_app(node, "/zd/existing")


def test_a_failed_reload_leaves_the_old_config_serving(node: System, load: LoadGenerator) -> None:
    served_port, taken_port = free_ports(2)
    node.deploy(echo_app("/zd/serving", served_port, 2))
    load.add_port(served_port)
    load.start()
    worker = node.worker_pid()
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # no SO_REUSEPORT
    try:
        squatter.bind(("127.0.0.1", taken_port))
        squatter.listen(8)
        node.client.create_app(echo_app("/zd/blocked", taken_port, 1))
        wait_until(lambda: len(node.healthy_ids("/zd/blocked")) == 1, 60, message="task up")
        wait_until(
            lambda: reports_blocked(node, taken_port, "/zd/blocked"),
            30,
            message="/health names the port that cannot be bound, or the app left out",
        )
        assert node.health()["status"] == "degraded"
        load.wait_for_requests(served_port, MIN_REQUESTS)
        assert node.worker_pid() == worker  # the old config keeps serving
        assert node.converged("/zd/serving", served_port)
    finally:
        squatter.close()
    # the port is free again: the app is picked up on a later retry
    wait_until(lambda: node.worker_pid() != worker, 90, message="reloaded once the port is free")
    load.add_port(taken_port)
    load.wait_for_requests(taken_port, 20)
    load.stop()

    stats = load.stats(served_port)
    assert stats.failures == 0, no_failures(stats)
    assert load.stats(taken_port).failures == 0, no_failures(load.stats(taken_port))
    remove_app(node, "/zd/blocked")
    remove_app(node, "/zd/serving")


def test_a_taken_port_does_not_hold_back_server_changes_of_other_apps(node: System) -> None:
    """One app whose service port cannot be bound must not freeze routing for everyone else."""
    served_port, taken_port = free_ports(2)
    node.deploy(echo_app("/zd/other", served_port, 2))
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        squatter.bind(("127.0.0.1", taken_port))
        squatter.listen(8)
        node.client.create_app(echo_app("/zd/squatted", taken_port, 1))
        wait_until(
            lambda: reports_blocked(node, taken_port, "/zd/squatted"),
            30,
            message="the taken port is reported",
        )
        node.client.scale_app("/zd/other", 3)
        node.wait_scaled("/zd/other", served_port, 3, 30)
    finally:
        squatter.close()
    remove_app(node, "/zd/squatted")
    remove_app(node, "/zd/other")
