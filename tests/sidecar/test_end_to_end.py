"""End to end: the emulator running real echo tasks, the sidecar daemon, a real HAProxy.

Every check goes through ``127.0.0.1:<servicePort>``: the set of task ids answering a batch of
requests must equal the app's running, healthy task ids. Apps get explicit free service ports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.daemon import Daemon
from sidecar.main import main
from sidecar.settings import Settings
from testkit import free_ports, wait_until
from testkit.apps import echo_app as echo_app_of_kit
from testkit.apps import healthy_task_ids
from testkit.http import ask, get
from testkit.marathon import EmulatedMarathon
from testkit.node import SidecarNode, sidecar_settings, start_sidecar
from testkit.relay import Relay

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

WaitUntil = Callable[..., None]


def echo_app(app_id: str, service_port: int, instances: int, **extra: Any) -> dict[str, Any]:
    """Echo tasks without a mode label: the sidecar's default (TCP) unless ``labels`` says."""
    return echo_app_of_kit(app_id, service_port, instances, mode=None, **extra)


def answers(port: int, requests: int) -> Counter[str]:
    return Counter(ask(port) for _ in range(requests))


def routed(port: int, per_task: int = 3, expected: int = 3) -> set[str]:
    return set(answers(port, max(per_task * max(expected, 1), 3)))


@dataclass
class Cluster:
    """The emulator running echo tasks, a client on it, and the sidecar under test."""

    emulator: MarathonEmulator
    marathon: MarathonClient
    node: SidecarNode

    @property
    def daemon(self) -> Daemon:
        return self.node.daemon

    def healthy_ids(self, app_id: str) -> set[str]:
        return healthy_task_ids(self.emulator, app_id)

    def routes_match(self, app_id: str, port: int) -> bool:
        expected = self.healthy_ids(app_id)
        return bool(expected) and routed(port, 3, len(expected)) == expected

    def deploy(self, app: dict[str, Any]) -> None:
        EmulatedMarathon(self.emulator, self.marathon).deploy(app, timeout=60)

    def metric(self, name: str, labels: Optional[dict[str, str]] = None) -> float:
        return self.node.metric(name, labels)


def start_daemon(settings: Settings, startup_wait: float = 15.0) -> SidecarNode:
    """The daemon in a thread on ``settings``; the test owns the state directory."""
    return start_sidecar(
        settings, startup_wait=startup_wait, own_state_dir=False, wait_for_haproxy=False
    )


