"""End to end: the emulator running real echo tasks, the sidecar daemon, a real HAProxy.

Every check goes through ``127.0.0.1:<servicePort>``: the set of task ids answering a batch of
requests must equal the app's running, healthy task ids. Apps get explicit free service ports.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from marathon_bridge.testing.tasks import echo_server_cmd
from sidecar.daemon import Daemon
from sidecar.main import build_daemon, main
from sidecar.settings import Settings
from testkit import free_ports, wait_until

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

WaitUntil = Callable[..., None]


def echo_app(app_id: str, service_port: int, instances: int, **extra: Any) -> dict[str, Any]:
    app: dict[str, Any] = {
        "id": app_id,
        "cmd": echo_server_cmd(),
        "instances": instances,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": service_port, "protocol": "tcp", "name": "http"}],
        "healthChecks": [
            {
                "protocol": "HTTP",
                "path": "/health",
                "portIndex": 0,
                "gracePeriodSeconds": 10,
                "intervalSeconds": 1,
                "timeoutSeconds": 1,
                "maxConsecutiveFailures": 0,
            }
        ],
    }
    app.update(extra)
    return app


def ask(port: int, timeout: float = 2.0) -> str:
    """One request on a new connection: the task id that answered, or ``error:<what>``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace").strip()
        return body if response.status == 200 else f"error:{response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"error:{type(exc).__name__}"
    finally:
        conn.close()


def answers(port: int, requests: int) -> Counter[str]:
    return Counter(ask(port) for _ in range(requests))


def routed(port: int, per_task: int = 3, expected: int = 3) -> set[str]:
    return set(answers(port, max(per_task * max(expected, 1), 3)))


@dataclass
class Cluster:
    emulator: MarathonEmulator
    marathon: MarathonClient
    daemon: Daemon
    state_dir: str

    def healthy_ids(self, app_id: str) -> set[str]:
        out = set()
        for task in self.emulator.tasks(app_id, states=["TASK_RUNNING"]):
            results = task.get("healthCheckResults") or []
            if results and all(r.get("alive") for r in results):
                out.add(task["id"])
        return out

    def routes_match(self, app_id: str, port: int) -> bool:
        expected = self.healthy_ids(app_id)
        return bool(expected) and routed(port, 3, len(expected)) == expected

    def deploy(self, app: dict[str, Any]) -> None:
        self.marathon.create_app(app)
        wait_until(
            lambda: len(self.healthy_ids(app["id"])) == app["instances"],
            timeout=60,
            message=f"{app['id']} healthy",
        )

    def metric(self, name: str, labels: Optional[dict[str, str]] = None) -> float:
        value = self.daemon.metrics.registry.get_sample_value(name, labels or {})
        return value or 0.0


def start_daemon(settings: Settings, startup_wait: float = 15.0) -> tuple[Daemon, threading.Thread]:
    daemon = build_daemon(settings, startup_wait=startup_wait, stream_silence=3.0)
    thread = threading.Thread(target=daemon.run, name="sidecar-under-test", daemon=True)
    thread.start()
    return daemon, thread


def sidecar_settings(marathon_url: str, state_dir: str, haproxy_bin: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "marathon_urls": (marathon_url,),
        "state_dir": state_dir,
        "haproxy_bin": haproxy_bin,
        "status_host": "127.0.0.1",
        "status_port": 0,
        "debounce": 0.05,
        "min_reload_interval": 0.2,
        "resync_interval": 60.0,
        "poll_interval": 1.0,
        "empty_confirm": 60.0,
        "drain_timeout": 2.0,
        "marathon_timeout": 3.0,
    }
    values.update(extra)
    return Settings(**values)


def stop_daemon(daemon: Daemon, thread: threading.Thread) -> None:
    daemon.stop()
    thread.join(30)
    assert not thread.is_alive(), "the daemon did not stop"


