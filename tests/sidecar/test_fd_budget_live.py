"""The sidecar and its HAProxy under a hard open-files limit (``prlimit``): they serve, and
``/health``, ``/metrics`` and HAProxy itself tell the effective maxconn and why.

- 1,024 (a common container default): maxconn is lowered to fit; real traffic routes through
  HAProxy; the warning is logged once, not on every change;
- 8,000 with 5,000 apps (5,000 listeners, 5,000 checked servers; the default maxconn would need
  over 18,000): the passive checks are given up, what they leave goes to maxconn, every listener
  is kept, and a probe app's traffic routes.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from marathon_bridge.testing.echo_server import EchoHandler, EchoServer
from marathon_bridge.testing.tasks import echo_server_cmd
from sidecar.fd_budget import MAXCONN_FLOOR
from sidecar.haproxy.runtime import RuntimeAPI
from testkit import free_port, wait_until
from testkit.http import ask
from testkit.ports import EMULATOR_TASK_PORTS, free_port_block
from testkit.process import SidecarProcess

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

BUDGET_WARNING = "open-files limit too low"


@contextlib.contextmanager
def sidecar_under(
    limit: int, marathon_url: str, haproxy_bin: str, tmp_path: Path
) -> Iterator[SidecarProcess]:
    """``prlimit --nofile=L:L python -m sidecar`` following ``marathon_url``."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    sidecar = SidecarProcess(
        ["--marathon", marathon_url, "--log-format", "json"], str(state_dir), free_port(),
        haproxy_bin, wrapper=("prlimit", f"--nofile={limit}:{limit}"),
    )  # fmt: skip
    try:
        yield sidecar.start()
    finally:
        sidecar.stop()


