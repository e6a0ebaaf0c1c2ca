"""HAProxy's own output as an operator sees it: the access log in the sink ``--haproxy-log``
names, and HAProxy's Prometheus exporter (and stats page) on ``--haproxy-metrics-listen``.

``python -m sidecar`` follows the emulator running real echo tasks and starts the real HAProxy;
requests go through ``127.0.0.1:<servicePort>``. The stdout sink is the sidecar's own output
(its log file here); the syslog sink is a UDP socket this test binds on loopback.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from sidecar.names import backend_name, frontend_name, server_name
from testkit import free_ports, wait_until
from testkit.apps import echo_app
from testkit.http import ask, http_get, metric_sample
from testkit.marathon import EmulatedMarathon, emulated_marathon
from testkit.node import short_state_dir
from testkit.process import SidecarProcess

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

WEB, DB = "/logs/web", "/logs/db"


@pytest.fixture(scope="module")
def marathon() -> Iterator[tuple[EmulatedMarathon, int, int]]:
    """The emulator running one http and one tcp echo app: (marathon, http port, tcp port)."""
    web_port, db_port = free_ports(2)
    with emulated_marathon() as marathon:
        marathon.deploy(echo_app(WEB, web_port, 1, mode="http"))
        marathon.deploy(echo_app(DB, db_port, 1, mode="tcp"))
        yield marathon, web_port, db_port


@contextmanager
def sidecar(marathon: EmulatedMarathon, haproxy_bin: str, *args: str) -> Iterator[SidecarProcess]:
    """``python -m sidecar`` with these extra flags, started; stopped at the end."""
    state_dir = short_state_dir("hlog-")
    argv = ["--marathon", marathon.emulator.url, "--log-level", "INFO", *args]
    process = SidecarProcess(argv, state_dir, free_ports(1)[0], haproxy_bin)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def routed(process: SidecarProcess, port: int, task_ids: set[str]) -> str:
    """Wait until ``127.0.0.1:port`` answers with one of ``task_ids``; that task id."""

    def answer() -> str:
        assert not process.exited(), process.log_tail()
        found = ask(port)
        return found if found in task_ids else ""

    return wait_until(answer, 60, f"port {port} routed by the sidecar")


def access_lines(text: str, frontend: str) -> list[str]:
    """HAProxy's access log lines of ``frontend`` (httplog and tcplog both name it first)."""
    return [line for line in text.splitlines() if re.search(rf"\] {frontend}~? ", line)]


def test_access_log_on_stdout_reaches_the_sidecars_output(
    marathon: tuple[EmulatedMarathon, int, int], haproxy_bin: str
) -> None:
    emulated, web_port, db_port = marathon
    web_task = next(iter(emulated.healthy(WEB)))
    with sidecar(emulated, haproxy_bin, "--haproxy-log", "stdout") as process:
        routed(process, web_port, {web_task})
        routed(process, db_port, emulated.healthy(DB))
        web = wait_until(
            lambda: access_lines(process.log_text(), frontend_name(web_port)),
            30,
            "an httplog line of the web frontend in the sidecar's output",
        )
        line = web[-1]
        assert f"{backend_name(WEB, web_port)}/{server_name(web_task)} " in line
        assert " 200 " in line and '"GET / HTTP/1.1"' in line
        db = wait_until(
            lambda: access_lines(process.log_text(), frontend_name(db_port)),
            30,
            "a tcplog line of the db frontend",
        )
        assert f"{backend_name(DB, db_port)}/" in db[-1] and '"GET' not in db[-1]


def test_access_log_is_off_by_default(
    marathon: tuple[EmulatedMarathon, int, int], haproxy_bin: str
) -> None:
    emulated, web_port, _ = marathon
    with sidecar(emulated, haproxy_bin) as process:
        task = routed(process, web_port, emulated.healthy(WEB))
        for _ in range(5):
            assert ask(web_port) == task
        process.stop()  # HAProxy's last lines are out once it stopped
        assert access_lines(process.log_text(), frontend_name(web_port)) == []


def receive_until(sock: socket.socket, wanted: str) -> str:
    """Datagrams from ``sock`` until one holds ``wanted``; that datagram."""

    def next_match() -> str:
        data = sock.recv(65536).decode("utf-8", "replace")
        return data if wanted in data else ""

    return wait_until(next_match, 30, f"a syslog datagram with {wanted!r}")


def test_access_log_to_syslog_over_udp(
    marathon: tuple[EmulatedMarathon, int, int], haproxy_bin: str
) -> None:
    emulated, web_port, _ = marathon
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as syslog:
        syslog.bind(("127.0.0.1", 0))
        syslog.settimeout(0.5)
        sink = f"syslog:127.0.0.1:{syslog.getsockname()[1]}"
        with sidecar(emulated, haproxy_bin, "--haproxy-log", sink) as process:
            task = routed(process, web_port, emulated.healthy(WEB))
            datagram = receive_until(syslog, f" {frontend_name(web_port)} ")
            assert datagram.startswith("<134>")  # local0 (16 * 8) + info (6)
            assert f"{backend_name(WEB, web_port)}/{server_name(task)} " in datagram
            assert '"GET / HTTP/1.1"' in datagram
            assert access_lines(process.log_text(), frontend_name(web_port)) == []


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, dict[str, Any]]:
    """GET ``path`` from HAProxy's metrics listener: (status, body, headers in lower case)."""
    status, body, headers = http_get(f"http://127.0.0.1:{port}{path}")
    return status, body, {name.lower(): value for name, value in headers.items()}


def test_haproxy_exporter_serves_per_backend_and_per_server_series(
    marathon: tuple[EmulatedMarathon, int, int], haproxy_bin: str
) -> None:
    emulated, web_port, db_port = marathon
    metrics_port = free_ports(1)[0]
    listen = ["--haproxy-metrics-listen", str(metrics_port), "--haproxy-stats-page"]
    with sidecar(emulated, haproxy_bin, *listen) as process:
        task = routed(process, web_port, emulated.healthy(WEB))
        routed(process, db_port, emulated.healthy(DB))
        for _ in range(4):
            assert ask(web_port) == task
        status, text, headers = scrape(metrics_port)
        assert status == 200 and headers.get("content-type", "").startswith("text/plain")
        web = {"proxy": backend_name(WEB, web_port)}
        assert metric_sample(text, "haproxy_backend_http_responses_total", {**web, "code": "2xx"})
        assert metric_sample(text, "haproxy_backend_sessions_total", web) >= 5
        server = {**web, "server": server_name(task)}
        assert metric_sample(text, "haproxy_server_status", {**server, "state": "UP"}) == 1
        assert metric_sample(text, "haproxy_server_sessions_total", server) >= 5
        db = {"proxy": backend_name(DB, db_port)}
        assert metric_sample(text, "haproxy_backend_sessions_total", db) >= 1
        front = {"proxy": frontend_name(web_port)}
        assert metric_sample(text, "haproxy_frontend_http_requests_total", front) >= 5
        page_status, page, _ = scrape(metrics_port, "/stats")
        assert page_status == 200 and backend_name(WEB, web_port) in page
        assert scrape(metrics_port, "/")[0] == 503  # nothing else on that listener
