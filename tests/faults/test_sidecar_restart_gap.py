"""A sidecar killed with SIGKILL and restarted, again and again under load, loses no request.

The killed sidecar leaves its HAProxy serving; each new run adopts that master (issue 15): no
second master binds the ports next to it (two SO_REUSEPORT accept queues, connections waiting
in the old one reset when it closes), reloads go through its master CLI. Continuously sampled:
exactly one HAProxy master for this config at every moment; at the end no old worker is left,
and a SIGTERM to the last run stops the adopted HAProxy.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sidecar.haproxy.runtime import MasterCLI
from testkit import wait_until
from testkit.apps import echo_app, served_by_healthy
from testkit.haproxy import haproxy_masters, haproxy_processes
from testkit.load import LoadGenerator
from testkit.marathon import MarathonCluster
from testkit.ports import free_ports
from testkit.process import SidecarProcess, StartProcess

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

GROUP = "flt-gap"
HTTP_APP, TCP_APP = "/fltg/web", "/fltg/db"
RESTARTS = int(os.environ.get("FAULTS_SOAK_RESTARTS", "20"))  # restarts that serve (at least 20)
EARLY_KILLS = 0.25  # share of restarts whose run is killed once more while it starts


class MasterSampler:
    """A thread counting the live HAProxy masters of one config, back to back, until stopped."""

    def __init__(self, config: str) -> None:
        self.config = config
        self.counts: Counter[int] = Counter()  # masters seen -> samples
        self.masters: set[int] = set()  # every master pid seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="master-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            masters = haproxy_masters(self.config)
            self.counts[len(masters)] += 1
            self.masters.update(masters)
            self._stop.wait(0.01)

    def __enter__(self) -> MasterSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def adopted_and_ok(sidecar: SidecarProcess) -> bool:
    health = sidecar.health()
    return health.get("status") == "ok" and health.get("haproxy_origin") == "adopted"


def no_old_worker(sidecar: SidecarProcess, config: str) -> bool:
    status = MasterCLI(str(Path(sidecar.state_dir) / "run" / "master.sock")).show_proc()
    return not status.old_workers and len(haproxy_processes(config)) == 2  # master + worker


def deploy_apps(cluster: MarathonCluster, http_port: int, tcp_port: int) -> None:
    cluster.deploy(echo_app(HTTP_APP, http_port, 2, group=GROUP))
    tcp = echo_app(TCP_APP, tcp_port, 2, group=GROUP)
    tcp["labels"]["HAPROXY_0_MODE"] = "tcp"
    cluster.deploy(tcp)


def kill(sidecar: SidecarProcess) -> None:
    assert sidecar.proc is not None
    sidecar.proc.kill()
    sidecar.proc.wait(10)


def kill_and_restart(sidecar: SidecarProcess, load: LoadGenerator, rng: random.Random) -> None:
    """SIGKILL the sidecar; HAProxy alone serves for a while; the next run adopts it. Now and
    then a run is killed again while it starts (maybe in the middle of adopting and reloading:
    the run after it adopts what that one left)."""
    port = load.ports()[0]
    kill(sidecar)
    load.wait_for_requests(port, rng.randint(50, 300))
    if rng.random() < EARLY_KILLS:
        sidecar.start()
        threading.Event().wait(rng.uniform(0.2, 1.5))  # a random moment of its start
        kill(sidecar)
    sidecar.start()
    wait_until(lambda: adopted_and_ok(sidecar), 60, message=f"adopted: {sidecar.log_tail()}")
    load.wait_for_requests(port, rng.randint(50, 500))


def test_a_sidecar_killed_and_restarted_again_and_again_under_load_loses_no_request(
    cluster: MarathonCluster, sidecar_process: StartProcess
) -> None:
    http_port, tcp_port = free_ports(2)
    load = LoadGenerator(keepalive=0, fresh=4, pause=0.001)  # a new connection per request
    rng = random.Random(15)
    with sidecar_process(cluster.emulator, GROUP) as sidecar:
        config = str(Path(sidecar.state_dir) / "haproxy.cfg")
        try:
            deploy_apps(cluster, http_port, tcp_port)
            sidecar.start()
            wait_until(lambda: sidecar.health().get("status") == "ok", 60, message="healthy")
            for app_id, port in ((HTTP_APP, http_port), (TCP_APP, tcp_port)):
                wait_until(lambda a=app_id, p=port: served_by_healthy(cluster.emulator, a, p), 30)
            first_master = sidecar.master_pid()
            with MasterSampler(config) as sampler:
                load.add_port(http_port)
                load.add_port(tcp_port)
                load.start()
                load.wait_for_requests(http_port, 50)
                for _ in range(RESTARTS):
                    kill_and_restart(sidecar, load, rng)
                wait_until(lambda: no_old_worker(sidecar, config), 60, message="old workers left")
                load.stop()
            report = soak_report(load, sampler, RESTARTS, len(sidecar.runs) - 1 - RESTARTS)
            print(report)
            for port in (http_port, tcp_port):
                stats = load.stats(port)
                assert stats.failures == 0, f"{report}: {stats.errors[:5]}"
                assert stats.ok > 0 and len(stats.by_task) == 2, report
            assert set(sampler.counts) == {1}, report  # one master at every sample
            assert sampler.masters == {first_master}, report  # the first, adopted 20 times
            stop_on_purpose(sidecar, config)
        finally:
            load.stop()
            for app_id in (HTTP_APP, TCP_APP):
                if cluster.emulator.app(app_id) is not None:
                    cluster.client.delete_app(app_id)


def soak_report(
    load: LoadGenerator, sampler: MasterSampler, restarts: int, early_kills: int
) -> dict[str, Any]:
    totals = load.totals()
    return {
        "requests": totals.sent,
        "failed": totals.failures,
        "restarts": restarts,
        "killed_while_starting": early_kills,
        "seconds": round(load.stopped_at - load.started_at, 1),
        "master_samples": dict(sampler.counts),
        "masters_seen": sorted(sampler.masters),
    }


def stop_on_purpose(sidecar: SidecarProcess, config: str) -> None:
    """SIGTERM to the last run: it stops the HAProxy it adopted, master and workers."""
    assert sidecar.proc is not None
    sidecar.proc.send_signal(signal.SIGTERM)
    assert sidecar.proc.wait(60) == 0
    assert haproxy_processes(config) == {}