@pytest.fixture(scope="module")
def cluster(haproxy_bin: str) -> Iterator[Cluster]:
    state_dir = tempfile.mkdtemp(prefix="sc-e2e-", dir="/tmp")  # short: socket paths
    # tasks report the agent by host name, as on real clusters: the sidecar resolves it
    emulator = MarathonEmulator(
        run_tasks=True, heartbeat_interval=1.0, agent_host="localhost", agent_ip="127.0.0.1"
    ).start()
    marathon = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    node = start_daemon(sidecar_settings((emulator.url,), state_dir, haproxy_bin))
    try:
        yield Cluster(emulator, marathon, node)
    finally:
        node.stop()
        marathon.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_apps_left(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests on the shared cluster delete their apps afterwards, even when they fail."""
    yield
    if "cluster" not in request.fixturenames:
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    cluster.emulator.faults.clear()
    for app in cluster.emulator.apps():
        cluster.marathon.delete_app(app["id"])


def test_every_service_port_routes_round_robin_over_its_healthy_tasks(cluster: Cluster) -> None:
    web_port, api_port = free_ports(2)
    cluster.deploy(echo_app("/rr/web", web_port, 3, labels={"HAPROXY_0_MODE": "http"}))
    cluster.deploy(echo_app("/rr/api", api_port, 2))
    wait_until(lambda: cluster.routes_match("/rr/web", web_port), timeout=30)
    wait_until(lambda: cluster.routes_match("/rr/api", api_port), timeout=30)
    counts = answers(web_port, 30)
    assert set(counts) == cluster.healthy_ids("/rr/web")
    assert max(counts.values()) - min(counts.values()) <= 2, counts  # round robin
    status, body = cluster.node.status("/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    services = json.loads(cluster.node.status("/services")[1])["services"]
    assert {s["service_port"] for s in services} >= {web_port, api_port}
    assert f"127.0.0.1:{web_port}" in cluster.node.status("/config")[1]
    page = cluster.node.status("/")[1]
    assert "/rr/web" in page and str(web_port) in page

    def haproxy_reports_up() -> bool:  # HAProxy's own view, read every few seconds
        services = json.loads(cluster.node.status("/services")[1])["services"]
        web = next(s for s in services if s["service_port"] == web_port)
        return [e["haproxy"] for e in web["endpoints"]] == ["up"] * 3

    wait_until(haproxy_reports_up, timeout=20)
    wait_until(lambda: cluster.metric("marathon_sidecar_haproxy_servers", {"status": "up"}) >= 5)


def test_haproxy_is_restarted_when_it_dies(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/crash/web", port, 2))
    wait_until(lambda: cluster.routes_match("/crash/web", port), timeout=30)
    # the apps of earlier tests are gone from HAProxy too: no reload is under way
    wait_until(lambda: cluster.node.served_ports() == {port}, timeout=30)
    haproxy = cluster.daemon.haproxy
    master = haproxy.master_pid
    assert master is not None
    restarts = cluster.metric("marathon_sidecar_haproxy_restarts_total")
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: haproxy.master_pid not in (None, master), timeout=60)
    wait_until(lambda: cluster.routes_match("/crash/web", port), timeout=30)
    wait_until(
        lambda: cluster.metric("marathon_sidecar_haproxy_restarts_total") > restarts, timeout=30
    )
    wait_until(lambda: cluster.node.health()["status"] == "ok", timeout=10)


def test_scaling_up_and_down_shows_in_routing(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/scale/web", port, 2))
    wait_until(lambda: cluster.routes_match("/scale/web", port), timeout=30)
    cluster.marathon.scale_app("/scale/web", 4)
    wait_until(lambda: len(cluster.healthy_ids("/scale/web")) == 4, timeout=60)
    wait_until(lambda: cluster.routes_match("/scale/web", port), timeout=30)
    cluster.marathon.scale_app("/scale/web", 1)
    wait_until(lambda: len(cluster.healthy_ids("/scale/web")) == 1, timeout=60)
    wait_until(lambda: cluster.routes_match("/scale/web", port), timeout=30)


def test_a_killed_task_leaves_and_its_replacement_joins(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/kill/web", port, 2))
    wait_until(lambda: cluster.routes_match("/kill/web", port), timeout=30)
    victim = sorted(cluster.healthy_ids("/kill/web"))[0]
    cluster.emulator.kill_task(victim)
    wait_until(
        lambda: (
            victim not in cluster.healthy_ids("/kill/web")
            and len(cluster.healthy_ids("/kill/web")) == 2
        ),
        timeout=60,
    )
    wait_until(lambda: cluster.routes_match("/kill/web", port), timeout=30)
    assert victim not in routed(port, 3, 2)


def test_an_unhealthy_task_leaves_rotation_and_comes_back(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/health/web", port, 3))
    wait_until(lambda: cluster.routes_match("/health/web", port), timeout=30)
    sick = sorted(cluster.healthy_ids("/health/web"))[0]
    cluster.emulator.set_task_health(sick, False)
    wait_until(lambda: sick not in routed(port, 3, 3), timeout=30)
    wait_until(lambda: cluster.routes_match("/health/web", port), timeout=30)

    def reported_out() -> bool:  # the view is posted once the apply has finished
        services = json.loads(cluster.node.status("/services")[1])["services"]
        entry = next(s for s in services if s["service_port"] == port)
        out = next(e for e in entry["endpoints"] if e["task_id"] == sick)
        return not out["in_rotation"] and out["healthy"] is False and bool(out["reason"])

    wait_until(reported_out, timeout=10)
    cluster.emulator.set_task_health(sick, True)
    wait_until(lambda: sick in routed(port, 3, 3), timeout=30)


def test_a_new_app_is_routed_and_a_deleted_app_is_gone(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/life/new", port, 2))
    wait_until(lambda: cluster.routes_match("/life/new", port), timeout=30)
    cluster.marathon.delete_app("/life/new")
    wait_until(lambda: cluster.emulator.app("/life/new") is None, timeout=30)
    wait_until(lambda: ask(port).startswith("error:"), timeout=30)
    wait_until(
        lambda: all(
            s["service_port"] != port
            for s in json.loads(cluster.node.status("/services")[1])["services"]
        ),
        timeout=10,
    )


def test_marathon_errors_garbage_and_outages_change_no_routing(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/faults/web", port, 2))
    wait_until(lambda: cluster.routes_match("/faults/web", port), timeout=30)
    serving = cluster.healthy_ids("/faults/web")
    faults = cluster.emulator.faults
    try:
        scenarios: list[tuple[str, Callable[[], Any]]] = [
            ("marathon", lambda: faults.add("/v2/apps*", status=500)),
            ("marathon", lambda: faults.add("/v2/apps*", body=b"<html>garbage</html>")),
            ("garbage", lambda: faults.respond_json("/v2/apps*", {"apps": "nope"})),
            ("suspicious_empty", lambda: faults.respond_json("/v2/apps*", {"apps": []})),
            ("marathon", lambda: faults.add("*", drop=True)),  # Marathon goes away
        ]
        for kind, inject in scenarios:
            before = cluster.metric("marathon_sidecar_marathon_errors_total", {"kind": kind})
            inject()
            cluster.emulator.close_event_streams()  # the reconnect asks for a snapshot
            wait_until(
                lambda kind=kind, before=before: (
                    cluster.metric("marathon_sidecar_marathon_errors_total", {"kind": kind})
                    > before
                ),
                timeout=30,
                message=f"the sidecar saw the {kind} fault",
            )
            for _ in range(3):
                assert routed(port, 3, 2) == serving, f"routing changed during {kind}"
            faults.clear()
        # Marathon is back: changes flow again
        cluster.marathon.scale_app("/faults/web", 3)
        wait_until(lambda: len(cluster.healthy_ids("/faults/web")) == 3, timeout=60)
        wait_until(lambda: cluster.routes_match("/faults/web", port), timeout=30)
        wait_until(lambda: cluster.node.health()["status"] == "ok", timeout=30)
    finally:
        faults.clear()


def test_marathon_port_closed_then_reopened(haproxy_bin: str) -> None:
    """Marathon really gone (its port closed), then back: routing holds, then follows again."""
    from marathon_bridge.testing.tasks import port_is_free

    state_dir = tempfile.mkdtemp(prefix="sc-out-", dir="/tmp")
    (port,) = free_ports(1)
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0).start()
    relay = Relay(emulator.url).start()  # the sidecar talks to Marathon through a relay we can cut
    marathon = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    node = start_daemon(sidecar_settings((relay.url,), state_dir, haproxy_bin))
    cluster = Cluster(emulator, marathon, node)
    try:
        cluster.deploy(echo_app("/outage/web", port, 2))
        wait_until(lambda: cluster.routes_match("/outage/web", port), timeout=30)
        serving = cluster.healthy_ids("/outage/web")
        relay.cut()  # connections refused from now on
        assert port_is_free(relay.port)
        before = cluster.metric("marathon_sidecar_marathon_errors_total", {"kind": "marathon"})
        wait_until(
            lambda: (
                cluster.metric("marathon_sidecar_marathon_errors_total", {"kind": "marathon"})
                > before
            ),
            timeout=30,
        )
        for _ in range(3):
            assert routed(port, 3, 2) == serving
        relay.restore()
        cluster.marathon.scale_app("/outage/web", 3)
        wait_until(lambda: len(cluster.healthy_ids("/outage/web")) == 3, timeout=60)
        wait_until(lambda: cluster.routes_match("/outage/web", port), timeout=30)
    finally:
        node.stop()
        relay.stop()
        marathon.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_a_leader_election_leaves_routing_unchanged(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/leader/web", port, 3))
    wait_until(lambda: cluster.routes_match("/leader/web", port), timeout=30)
    serving = cluster.healthy_ids("/leader/web")
    connects = cluster.metric("marathon_sidecar_marathon_stream_connects_total")
    cluster.emulator.leader_election(blank_health_for=8.0)
    deadline = time.monotonic() + 8.0
    wait_until(
        lambda: cluster.metric("marathon_sidecar_marathon_stream_connects_total") > connects,
        timeout=20,
    )

    def kept_while_blank() -> bool:
        """The sidecar's snapshot has no health results, yet every task stays in rotation."""
        services = json.loads(cluster.node.status("/services")[1])["services"]
        entry = next(s for s in services if s["service_port"] == port)
        return all(e["in_rotation"] and e["healthy"] is False for e in entry["endpoints"])

    wait_until(kept_while_blank, timeout=8, message="a snapshot taken during the blank period")
    checks = 0
    while time.monotonic() < deadline or checks < 3:
        assert routed(port, 3, 3) == serving, "a blank health period changed routing"
        checks += 1
    wait_until(lambda: cluster.routes_match("/leader/web", port), timeout=30)
    assert cluster.healthy_ids("/leader/web") == serving


def test_drives_an_haproxy_started_by_someone_else(haproxy_bin: str) -> None:
    """--master-socket: reloads through a master CLI; stopping the sidecar leaves HAProxy up."""
    from sidecar.haproxy.process import HAProxyProcess

    state_dir = tempfile.mkdtemp(prefix="sc-ext-", dir="/tmp")
    (port,) = free_ports(1)
    config = Path(state_dir) / "haproxy.cfg"
    (Path(state_dir) / "run").mkdir(mode=0o700)
    config.write_text(
        "global\n"
        f"    stats socket {state_dir}/run/admin.sock mode 600 level admin\n"
        "defaults\n    mode tcp\n    timeout connect 1s\n"
        "    timeout client 5s\n    timeout server 5s\n"
    )
    external = HAProxyProcess(haproxy_bin, str(config), str(Path(state_dir) / "systemd"))
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0).start()
    marathon = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    try:
        external.start()
        external.wait_ready(30)
        settings = sidecar_settings(
            (emulator.url,), state_dir, haproxy_bin,
            master_socket=external.master_socket, haproxy_config=str(config),
        )  # fmt: skip
        node = start_daemon(settings)
        cluster = Cluster(emulator, marathon, node)
        try:
            cluster.deploy(echo_app("/ext/web", port, 2))
            wait_until(lambda: cluster.routes_match("/ext/web", port), timeout=30)
            master = external.master_pid
            cluster.marathon.scale_app("/ext/web", 3)
            wait_until(lambda: len(cluster.healthy_ids("/ext/web")) == 3, timeout=60)
            wait_until(lambda: cluster.routes_match("/ext/web", port), timeout=30)
            assert external.master_pid == master  # reloaded in place, never restarted
        finally:
            node.stop()
        assert external.running()  # not ours to stop
        assert cluster.routes_match("/ext/web", port)
    finally:
        external.stop()
        marathon.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_once_fails_cleanly_when_marathon_is_unreachable(tmp_path: Path) -> None:
    (dead,) = free_ports(1)
    code = main(
        ["--once", "--marathon", f"http://127.0.0.1:{dead}", "--state-dir", str(tmp_path),
         "--marathon-timeout", "1"],
        {},
    )  # fmt: skip
    assert code == 1
    assert not (tmp_path / "haproxy.cfg").exists()


