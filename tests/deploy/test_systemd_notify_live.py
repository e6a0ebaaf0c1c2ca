"""What a ``Type=notify`` unit with ``WatchdogSec=`` hears from a real ``marathon-sidecar``.

The test stands in for systemd: it binds the datagram socket named by ``$NOTIFY_SOCKET`` and sets
``$WATCHDOG_USEC`` as systemd does for ``WatchdogSec=`` (short here), then runs the sidecar
against the emulator with a real HAProxy. It must hear ``READY=1``, then ``STATUS=ready`` once
the catalog is applied, ``WATCHDOG=1`` pings while it runs, and ``STOPPING=1`` on SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from testkit import free_ports, wait_until

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


class Messages:
    """The datagrams heard so far, line by line."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines: list[str] = []

    def heard(self, line: str, times: int = 1) -> bool:
        self.sock.settimeout(0.2)
        try:
            while True:
                self.lines += self.sock.recv(4096).decode().split("\n")
        except socket.timeout:
            pass
        return self.lines.count(line) >= times


def test_the_sidecar_notifies_systemd_and_pings_its_watchdog(haproxy_bin: str) -> None:
    state_dir = tempfile.mkdtemp(prefix="sc-notify-", dir="/tmp")  # short: socket paths
    notify_path = str(Path(state_dir) / "notify.sock")
    service_port, status_port = free_ports(2)
    with MarathonEmulator() as marathon, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(notify_path)
        app = {"id": "/web", "cmd": "sleep 3600", "portDefinitions": [{"port": service_port}]}
        MarathonClient(marathon.url).create_app(app)
        env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "2000000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--marathon", marathon.url,
             "--state-dir", state_dir, "--haproxy-bin", haproxy_bin,
             "--status-listen", f"127.0.0.1:{status_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        messages = Messages(sock)
        try:
            wait_until(lambda: messages.heard("READY=1"), timeout=60)
            wait_until(lambda: messages.heard("STATUS=ready"), timeout=60)
            wait_until(lambda: messages.heard("WATCHDOG=1", times=3), timeout=60)
            assert messages.lines.count("READY=1") == 1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            wait_until(lambda: messages.heard("STOPPING=1"), timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            shutil.rmtree(state_dir, ignore_errors=True)
    assert messages.lines.index("READY=1") < messages.lines.index("STATUS=ready")
