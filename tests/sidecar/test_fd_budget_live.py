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
import http.client
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from marathon_bridge.testing.echo_server import EchoHandler, EchoServer
from marathon_bridge.testing.tasks import echo_server_cmd
from sidecar.fd_budget import MAXCONN_FLOOR
from sidecar.haproxy.runtime import RuntimeAPI

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

WaitUntil = Callable[..., None]
BUDGET_WARNING = "open-files limit too low"


@dataclass
class LimitedSidecar:
    """``prlimit --nofile=L:L python -m sidecar``, its status port and its state directory."""

    proc: subprocess.Popen[bytes]
    status_port: int
    state_dir: Path
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except OSError as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        status, body = self.get("/health")
        assert status == 200, body
        return dict(json.loads(body))

    def metric(self, name: str) -> float:
        for line in self.get("/metrics")[1].splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not exported")

    def haproxy_info(self) -> dict[str, str]:
        return RuntimeAPI(str(self.state_dir / "run" / "admin.sock")).show_info()

    def log_records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


@contextlib.contextmanager
def sidecar_under(
    limit: int, marathon_url: str, haproxy_bin: str, tmp_path: Path, status_port: int
) -> Iterator[LimitedSidecar]:
    state_dir = tmp_path / "state"
    log = tmp_path / "sidecar.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["prlimit", f"--nofile={limit}:{limit}", sys.executable, "-m", "sidecar",
             "--marathon", marathon_url, "--state-dir", str(state_dir),
             "--haproxy-bin", haproxy_bin, "--status-listen", f"127.0.0.1:{status_port}",
             "--log-format", "json"],
            stdout=out, stderr=out,
        )  # fmt: skip
    try:
        yield LimitedSidecar(proc, status_port, state_dir, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def ask(port: int) -> str:
    """One request on a new connection: the task id that answered, or ``error:<what>``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace").strip()
        return body if response.status == 200 else f"error:{response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"error:{type(exc).__name__}"
    finally:
        conn.close()


def routes_to(port: int, task_ids: set[str], requests: int = 10) -> bool:
    """Every one of a few requests is answered by one of ``task_ids``, and all of them answer."""
    seen = {ask(port) for _ in range(requests)}
    return seen == task_ids


def serving(sidecar: LimitedSidecar, port: int, task_ids: Callable[[], set[str]]) -> bool:
    """Traffic routes to the tasks, and the sidecar has posted what its HAProxy runs."""
    status, body = sidecar.get("/health")
    return routes_to(port, task_ids()) and status == 200 and "descriptors" in json.loads(body)


def assert_budget_agrees(sidecar: LimitedSidecar, limit: int) -> dict[str, Any]:
    """/health, /metrics and HAProxy's ``show info`` tell the same budget; returns /health's."""
    health = sidecar.health()
    budget = health["descriptors"]
    assert budget["fd_limit"] == limit
    assert budget["maxconn_wanted"] == 4096
    assert MAXCONN_FLOOR <= budget["maxconn_effective"] < 4096
    assert health["status"] == "degraded"
    assert any(f"maxconn {budget['maxconn_effective']} instead of 4096" in r
               for r in health["reasons"]), health  # fmt: skip
    assert sidecar.metric("marathon_sidecar_fd_limit") == limit
    assert sidecar.metric("marathon_sidecar_fd_needed") == budget["fd_needed"]
    assert sidecar.metric("marathon_sidecar_maxconn_wanted") == 4096
    assert sidecar.metric("marathon_sidecar_maxconn_effective") == budget["maxconn_effective"]
    info = sidecar.haproxy_info()
    assert int(info["Maxconn"]) == budget["maxconn_effective"]
    assert int(info["Maxsock"]) <= limit
    return health


def test_serves_under_a_1024_descriptor_limit(
    haproxy_bin: str, tmp_path: Path, free_port: Callable[[], int], wait_until: WaitUntil
) -> None:
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
        with sidecar_under(1024, marathon.url, haproxy_bin, tmp_path, free_port()) as sidecar:
            wait_until(lambda: serving(sidecar, port, running), timeout=90,
                       message=f"routing under 1,024 (log: {sidecar.log})")  # fmt: skip
            health = assert_budget_agrees(sidecar, 1024)
            budget = health["descriptors"]
            assert budget["fd_needed"] == int(sidecar.haproxy_info()["Maxsock"])  # all of it
            assert budget["left_out"] is None and "raise it by" in " ".join(health["reasons"])

            client.scale_app("/limited/web", 3)  # a change through the runtime API
            wait_until(lambda: len(running()) == 3 and routes_to(port, running(), 15), timeout=90)
            warnings = [r for r in sidecar.log_records() if r.get("message") == BUDGET_WARNING]
            assert len(warnings) == 1, warnings  # once, with the numbers; not on every apply
            assert warnings[0]["fd_limit"] == 1024
            assert warnings[0]["maxconn_effective"] == budget["maxconn_effective"]
            assert sidecar.proc.poll() is None


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
    haproxy_bin: str, tmp_path: Path, free_port: Callable[[], int], wait_until: WaitUntil
) -> None:
    probe_port = free_port()
    probe = ProbeTasks()
    with MarathonEmulator() as marathon:
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
            with sidecar_under(8000, marathon.url, haproxy_bin, tmp_path, free_port()) as sidecar:
                wait_until(lambda: serving(sidecar, probe_port, lambda: ids), timeout=240,
                           message=f"routing (log: {sidecar.log})")  # fmt: skip
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
                    row for row in RuntimeAPI(str(sidecar.state_dir / "run" / "admin.sock"))
                    .show_stat(types=1) if row.get("svname") == "FRONTEND"
                ]  # fmt: skip
                served = sidecar.metric("marathon_sidecar_services")
                assert len(frontends) == served >= 4990  # a few ports may be taken here
        finally:
            probe.close()