def test_restart_while_marathon_is_unreachable_serves_the_last_known_state(
    haproxy_bin: str,
) -> None:
    state_dir = tempfile.mkdtemp(prefix="sc-lkg-", dir="/tmp")
    (port, dead) = free_ports(2)
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0).start()
    marathon = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    try:
        node = start_daemon(sidecar_settings((emulator.url,), state_dir, haproxy_bin))
        cluster = Cluster(emulator, marathon, node)
        try:
            cluster.deploy(echo_app("/lkg/web", port, 2))
            wait_until(lambda: cluster.routes_match("/lkg/web", port), timeout=30)
            saved = Path(state_dir) / "last-applied.json"
            wait_until(lambda: saved.exists() and "/lkg/web" in saved.read_text())
        finally:
            node.stop()
        wait_until(lambda: ask(port).startswith("error:"), timeout=20)  # HAProxy stopped with it

        settings = sidecar_settings((f"http://127.0.0.1:{dead}",), state_dir, haproxy_bin)
        node = start_daemon(settings, startup_wait=1.0)
        try:
            wait_until(lambda: cluster.routes_match("/lkg/web", port), timeout=30)
            wait_until(lambda: node.health()["status"] == "degraded", timeout=20)
            status, body = node.status("/health")
            report = json.loads(body)
            assert status == 200, body
            assert report["reasons"][0].startswith("serving last known state from ")
        finally:
            node.stop()
    finally:
        marathon.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_the_command_stops_haproxy_on_sigterm(haproxy_bin: str) -> None:
    state_dir = tempfile.mkdtemp(prefix="sc-cmd-", dir="/tmp")
    (port, status_port) = free_ports(2)
    emulator = MarathonEmulator().start()
    proc: Optional[subprocess.Popen[bytes]] = None
    try:
        MarathonClient(emulator.url).create_app(
            {"id": "/cmd/web", "cmd": "sleep 1000", "instances": 1,
             "portDefinitions": [{"port": port, "protocol": "tcp"}]}
        )  # fmt: skip
        secret = "pa55-w0rd-never-logged"
        # the sidecar's own log on stderr; HAProxy's log lines (`log stdout`) on stdout
        stdout, stderr = Path(state_dir) / "stdout", Path(state_dir) / "stderr"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sidecar", "--marathon", emulator.url,
                 "--state-dir", state_dir, "--haproxy-bin", haproxy_bin,
                 "--status-listen", f"127.0.0.1:{status_port}",
                 "--log-format", "json", "--user", "bob"],
                env={"MARATHON_PASSWORD": secret, "PATH": "/usr/sbin:/usr/bin:/bin"},
                stdout=out, stderr=err,
            )  # fmt: skip
        wait_until(lambda: get(status_port, "/health")[0] == 200, timeout=60)
        for path in ("/health", "/config", "/services", "/metrics", "/"):
            assert secret not in get(status_port, path)[1]
        pid_file = Path(state_dir) / "run" / "haproxy.pid"
        wait_until(pid_file.exists, timeout=10)
        master = int(pid_file.read_text().split()[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        log, haproxy_lines = stderr.read_text(), stdout.read_text()
        assert secret not in log and secret not in haproxy_lines
        assert all(json.loads(line) for line in log.splitlines() if line.strip())
        assert "stopping" in log
        wait_until(lambda: not Path(f"/proc/{master}").exists(), timeout=10)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
