"""A sidecar restarted after being killed takes over the HAProxy its predecessor left running,
without a gap: no request fails across the takeover."""

from __future__ import annotations

import pytest
from faults_support import (
    Cluster,
    LoadGenerator,
    alive,
    free_ports,
    group_app,
    served_by_all,
    sidecar_process,
    wait_until,
)

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


def test_no_request_fails_while_a_restarted_sidecar_takes_over_haproxy(
    cluster: Cluster, haproxy_bin: str, load: LoadGenerator
) -> None:
    group, app_id = "flt-gap", "/fltg/web"
    (port,) = free_ports(1)
    with sidecar_process(cluster.emulator, haproxy_bin, group) as sidecar:
        try:
            cluster.deploy(group_app(app_id, port, 2, group))
            sidecar.start()
            wait_until(lambda: sidecar.health().get("status") == "ok", 60)
            wait_until(lambda: served_by_all(cluster.emulator, app_id, port), 30)
            load.add_port(port)
            load.start()
            load.wait_for_requests(port, 50)
            assert sidecar.proc is not None
            old_master = sidecar.master_pid()
            sidecar.proc.kill()
            sidecar.proc.wait(10)
            sidecar.start()  # Marathon is up: the new run starts at once
            wait_until(lambda: sidecar.health().get("status") == "ok", 60)
            wait_until(lambda: not alive(old_master), 60, message="the old master was replaced")
            load.wait_for_requests(port, 150)
            stats = load.stats(port)
            assert stats.failures == 0, f"{stats.failures} of {stats.sent}: {stats.errors[:5]}"
        finally:
            load.stop()
            if cluster.emulator.app(app_id) is not None:
                cluster.client.delete_app(app_id)
