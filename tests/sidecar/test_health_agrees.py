"""From their first answer on, ``/health``, ``/readyz`` and ``/livez`` of a starting sidecar never
contradict what HAProxy does.

A real ``marathon-sidecar`` process starts against the emulator; from the moment it is spawned,
the test samples the app's service port (a TCP connect through HAProxy) and the three endpoints
together: port, endpoints, port again. A sample counts only when both port probes agree (HAProxy
did not come up between them). Contradictions: an endpoint saying HAProxy does not run while it
accepts connections; ``/health`` or ``/readyz`` answering 200 while nothing listens on the port;
``/livez`` failing while HAProxy serves. (While the sidecar starts HAProxy, the endpoints say
"HAProxy is starting" or "not running": the ports may open a few milliseconds before the sidecar
sees the new worker ready; that is a "not yet", not a contradiction.)
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

NOT_RUNNING = ("HAProxy is not running", "HAProxy's master has not run")
ENDPOINTS = ("/health", "/readyz", "/livez")
SETTLED_SAMPLES = 20  # agreeing samples with HAProxy serving before the test is satisfied


def serves(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def answer(port: int, path: str) -> Optional[tuple[int, dict[str, Any]]]:
    """(HTTP status, body) of ``path``, or None while the status server does not answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    except OSError:
        return None
    finally:
        conn.close()


def contradiction(serving: bool, path: str, reply: tuple[int, dict[str, Any]]) -> Optional[str]:
    status, body = reply
    reasons = body.get("reasons", [])
    if serving and any(r.startswith(NOT_RUNNING) for r in reasons):
        return f"HAProxy serves the port but {path} says: {reasons}"
    if serving and path == "/livez" and status != 200:
        return f"HAProxy serves the port but {path} answers {status}: {body}"
    if not serving and path != "/livez" and status == 200:
        return f"nothing listens on the port but {path} answers 200: {body}"
    return None


def test_health_endpoints_agree_with_haproxy_from_the_first_request(haproxy_bin: str) -> None:
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
            replies = {path: answer(status_port, path) for path in ENDPOINTS}
            after = serves(service_port)
            if any(r is None for r in replies.values()) or before != after:
                continue  # no answer yet, or HAProxy came up in between: nothing to compare
            samples += 1
            for path, reply in replies.items():
                assert reply is not None
                found = contradiction(before, path, reply)
                if found:
                    problems.append(found)
            all_ok = all(r is not None and r[0] == 200 for r in replies.values())
            settled = settled + 1 if before and all_ok else 0
        assert not problems, problems[:3]
        assert settled == SETTLED_SAMPLES, f"HAProxy and /health did not settle ({samples})"
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