def metric(sidecar: SidecarProcess, name: str) -> float:
    for line in sidecar.status("/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


def haproxy_info(sidecar: SidecarProcess) -> dict[str, str]:
    return RuntimeAPI(str(Path(sidecar.state_dir) / "run" / "admin.sock")).show_info()


def log_records(sidecar: SidecarProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in sidecar.log_text().splitlines() if line.startswith("{")]


def routes_to(port: int, task_ids: set[str], requests: int = 10) -> bool:
    """Every one of a few requests is answered by one of ``task_ids``, and all of them answer."""
    seen = {ask(port) for _ in range(requests)}
    return seen == task_ids


def serving(sidecar: SidecarProcess, port: int, task_ids: Callable[[], set[str]]) -> bool:
    """Traffic routes to the tasks, and the sidecar has posted what its HAProxy runs."""
    health = sidecar.health()
    return routes_to(port, task_ids()) and health["http_status"] == 200 and "descriptors" in health


def assert_budget_agrees(sidecar: SidecarProcess, limit: int) -> dict[str, Any]:
    """/health, /metrics and HAProxy's ``show info`` tell the same budget; returns /health's."""
    health = sidecar.health()
    assert health["http_status"] == 200, health
    budget = health["descriptors"]
    assert budget["fd_limit"] == limit
    assert budget["maxconn_wanted"] == 4096
    assert MAXCONN_FLOOR <= budget["maxconn_effective"] < 4096
    assert health["status"] == "degraded"
    assert any(f"maxconn {budget['maxconn_effective']} instead of 4096" in r
               for r in health["reasons"]), health  # fmt: skip
    assert metric(sidecar, "marathon_sidecar_fd_limit") == limit
    assert metric(sidecar, "marathon_sidecar_fd_needed") == budget["fd_needed"]
    assert metric(sidecar, "marathon_sidecar_maxconn_wanted") == 4096
    assert metric(sidecar, "marathon_sidecar_maxconn_effective") == budget["maxconn_effective"]
    info = haproxy_info(sidecar)
    assert int(info["Maxconn"]) == budget["maxconn_effective"]
    assert int(info["Maxsock"]) <= limit
    return health


def test_serves_under_a_1024_descriptor_limit(haproxy_bin: str, tmp_path: Path) -> None:
    port = free_port()
    with MarathonEmulator(run_tasks=True) as marathon:
        client = MarathonClient(marathon.url)
        client.create_app(
            {"id": "/limited/web", "cmd": echo_server_cmd(), "instances": 2, "cpus": 0.01,
             "mem": 16, "portDefinitions": [{"port": port, "protocol": "tcp", "name": "http"}]}
        )  # fmt: skip

        def running() -> set[str]:
            return {t["id"] for t in marathon.tasks("/limited/web", states=["TASK_RUNNING"])}

        wait_until(lambda: len(running()) == 2, timeout=60)
        with sidecar_under(1024, marathon.url, haproxy_bin, tmp_path) as sidecar:
            wait_until(lambda: serving(sidecar, port, running), timeout=90,
                       message=f"routing under 1,024 (log: {sidecar.log_path})")  # fmt: skip
            health = assert_budget_agrees(sidecar, 1024)
            budget = health["descriptors"]
            assert budget["fd_needed"] == int(haproxy_info(sidecar)["Maxsock"])  # all of it
            assert budget["left_out"] is None and "raise it by" in " ".join(health["reasons"])

            client.scale_app("/limited/web", 3)  # a change through the runtime API
            wait_until(lambda: len(running()) == 3 and routes_to(port, running(), 15), timeout=90)
            warnings = [r for r in log_records(sidecar) if r.get("message") == BUDGET_WARNING]
            assert len(warnings) == 1, warnings  # once, with the numbers; not on every apply
            assert warnings[0]["fd_limit"] == 1024
            assert warnings[0]["maxconn_effective"] == budget["maxconn_effective"]
            assert not sidecar.exited()


# --- 5,000 apps -------------------------------------------------------------------------------

BULK_APPS = 4999  # and the probe app: 5,000 listeners


class ProbeTasks:
    """HTTP servers answering as the probe app's tasks, on the host ports the emulator gave
    them (``run_tasks`` is off: 5,000 task processes would be too many)."""

    def __init__(self) -> None:
        self.servers: list[EchoServer] = []

    def serve(self, task: dict[str, Any]) -> bool:
        handler = type("TaskHandler", (EchoHandler,), {"identity": task["id"]})
        try:
            server = EchoServer(("127.0.0.1", task["ports"][0]), handler)
        except OSError:  # the port the emulator chose is taken here
            return False
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.servers.append(server)
        return True

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def create_apps(client: MarathonClient, probe_port: int) -> None:
    client.create_app(
        {"id": "/probe", "cmd": "serve", "instances": 2,
         "portDefinitions": [{"port": probe_port, "protocol": "tcp", "name": "http"}]}
    )  # fmt: skip
    for i in range(BULK_APPS):
        client.create_app(
            {"id": f"/bulk/app-{i:04d}", "cmd": "serve", "instances": 1,
             "portDefinitions": [{"port": 0, "protocol": "tcp", "name": "http"}]}
        )  # fmt: skip


def test_5000_listeners_serve_under_an_8000_descriptor_limit(
    haproxy_bin: str, tmp_path: Path
) -> None:
    probe_port = free_port()
    probe = ProbeTasks()
    # the bulk apps' service ports: a block free now, not Marathon's 10000 up (something else
    # on this machine, e.g. a benchmark, may listen there and HAProxy would leave those out)
    first = free_port_block(BULK_APPS)
    # the tasks' host ports (the probe's are bound here): below Linux's ephemeral range, where
    # every connection on this machine takes its local port, and where free_port never picks
    with MarathonEmulator(
        service_port_range=(first, first + BULK_APPS - 1), host_port_range=EMULATOR_TASK_PORTS
    ) as marathon:
        client = MarathonClient(marathon.url)
        create_apps(client, probe_port)

        def probe_tasks() -> list[dict[str, Any]]:
            return list(marathon.tasks("/probe", states=["TASK_RUNNING"]))

        wait_until(lambda: len(probe_tasks()) == 2, timeout=60)
        for task in probe_tasks():
            if not probe.serve(task):
                pytest.fail(f"host port {task['ports'][0]} of a probe task is taken here")
        ids = {t["id"] for t in probe_tasks()}
        try:
            with sidecar_under(8000, marathon.url, haproxy_bin, tmp_path) as sidecar:
                wait_until(lambda: serving(sidecar, probe_port, lambda: ids), timeout=240,
                           message=f"routing (log: {sidecar.log_path})")  # fmt: skip
                health = assert_budget_agrees(sidecar, 8000)
                budget = health["descriptors"]
                # the whole catalog would need more (every passive check): given up, said why
                assert budget["fd_needed"] > 8000
                assert budget["left_out"] == "passive checks"
                assert budget["unchecked_servers"] == BULK_APPS + 2
                assert budget["apps_left_out"] == 0
                assert any("passive checks are off for 5,001 servers" in r
                           for r in health["reasons"])  # fmt: skip
                frontends = [
                    row for row in RuntimeAPI(str(Path(sidecar.state_dir) / "run" / "admin.sock"))
                    .show_stat(types=1) if row.get("svname") == "FRONTEND"
                ]  # fmt: skip
                served = metric(sidecar, "marathon_sidecar_services")
                assert len(frontends) == served >= 4990  # a few may be taken since the probe
        finally:
            probe.close()
