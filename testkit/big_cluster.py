"""A big cluster on one node, for the big-cluster benchmarks.

:class:`BigCluster` is the Marathon emulator holding ``apps`` apps of ``tasks_per_app`` tasks
each (:func:`~testkit.cluster.emulator_apps`: simulated tasks, no process, a COMMAND health check
that tests set), created in one ``PUT /v2/apps``, plus one probe app of real echo tasks
(:data:`PROBE_APP`, HTTP) whose routing a benchmark watches with traffic. The sidecar runs as a
child process (``python -m sidecar``) with its real HAProxy, every service port on 127.0.0.1;
the apps take consecutive service ports, the first free block from 2000 up, the probe app the
one after them. With ``source="zookeeper"`` a ZooKeeper server and a ``marathon-publisher``
following the emulator stand between it and the sidecar (:class:`~testkit.publisher.Publishing`).
Everything is read from outside: /proc, the status server's /metrics, the sidecar's JSON log,
HAProxy's sockets.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import requests

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.haproxy.runtime import MasterCLI, ProcStatus, RuntimeAPI
from sidecar.names import backend_name, server_name
from testkit.apps import echo_app, healthy_task_ids
from testkit.cluster import emulator_apps
from testkit.haproxy import haproxy_masters, haproxy_processes
from testkit.http import ask, metric_sample, metric_sum, status_of
from testkit.machine import find_haproxy
from testkit.node import ready_server_names, short_state_dir
from testkit.ports import free_port, free_port_block
from testkit.process import SidecarProcess
from testkit.publisher import Publishing
from testkit.waiting import wait_until

PROBE_APP = "/bench/probe"
# host ports the emulator hands out: its simulated tasks bind nothing, so the range only has to
# be wide (3 tasks x 10k apps); the probe's real tasks get ports that are free when they start
TASK_HOST_PORTS = (21000, 65000)
EPHEMERAL_PORTS_START = 32768  # Linux's default ip_local_port_range


def add_cluster_arguments(parser: argparse.ArgumentParser, apps: bool = True) -> None:
    """The big-cluster benchmarks' shared flags: ``--apps`` (unless ``apps`` is false: the
    benchmark takes several sizes) and ``--sidecar-arg``."""
    if apps:
        parser.add_argument("--apps", type=int, default=10_000, help="apps of 3 tasks each")
    parser.add_argument(
        "--sidecar-arg", action="append", default=[], help="one more sidecar flag (repeatable)"
    )


def service_port_block(count: int) -> int:
    """Consecutive free service ports: below the emulator's task ports, or (when another big
    cluster holds those, e.g. a second benchmark on the machine) up to the ephemeral range,
    where this cluster's tasks bind nothing (only the probe's real tasks bind, on free ports)."""
    try:
        return free_port_block(count)
    except RuntimeError:
        return free_port_block(count, low=TASK_HOST_PORTS[0], high=EPHEMERAL_PORTS_START)


@dataclass
class BigClusterOptions:
    apps: int = 1000
    tasks_per_app: int = 3
    probe_instances: int = 3
    kill_grace: float = 1.0  # TASK_KILLING -> SIGTERM (probe tasks) or TASK_KILLED (simulated)
    resync_interval: float = 3600.0  # a benchmark asks for resyncs itself
    sidecar_args: tuple[str, ...] = ()  # more flags for ``python -m sidecar``
    source: str = "marathon"  # "zookeeper": emulator -> publisher -> ZooKeeper -> sidecar
    zk_heap_mb: int = 512  # the ZooKeeper JVM's heap (30,000 instance nodes at 10k apps)

    def settle_timeout(self) -> float:
        """How long the emulator may take to start every task (a few ms each when loaded)."""
        return 120.0 + self.apps * self.tasks_per_app * 0.01


class BigCluster:
    """The emulator with a big cluster and a probe app; a sidecar process on it (module doc)."""

    def __init__(self, options: BigClusterOptions) -> None:
        self.options = options
        self.emulator: Optional[MarathonEmulator] = None
        self.client: Optional[MarathonClient] = None
        self.sidecar: Optional[SidecarProcess] = None
        self.publishing: Optional[Publishing] = None
        self.first_port = 0

    # -- Marathon side

    @property
    def emu(self) -> MarathonEmulator:
        assert self.emulator is not None, "the emulator is not running"
        return self.emulator

    @property
    def probe_port(self) -> int:
        return self.first_port + self.options.apps

    def start_marathon(self) -> BigCluster:
        """Start the emulator, create every app and the probe app, wait until all tasks run."""
        options = self.options
        self.emulator = MarathonEmulator(
            run_tasks=True,
            kill_grace=options.kill_grace,
            health_interval=1.0,  # only the probe's tasks are probed; the pass is over all tasks
            host_port_range=TASK_HOST_PORTS,
        ).start()
        self.client = MarathonClient(self.emu.url, timeout=(3.0, 60.0))
        self.first_port = service_port_block(options.apps + 1)
        apps = emulator_apps(
            options.apps, first_port=self.first_port, instances=options.tasks_per_app
        )
        response = requests.put(self.emu.url + "/v2/apps", json=apps, timeout=300)
        response.raise_for_status()
        self.client.create_app(echo_app(PROBE_APP, self.probe_port, options.probe_instances))
        wait_until(self.settled, options.settle_timeout(), "every task of the cluster runs")
        return self

    def settled(self) -> bool:
        """No deployment in progress: every app has its tasks running and healthy."""
        return not self.emu.deployments()

    def probe_tasks(self) -> set[str]:
        return healthy_task_ids(self.emu, PROBE_APP)

    def probe_routed(self) -> set[str]:
        """The probe's healthy tasks that HAProxy has ready now (its admin socket)."""
        runtime = RuntimeAPI(str(Path(self.process.state_dir) / "run" / "admin.sock"))
        ready = ready_server_names(runtime, backend_name(PROBE_APP, self.probe_port))
        return {t for t in self.probe_tasks() if server_name(t) in ready}

    def probe_served(self) -> bool:
        """A new connection to the probe's port is answered by one of its healthy tasks."""
        return ask(self.probe_port, 1.0) in self.probe_tasks()

    # -- the sidecar

    def start_sidecar(self) -> SidecarProcess:
        """Start ``python -m sidecar`` on a new state directory (its HAProxy comes later); in
        ZooKeeper mode, first ZooKeeper and the publisher, which takes the resync interval."""
        resync = ["--resync-interval", str(self.options.resync_interval)]
        if self.options.source == "zookeeper":
            args = self._start_publishing(resync)
        else:
            args = ["--marathon", self.emu.url, *resync]
        args += ["--log-level", "INFO", "--log-format", "json", *self.options.sidecar_args]
        state_dir = short_state_dir("big-")
        self.sidecar = SidecarProcess(args, state_dir, free_port(), find_haproxy())
        return self.sidecar.start()

    def _start_publishing(self, publisher_args: list[str]) -> list[str]:
        work = Path(tempfile.mkdtemp(prefix="big-zk-"))
        # the publisher's default session timeout: the test kit's 1 s expires under the first
        # writes of 10,000 services on this machine
        publisher_args = [*publisher_args, "--zk-session-timeout", "10"]
        self.publishing = Publishing(
            work, self.emu.url, *publisher_args, heap_mb=self.options.zk_heap_mb, lead_timeout=600
        )
        return self.publishing.sidecar_args()

    @property
    def publisher_pid(self) -> int:
        assert self.publishing is not None, "not in ZooKeeper mode"
        return self.publishing.publisher.pid

    def publisher_metrics_text(self) -> str:
        assert self.publishing is not None, "not in ZooKeeper mode"
        return self.publishing.publisher.metrics_text()

    @property
    def process(self) -> SidecarProcess:
        assert self.sidecar is not None, "the sidecar is not running"
        return self.sidecar

    @property
    def sidecar_pid(self) -> int:
        proc = self.process.proc
        assert proc is not None
        return proc.pid

    def request_resync(self) -> None:
        """SIGHUP: the sidecar takes a fresh snapshot of Marathon."""
        os.kill(self.sidecar_pid, signal.SIGHUP)

    def haproxy_pids(self) -> list[int]:
        """The HAProxy master and its workers started by the sidecar."""
        return sorted(haproxy_processes(self.process.state_dir))

    def haproxy_master_pid(self) -> int:
        (master,) = haproxy_masters(self.process.state_dir)
        return master

    def wait_served(self, timeout: float) -> None:
        """Wait until the probe app answers through HAProxy (the sidecar must stay up)."""

        def served() -> bool:
            if self.process.exited():
                raise AssertionError(f"the sidecar exited: {self.process.log_tail()}")
            return self.probe_served()

        wait_until(served, timeout, "the probe app is served through HAProxy", interval=0.01)

    def stop_sidecar(self) -> None:
        if self.sidecar is not None:
            self.sidecar.stop()
            shutil.rmtree(self.sidecar.state_dir, ignore_errors=True)
            self.sidecar = None
        if self.publishing is not None:
            self.publishing.stop()
            shutil.rmtree(self.publishing.zookeeper.workdir.parent, ignore_errors=True)
            self.publishing = None

    def stop(self) -> None:
        self.stop_sidecar()
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    def __enter__(self) -> BigCluster:
        return self.start_marathon()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the sidecar, seen from outside

    def metrics_text(self) -> str:
        status, text = status_of(self.process.status_port, "/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}: {text[:300]}")
        return text

    def metric(self, name: str, labels: Optional[dict[str, str]] = None) -> float:
        return metric_sample(self.metrics_text(), name, labels)

    def metric_total(self, name: str) -> float:
        return metric_sum(self.metrics_text(), name)

    def show_proc(self) -> ProcStatus:
        """HAProxy's master CLI ``show proc`` (its reload counter, the workers)."""
        socket = str(Path(self.process.state_dir) / "run" / "master.sock")
        return MasterCLI(socket).show_proc_retrying(10.0)

    def log_records(self, message: str) -> list[dict[str, Any]]:
        """The sidecar's JSON log lines with this message, oldest first."""
        records = []
        for line in self.process.log_text().splitlines():
            if f'"message":"{message}"' in line:
                records.append(json.loads(line))
        return records


def log_time(record: dict[str, Any]) -> float:
    """A JSON log line's time as a Unix timestamp (millisecond precision)."""
    parsed = datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.replace(tzinfo=timezone.utc).timestamp()
