"""The sidecar's Marathon app, run for real: its health and readiness checks answer 200 from a
running sidecar.

The app JSON is deployed on the emulator, then the sidecar is started with the app's own ``args``
and ``env`` (only the Marathon URL, the state directory and the listen addresses are swapped for
test values on loopback) and a real HAProxy. Marathon's health check (``path`` on the status
port), its readiness check (``path`` on the port ``portName`` names, the probe listener), the
image's HEALTHCHECK probe and a clean stop within the kill grace period are checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge.cli import main as cli_main
from marathon_bridge.testing.emulator import MarathonEmulator
from testkit import free_port, wait_until
from testkit.http import http_status
from testkit.process import terminate

ROOT = Path(__file__).resolve().parents[2]
SIDECAR_APP = ROOT / "deploy" / "marathon" / "marathon-sidecar.json"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


def replace_flag(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


@dataclass
class Running:
    app: dict[str, Any]
    status_port: int
    probe_port: int
    state_dir: Path
    proc: subprocess.Popen[bytes]


@pytest.fixture
def running_sidecar(tmp_path: Path, haproxy_bin: str) -> Iterator[Running]:
    app: dict[str, Any] = json.loads(SIDECAR_APP.read_text(encoding="utf-8"))
    with MarathonEmulator() as marathon:
        assert cli_main(["deploy", "--marathon", marathon.url, str(SIDECAR_APP)]) == 0
        port, probe_port = free_port(), free_port()
        state_dir = tmp_path / "state"
        state_dir.mkdir(mode=0o750)  # the host volume exists (docs/operations.md, deploying)
        args = replace_flag(app["args"], "--marathon", marathon.url)
        args = replace_flag(args, "--state-dir", str(state_dir))
        args = replace_flag(args, "--status-listen", f"127.0.0.1:{port}")
        args = replace_flag(args, "--probe-listen", f"127.0.0.1:{probe_port}")  # loopback here
        env = {**os.environ, **app["env"], "MARATHON_SIDECAR_STATUS_LISTEN": f"127.0.0.1:{port}"}
        env["MARATHON_SIDECAR_HAPROXY_BIN"] = haproxy_bin
        log = (tmp_path / "sidecar.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", *args], env=env, stdout=log, stderr=log
        )
        try:
            yield Running(app, port, probe_port, state_dir, proc)
        finally:
            terminate(proc, grace=60)
            log.close()


def test_marathons_health_and_readiness_checks_answer_200_from_a_running_sidecar(
    running_sidecar: Running, tmp_path: Path
) -> None:
    app, port, proc = running_sidecar.app, running_sidecar.status_port, running_sidecar.proc
    (check,) = app["healthChecks"]
    url = f"http://127.0.0.1:{port}{check['path']}"  # what the agent's MESOS_HTTP check asks
    wait_until(lambda: http_status(url) == 200 or proc.poll() is not None, timeout=60)
    log = (tmp_path / "sidecar.log").read_text(encoding="utf-8", errors="replace")
    assert proc.poll() is None, log
    assert http_status(url) == 200
    # ...within the check's timeout, well before the grace period ends
    assert check["gracePeriodSeconds"] > check["timeoutSeconds"]

    # Marathon's readiness check, on the probe listener (the port its portName names)
    (ready,) = app["readinessChecks"]
    ready_url = f"http://127.0.0.1:{running_sidecar.probe_port}{ready['path']}"
    wait_until(lambda: http_status(ready_url) in ready["httpStatusCodesForReady"], timeout=60)
    assert http_status(f"http://127.0.0.1:{running_sidecar.probe_port}/config") == 404

    # The image's HEALTHCHECK probe finds the same server through the app's environment.
    probe = subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={**os.environ, "MARATHON_SIDECAR_STATUS_LISTEN": f"127.0.0.1:{port}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr

    # The host volume gets the last known good state.
    wait_until(lambda: any(running_sidecar.state_dir.glob("last-applied.json")), timeout=30)


def test_sidecar_stops_cleanly_within_the_kill_grace_period(running_sidecar: Running) -> None:
    app, port, proc = running_sidecar.app, running_sidecar.status_port, running_sidecar.proc
    wait_until(lambda: http_status(f"http://127.0.0.1:{port}/health") == 200, timeout=60)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=app["taskKillGracePeriodSeconds"]) == 0
    assert http_status(f"http://127.0.0.1:{port}/health") == 0  # the status server is gone
