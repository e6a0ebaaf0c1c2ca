"""HAProxy's admin socket deleted under the sidecar (a tmp cleaner, an operator's rm).

A reload does not bring the file back: in master-worker mode the new worker inherits the
listening socket's file descriptor from the old one, so the unlinked socket stays unlinked. The
sidecar must still get its server changes into HAProxy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit import wait_until
from testkit.apps import echo_app
from testkit.load import LoadGenerator
from testkit.marathon import MarathonCluster
from testkit.node import StartNode
from testkit.ports import free_ports

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def test_the_admin_socket_deleted_does_not_stop_server_changes(
    cluster: MarathonCluster, start_node: StartNode, load: LoadGenerator
) -> None:
    group, app_id = "flt-admin", "/flta/web"
    (port,) = free_ports(1)
    node = start_node((cluster.emulator.url,), group)
    try:
        cluster.deploy(echo_app(app_id, port, 2, group=group))
        wait_until(lambda: node.routes_exactly(cluster.emulator, app_id, port), 30)
        load.add_port(port)
        load.start()
        load.wait_for_requests(port, 50)
        os.unlink(node.admin_socket)
        victim = sorted(cluster.healthy(app_id))[0]
        cluster.emulator.set_task_health(victim, False)
        # HAProxy stops sending to the task: seen from outside, through the traffic
        wait_until(
            lambda: _not_served_since(load, port, victim),
            40,
            message="the unhealthy task left HAProxy's rotation",
        )
        cluster.emulator.set_task_health(victim, True)
        load.wait_for_requests(port, 150)
        stats = load.stats(port)
        assert stats.failures == 0, stats.errors[:5]
        # the sidecar notices and brings the socket back (e.g. a new path for the next worker)
        wait_until(lambda: Path(node.admin_socket).exists(), 60, message="admin socket back")
        assert node.health()["status"] == "ok"
    finally:
        load.stop()
        node.stop()
        if cluster.emulator.app(app_id) is not None:
            cluster.client.delete_app(app_id)


def _not_served_since(load: LoadGenerator, port: int, task_id: str) -> bool:
    """True once 60 requests in a row were answered by other tasks."""
    before = load.stats(port)
    load.wait_for_requests(port, 60)
    after = load.stats(port)
    return after.by_task[task_id] == before.by_task[task_id]
