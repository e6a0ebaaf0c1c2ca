"""From its first answer on, ``/health`` of a starting sidecar never contradicts what HAProxy does.

A real ``marathon-sidecar`` process starts against the emulator; from the moment it is spawned,
the test samples the app's service port (a TCP connect through HAProxy) and ``/health`` together:
port, health, port again. A sample counts only when both port probes agree (HAProxy did not come
up between them). Health saying "HAProxy is not running" while HAProxy accepts connections, or
answering 200 while nothing listens on the port, is a contradiction. (While the sidecar starts
HAProxy, /health says "HAProxy is starting": the ports may open a few milliseconds before the
sidecar sees the new worker ready.)
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from testkit import free_ports

pytestmark = [pytest.mark.haproxy]

NOT_RUNNING = "HAProxy is not running"
SETTLED_SAMPLES = 20  # agreeing samples with HAProxy serving before the test is satisfied


def serves(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def health(port: int) -> Optional[tuple[int, dict[str, Any]]]:
    """(HTTP status, body) of /health, or None while the status server does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    except OSError:
        return None
    finally:
        conn.close()


def contradiction(serving: bool, answer: tuple[int, dict[str, Any]]) -> Optional[str]:
    status, body = answer
    reasons = body.get("reasons", [])
    if serving and NOT_RUNNING in reasons:
        return f"HAProxy serves the port but /health says: {reasons}"
    if not serving and status == 200:
        return f"nothing listens on the port but /health answers 200: {body}"
    return None


def test_health_agrees_with_haproxy_from_the_first_request(haproxy_bin: str) -> None:
    state_dir = tempfile.mkdtemp(prefix="sc-health-", dir="/tmp")  # short: socket paths
    service_port, status_port = free_ports(2)
    emulator = MarathonEmulator().start()
    proc: Optional[subprocess.Popen[bytes]] = None
    try:
        app = {"id": "/web", "cmd": "sleep 3600", "portDefinitions": [{"port": service_port}]}
        MarathonClient(emulator.url).create_app(app)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--marathon", emulator.url,
             "--state-dir", state_dir, "--haproxy-bin", haproxy_bin,
             "--status-listen", f"127.0.0.1:{status_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        samples, settled, problems = 0, 0, []
        deadline = time.monotonic() + 60
        while settled < SETTLED_SAMPLES and time.monotonic() < deadline:
            before = serves(service_port)
            answer = health(status_port)
            after = serves(service_port)
            if answer is None or before != after:
                continue  # no answer yet, or HAProxy came up in between: nothing to compare
            samples += 1
            found = contradiction(before, answer)
            if found:
                problems.append(found)
            settled = settled + 1 if before and answer[0] == 200 else 0
        assert not problems, problems[:3]
        assert settled == SETTLED_SAMPLES, f"HAProxy and /health did not settle ({samples})"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
