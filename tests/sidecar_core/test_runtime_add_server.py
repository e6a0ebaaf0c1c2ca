"""The server lines render.py writes are also valid runtime `add server` commands, on every kind
of backend the sidecar renders (each balance algorithm, sticky, active checks)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar.desired import build_model
from sidecar.grammar import BALANCES
from sidecar.haproxy_model import ServerSpec
from sidecar.render import render_config, server_line_options
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon.translate import catalog_from_apps
from testkit import free_port, wait_until

pytestmark = pytest.mark.haproxy


def ask(sock_path: str, command: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(sock_path)
        s.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode()


def apps() -> list[dict[str, Any]]:
    out = []
    for balance in BALANCES:
        labels = {
            "HAPROXY_0_BALANCE": balance,
            "HAPROXY_0_MODE": "http" if balance == "uri" else "tcp",
        }
        out.append(
            {"id": f"/bal-{balance}", "portDefinitions": [{"port": free_port()}], "labels": labels}
        )
    out.append(
        {
            "id": "/sticky",
            "portDefinitions": [{"port": free_port()}],
            "labels": {
                "HAPROXY_0_MODE": "http",
                "HAPROXY_0_STICKY": "true",
                "HAPROXY_0_HEALTHCHECK": "true",
            },
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 30}],
        }
    )
    backend_port = free_port()
    for app in out:
        app["tasks"] = [
            {
                "id": f"{app['id'][1:]}.t1",
                "host": "127.0.0.1",
                "ports": [backend_port],
                "state": "TASK_RUNNING",
                "healthCheckResults": [{"alive": True}],
            }
        ]
    return out


def test_add_server_accepts_our_server_lines_on_every_backend_kind(
    haproxy_bin: str, tmp_path: Path
) -> None:
    state_file = tmp_path / "state"
    state_file.write_text("1\n# be_id be_name srv_id srv_name srv_addr\n")
    settings = RenderSettings(
        admin_socket=str(tmp_path / "admin.sock"), server_state_file=str(state_file)
    )
    model = build_model(catalog_from_apps(apps()), settings, lambda h: None)
    assert len(model.backends) == len(BALANCES) + 1
    config = tmp_path / "haproxy.cfg"
    config.write_text(render_config(model, settings))
    proc = subprocess.Popen(
        [haproxy_bin, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: Path(settings.admin_socket).exists() or proc.poll() is not None)
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        for backend in model.backends:
            server = ServerSpec("dyn1", "127.0.0.1", free_port(), "dyn1", check=True)
            options = " ".join(server_line_options(backend, server))
            answer = ask(
                settings.admin_socket,
                f"add server {backend.name}/dyn1 127.0.0.1:{server.port} {options}",
            )
            assert "New server registered" in answer, (backend.name, backend.balance, answer)
            assert ask(settings.admin_socket, f"enable server {backend.name}/dyn1").strip() == ""
            assert ask(settings.admin_socket, f"enable health {backend.name}/dyn1").strip() == ""
            if backend.sticky:
                ask(settings.admin_socket, f"enable dynamic-cookie backend {backend.name}")
        stats = ask(settings.admin_socket, "show stat -1 4 -1").splitlines()
        header = stats[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in stats[1:] if line]
        dynamic = {r["pxname"]: r for r in rows if r["svname"] == "dyn1"}
        assert set(dynamic) == {b.name for b in model.backends}
        sticky = next(b.name for b in model.backends if b.sticky)
        assert dynamic[sticky]["cookie"], "a runtime-added server of a sticky backend gets a cookie"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        if proc.stdout:
            proc.stdout.close()