@pytest.fixture(scope="module")
def cluster(haproxy_bin: str) -> Iterator[Cluster]:
    state_dir = tempfile.mkdtemp(prefix="sc-e2e-", dir="/tmp")  # short: socket paths
    # tasks report the agent by host name, as on real clusters: the sidecar resolves it
    emulator = MarathonEmulator(
        run_tasks=True, heartbeat_interval=1.0, agent_host="localhost", agent_ip="127.0.0.1"
    ).start()
    marathon = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    daemon, thread = start_daemon(sidecar_settings(emulator.url, state_dir, haproxy_bin))
    try:
        yield Cluster(emulator, marathon, daemon, state_dir)
    finally:
        stop_daemon(daemon, thread)
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
    cluster.deploy(echo_app("/rr/web", web_port, 3, labels={"HAPROXY_0_MODE": "http"}), wait_until)
    cluster.deploy(echo_app("/rr/api", api_port, 2), wait_until)
    wait_until(lambda: cluster.routes_match("/rr/web", web_port), timeout=30)
    wait_until(lambda: cluster.routes_match("/rr/api", api_port), timeout=30)
    counts = answers(web_port, 30)
    assert set(counts) == cluster.healthy_ids("/rr/web")
    assert max(counts.values()) - min(counts.values()) <= 2, counts  # round robin
    status, body = _status(cluster.daemon, "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    services = json.loads(_status(cluster.daemon, "/services")[1])["services"]
    assert {s["service_port"] for s in services} >= {web_port, api_port}
    assert f"127.0.0.1:{web_port}" in _status(cluster.daemon, "/config")[1]
    page = _status(cluster.daemon, "/")[1]
    assert "/rr/web" in page and str(web_port) in page

    def haproxy_reports_up() -> bool:  # HAProxy's own view, read every few seconds
        services = json.loads(_status(cluster.daemon, "/services")[1])["services"]
        web = next(s for s in services if s["service_port"] == web_port)
        return [e["haproxy"] for e in web["endpoints"]] == ["up"] * 3

    wait_until(haproxy_reports_up, timeout=20)
    wait_until(lambda: cluster.metric("marathon_sidecar_haproxy_servers", {"status": "up"}) >= 5)


def test_haproxy_is_restarted_when_it_dies(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/crash/web", port, 2), wait_until)
    wait_until(lambda: cluster.routes_match("/crash/web", port), timeout=30)
    # the apps of earlier tests are gone from HAProxy too: no reload is under way
    wait_until(lambda: _served_ports(cluster.daemon) == {port}, timeout=30)
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
    wait_until(lambda: _health(cluster.daemon) == "ok", timeout=10)


def test_scaling_up_and_down_shows_in_routing(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/scale/web", port, 2), wait_until)
    wait_until(lambda: cluster.routes_match("/scale/web", port), timeout=30)
    cluster.marathon.scale_app("/scale/web", 4)
    wait_until(lambda: len(cluster.healthy_ids("/scale/web")) == 4, timeout=60)
    wait_until(lambda: cluster.routes_match("/scale/web", port), timeout=30)
    cluster.marathon.scale_app("/scale/web", 1)
    wait_until(lambda: len(cluster.healthy_ids("/scale/web")) == 1, timeout=60)
    wait_until(lambda: cluster.routes_match("/scale/web", port), timeout=30)


def test_a_killed_task_leaves_and_its_replacement_joins(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/kill/web", port, 2), wait_until)
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
    cluster.deploy(echo_app("/health/web", port, 3), wait_until)
    wait_until(lambda: cluster.routes_match("/health/web", port), timeout=30)
    sick = sorted(cluster.healthy_ids("/health/web"))[0]
    cluster.emulator.set_task_health(sick, False)
    wait_until(lambda: sick not in routed(port, 3, 3), timeout=30)
    wait_until(lambda: cluster.routes_match("/health/web", port), timeout=30)

    def reported_out() -> bool:  # the view is posted once the apply has finished
        services = json.loads(_status(cluster.daemon, "/services")[1])["services"]
        entry = next(s for s in services if s["service_port"] == port)
        out = next(e for e in entry["endpoints"] if e["task_id"] == sick)
        return not out["in_rotation"] and out["healthy"] is False and bool(out["reason"])

    wait_until(reported_out, timeout=10)
    cluster.emulator.set_task_health(sick, True)
    wait_until(lambda: sick in routed(port, 3, 3), timeout=30)


def test_a_new_app_is_routed_and_a_deleted_app_is_gone(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/life/new", port, 2), wait_until)
    wait_until(lambda: cluster.routes_match("/life/new", port), timeout=30)
    cluster.marathon.delete_app("/life/new")
    wait_until(lambda: cluster.emulator.app("/life/new") is None, timeout=30)
    wait_until(lambda: ask(port).startswith("error:"), timeout=30)
    wait_until(
        lambda: all(
            s["service_port"] != port
            for s in json.loads(_status(cluster.daemon, "/services")[1])["services"]
        ),
        timeout=10,
    )


def test_marathon_errors_garbage_and_outages_change_no_routing(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/faults/web", port, 2), wait_until)
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
        wait_until(lambda: _health(cluster.daemon) == "ok", timeout=30)
    finally:
        faults.clear()


def test_marathon_port_closed_then_reopened(haproxy_bin: str) -> None:
    """Marathon really gone (its port closed), then back: routing holds, then follows again."""
    from marathon_bridge.testing.tasks import port_is_free

    state_dir = tempfile.mkdtemp(prefix="sc-out-", dir="/tmp")
    (port,) = free_ports(1)
    relay = _Relay().start()  # the sidecar talks to Marathon through a relay we can cut
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0).start()
    relay.target = emulator.url
    marathon = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    daemon, thread = start_daemon(sidecar_settings(relay.url, state_dir, haproxy_bin))
    cluster = Cluster(emulator, marathon, daemon, state_dir)
    try:
        cluster.deploy(echo_app("/outage/web", port, 2), wait_until)
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
        stop_daemon(daemon, thread)
        relay.stop()
        marathon.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_a_leader_election_leaves_routing_unchanged(cluster: Cluster) -> None:
    (port,) = free_ports(1)
    cluster.deploy(echo_app("/leader/web", port, 3), wait_until)
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
        services = json.loads(_status(cluster.daemon, "/services")[1])["services"]
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
            emulator.url, state_dir, haproxy_bin,
            master_socket=external.master_socket, haproxy_config=str(config),
        )  # fmt: skip
        daemon, thread = start_daemon(settings)
        cluster = Cluster(emulator, marathon, daemon, state_dir)
        try:
            cluster.deploy(echo_app("/ext/web", port, 2), wait_until)
            wait_until(lambda: cluster.routes_match("/ext/web", port), timeout=30)
            master = external.master_pid
            cluster.marathon.scale_app("/ext/web", 3)
            wait_until(lambda: len(cluster.healthy_ids("/ext/web")) == 3, timeout=60)
            wait_until(lambda: cluster.routes_match("/ext/web", port), timeout=30)
            assert external.master_pid == master  # reloaded in place, never restarted
        finally:
            stop_daemon(daemon, thread)
        assert external.running()  # not ours to stop
        assert cluster.routes_match("/ext/web", port)
    finally:
        external.stop()
        marathon.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def test_once_writes_a_valid_config(haproxy_bin: str, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with MarathonEmulator() as emulator:
        client = MarathonClient(emulator.url)
        client.create_app(
            {"id": "/once/web", "cmd": "sleep 1000", "instances": 2,
             "portDefinitions": [{"port": port, "protocol": "tcp"}]}
        )  # fmt: skip
        emulator.wait_for(lambda: len(emulator.tasks("/once/web", ["TASK_RUNNING"])) == 2)
        config = tmp_path / "haproxy.cfg"
        code = main(
            ["--once", "--marathon", emulator.url, "--state-dir", str(tmp_path / "state"),
             "--haproxy-config", str(config), "--haproxy-bin", haproxy_bin,
             "--status-listen", "127.0.0.1:0"],
            {},
        )  # fmt: skip
        client.close()
    assert code == 0
    text = config.read_text()
    assert f":{port}" in text
    check = subprocess.run([haproxy_bin, "-c", "-f", str(config)], capture_output=True, timeout=60)
    assert check.returncode == 0, check.stderr.decode()


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
        daemon, thread = start_daemon(sidecar_settings(emulator.url, state_dir, haproxy_bin))
        cluster = Cluster(emulator, marathon, daemon, state_dir)
        try:
            cluster.deploy(echo_app("/lkg/web", port, 2), wait_until)
            wait_until(lambda: cluster.routes_match("/lkg/web", port), timeout=30)
            saved = Path(state_dir) / "last-applied.json"
            wait_until(lambda: saved.exists() and "/lkg/web" in saved.read_text())
        finally:
            stop_daemon(daemon, thread)
        wait_until(lambda: ask(port).startswith("error:"), timeout=20)  # HAProxy stopped with it

        settings = sidecar_settings(f"http://127.0.0.1:{dead}", state_dir, haproxy_bin)
        daemon, thread = start_daemon(settings, startup_wait=1.0)
        try:
            wait_until(lambda: cluster.routes_match("/lkg/web", port), timeout=30)
            wait_until(lambda: _health(daemon) == "degraded", timeout=20)
            status, body = _status(daemon, "/health")
            report = json.loads(body)
            assert status == 200, body
            assert report["reasons"][0].startswith("serving last known state from ")
        finally:
            stop_daemon(daemon, thread)
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
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--marathon", emulator.url, "--state-dir", state_dir,
             "--haproxy-bin", haproxy_bin, "--status-listen", f"127.0.0.1:{status_port}",
             "--log-format", "json", "--user", "bob"],
            env={"MARATHON_PASSWORD": secret, "PATH": "/usr/sbin:/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_until(lambda: _get(status_port, "/health")[0] == 200, timeout=60)
        for path in ("/health", "/config", "/services", "/metrics", "/"):
            assert secret not in _get(status_port, path)[1]
        pid_file = Path(state_dir) / "run" / "haproxy.pid"
        wait_until(pid_file.exists, timeout=10)
        master = int(pid_file.read_text().split()[0])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert secret not in output
        assert all(json.loads(line) for line in output.splitlines() if line.strip())
        wait_until(lambda: not Path(f"/proc/{master}").exists(), timeout=10)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


# --- helpers ------------------------------------------------------------------------------------


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    except OSError:
        return 0, ""
    finally:
        conn.close()


def _status(daemon: Daemon, path: str) -> tuple[int, str]:
    assert daemon.status_server is not None
    return _get(daemon.status_server.port, path)


def _served_ports(daemon: Daemon) -> set[int]:
    services = json.loads(_status(daemon, "/services")[1])["services"]
    return {int(s["service_port"]) for s in services}


def _health(daemon: Daemon) -> str:
    _, body = _status(daemon, "/health")
    return str(json.loads(body)["status"]) if body else ""


class _Relay:
    """A TCP relay in front of Marathon that can be cut (port closed) and restored."""

    def __init__(self) -> None:
        import socket

        self._socket_mod = socket
        self.target = ""
        (self.port,) = free_ports(1)
        self._listener: Any = None
        self._stop = threading.Event()
        self._conns: list[Any] = []
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self.refusing = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> _Relay:
        socket = self._socket_mod
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stop.clear()
        self.refusing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        socket = self._socket_mod
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            host, port = self.target.rsplit("//", 1)[1].split(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: Any, sink: Any) -> None:
        try:
            source.settimeout(None)
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(self._socket_mod.SHUT_RDWR)

    def cut(self) -> None:
        """Close the port and every relayed connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(self._socket_mod.SHUT_RDWR)
            conn.close()
        self.refusing = True

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        if not self.refusing:
            self.cut()
