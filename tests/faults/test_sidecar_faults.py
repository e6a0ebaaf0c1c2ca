"""The fault matrix, sidecar side: the ``marathon-sidecar`` process itself killed and restarted.

The sidecar runs as a real process (``python -m sidecar``) that starts HAProxy as its child.
Design decision, tested here: HAProxy is *not* tied to the sidecar's life. The master runs in
the foreground as a plain child without a parent-death signal, so when the sidecar is killed
(SIGKILL, OOM killer, a crash) HAProxy is re-parented and keeps serving its last config; the
next sidecar finds that master by its master socket and adopts it (no second master). A clean
stop (SIGTERM) stops HAProxy too (``tests/sidecar/test_end_to_end.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit import wait_until
from testkit.apps import echo_app, served_by_healthy
from testkit.haproxy import haproxy_masters
from testkit.load import LoadGenerator
from testkit.marathon import MarathonCluster
from testkit.ports import free_ports
from testkit.process import SidecarProcess, StartProcess, pid_alive

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

GROUP = "flt-sidecar"
APP = "/flts/web"
DURING = 150


@pytest.fixture(scope="module")
def sidecar(cluster: MarathonCluster, sidecar_process: StartProcess) -> Iterator[SidecarProcess]:
    with sidecar_process(cluster.emulator, GROUP) as process:
        try:
            yield process
        finally:
            if cluster.emulator.app(APP) is not None:
                cluster.client.delete_app(APP)


@pytest.fixture(scope="module")
def port(cluster: MarathonCluster, sidecar: SidecarProcess) -> int:
    (service_port,) = free_ports(1)
    cluster.deploy(echo_app(APP, service_port, 2, group=GROUP))
    sidecar.start()
    wait_until(lambda: sidecar.health().get("status") == "ok", 60, message="the sidecar is healthy")
    wait_until(
        lambda: served_by_healthy(cluster.emulator, APP, service_port),
        30,
        message="routes to both tasks",
    )
    return service_port


def test_the_sidecar_killed_leaves_haproxy_serving(
    cluster: MarathonCluster, sidecar: SidecarProcess, port: int, load: LoadGenerator
) -> None:
    load.add_port(port)
    load.start()
    load.wait_for_requests(port, 50)
    master = sidecar.master_pid()
    assert sidecar.proc is not None and pid_alive(master)
    sidecar.proc.kill()  # SIGKILL: no cleanup at all
    sidecar.proc.wait(10)
    load.wait_for_requests(port, DURING)
    stats = load.stats(port)
    assert stats.failures == 0, stats.errors[:5]
    assert set(stats.by_task) == cluster.healthy(APP)
    assert pid_alive(master), "HAProxy died with the sidecar"


def test_restarted_while_marathon_is_down_it_serves_the_last_known_state(
    cluster: MarathonCluster, sidecar: SidecarProcess, port: int, load: LoadGenerator
) -> None:
    assert sidecar.proc is not None and sidecar.proc.poll() is not None  # killed above
    old_master = sidecar.master_pid()
    sidecar.relay.cut()  # Marathon unreachable for this node
    sidecar.start()
    wait_until(
        lambda: sidecar.health().get("status") == "degraded",
        60,
        message=f"the new sidecar reports degraded: {sidecar.log_tail()}",
    )
    wait_until(lambda: served_by_healthy(cluster.emulator, APP, port), 30, message="served")
    # one HAProxy master serves: the old one, adopted by the new sidecar (not duplicated)
    assert sidecar.health()["haproxy_origin"] == "adopted"
    assert haproxy_masters(sidecar.state_dir) == [old_master] and pid_alive(old_master)
    load.add_port(port)
    load.start()
    load.wait_for_requests(port, 50)
    reasons = sidecar.health()["reasons"]
    assert reasons[0].startswith("serving last known state from "), reasons
    load.wait_for_requests(port, DURING)
    stats = load.stats(port)
    assert stats.failures == 0, stats.errors[:5]
    assert set(stats.by_task) == cluster.healthy(APP)
    sidecar.relay.restore()  # Marathon is back: /health recovers and changes flow
    wait_until(lambda: sidecar.health().get("status") == "ok", 60, message="healthy again")
    cluster.client.scale_app(APP, 3)
    wait_until(lambda: len(cluster.healthy(APP)) == 3, 60, message="scaled up")
    wait_until(
        lambda: served_by_healthy(cluster.emulator, APP, port), 30, message="the new task is routed"
    )
    load.wait_for_requests(port, DURING)
    assert load.stats(port).failures == 0, load.stats(port).errors[:5]
