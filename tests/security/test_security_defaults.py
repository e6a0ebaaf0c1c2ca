"""Security defaults, each with a test.

- HAProxy's admin and master sockets: mode 600, in a directory only the sidecar can enter (700);
- the status server and every service port listen on loopback unless told otherwise;
- no ``shell=True`` (nor ``os.system``/``os.popen``) anywhere in ``marathon_bridge`` or ``sidecar``;
- TLS verification of Marathon is on by default (a self-signed Marathon is refused);
- credentials (basic auth, token, URL userinfo) never reach logs, metrics, ``/config``,
  ``/health``, ``/services``, the status page or error messages;
- a user template (``--template``) cannot include or import files, and cannot reach Python
  internals to read files (see ``test_user_template_sandbox.py``).
"""

from __future__ import annotations

import ast
import json
import shutil
import ssl
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge.client import BasicAuth, MarathonClient, TokenAuth
from marathon_bridge.errors import MarathonError
from marathon_bridge.testing import MarathonEmulator
from sidecar.daemon import Daemon
from sidecar.settings import Settings, load_settings
from sidecar.sources.marathon.source import client_from_settings
from testkit import free_port, wait_until
from testkit.http import get
from testkit.node import short_state_dir, start_sidecar
from testkit.process import SidecarProcess

ROOT = Path(__file__).resolve().parents[2]
CERT_DIR = ROOT / "tests" / "client" / "data"
PACKAGES = ("marathon_bridge", "sidecar")


# ----------------------------------------------------------------------------- sockets, binds


@pytest.fixture(scope="module")
def running_daemon(haproxy_bin: str) -> Iterator[Daemon]:
    """A daemon with HAProxy, serving one app (no task processes needed)."""
    state_dir = short_state_dir("sec-")
    with MarathonEmulator() as emulator:
        MarathonClient(emulator.url).create_app(
            {"id": "/sec/web", "cmd": "sleep 1000", "instances": 1,
             "portDefinitions": [{"port": free_port(), "protocol": "tcp"}]}
        )  # fmt: skip
        settings = Settings(
            marathon_urls=(emulator.url,),
            state_dir=state_dir,
            haproxy_bin=haproxy_bin,
            status_port=free_port(),
        )
        # the daemon's own defaults (stream silence too): these tests check them
        with start_sidecar(settings, startup_wait=10.0, stream_silence=15.0) as node:
            wait_until(
                lambda: "/sec/web" in node.status("/services")[1],
                60,
                "the daemon serves the app",
            )
            yield node.daemon


def test_haproxy_sockets_are_mode_600_in_a_private_directory(running_daemon: Daemon) -> None:
    run_dir = Path(running_daemon.settings.state_dir) / "run"
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for name in ("admin.sock", "master.sock"):
        sock = run_dir / name
        assert stat.S_ISSOCK(sock.stat().st_mode), name
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600, name


def test_the_status_server_and_service_ports_listen_on_loopback_by_default(
    running_daemon: Daemon,
) -> None:
    defaults = load_settings(["--marathon", "http://127.0.0.1:8080"], {})
    assert (defaults.status_host, defaults.binds) == ("127.0.0.1", ("127.0.0.1",))
    server = running_daemon.status_server
    assert server is not None and server.host == "127.0.0.1"
    listening = _listening_addresses(server.port)
    assert listening == {"127.0.0.1"}, listening
    config = get(running_daemon.settings.status_port, "/config")[1]
    binds = [line.split()[1] for line in config.splitlines() if line.strip().startswith("bind ")]
    assert binds and all(b.startswith("127.0.0.1:") for b in binds), binds


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP listener on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].partition(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if width == 8:
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
                else:
                    found.add(address)
    return found


# ----------------------------------------------------------------------------- no shell


def _python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def shell_uses(source: str) -> list[str]:
    """Calls that run a shell: ``shell=<anything but False>``, ``os.system``, ``os.popen``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append(f"line {node.lineno}: shell=")
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "os"
            and func.attr in ("system", "popen")
        ):
            found.append(f"line {node.lineno}: os.{func.attr}")
    return found


def test_the_scan_finds_shell_use() -> None:
    sample = "import os, subprocess\nsubprocess.run('x', shell=True)\nos.system('x')\n"
    assert shell_uses(sample) == ["line 2: shell=", "line 3: os.system"]
    assert shell_uses("subprocess.run(['x'], shell=False)\n") == []


def test_no_shell_anywhere_in_the_packages() -> None:
    files = _python_files()
    assert len(files) > 20
    offenders = {
        str(p.relative_to(ROOT)): uses
        for p in files
        if (uses := shell_uses(p.read_text(encoding="utf-8")))
    }
    assert offenders == {}


# ----------------------------------------------------------------------------- TLS


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"apps": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def tls_marathon() -> Iterator[str]:
    """An HTTPS server on loopback with a certificate no system CA signed."""
    server = HTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT_DIR / "loopback.cert.pem", CERT_DIR / "loopback.key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_tls_verification_is_on_by_default(tls_marathon: str) -> None:
    assert MarathonClient(tls_marathon).verify is True
    settings = load_settings(["--marathon", tls_marathon], {})
    client = client_from_settings(settings)
    assert client.verify is True
    with pytest.raises(MarathonError, match=r"(?i)certificate"):
        client.list_apps()
    trusted = client_from_settings(
        load_settings(
            ["--marathon", tls_marathon, "--ca-bundle", str(CERT_DIR / "loopback.cert.pem")], {}
        )
    )
    assert trusted.list_apps() == []


# ----------------------------------------------------------------------------- credentials

SECRET = "Sup3r-s3cret-Pa55w0rd"
TOKEN = "eyJ0eXAi.T0KEN-n3ver-l0gged.sig"


def _run_sidecar(
    args: list[str], env: dict[str, str], haproxy_bin: str, until: Any
) -> tuple[str, dict[str, str]]:
    """Run ``python -m sidecar`` at DEBUG until ``until(status_port)``; its output and pages."""
    process = SidecarProcess(
        [*args, "--log-level", "DEBUG", "--log-format", "text", "--marathon-timeout", "2"],
        short_state_dir("seccred-"),
        free_port(),
        haproxy_bin,
        env={"PATH": "/usr/sbin:/usr/bin:/bin", **env},
    )
    pages: dict[str, str] = {}
    try:
        process.start()
        wait_until(lambda: until(process.status_port), 60, "the sidecar reached the wanted state")
        for path in ("/", "/health", "/metrics", "/config", "/services"):
            pages[path] = process.status(path)[1]
    finally:
        process.stop()
        output = process.log_text()
        shutil.rmtree(process.state_dir, ignore_errors=True)
    return output, pages


def _healthy(port: int) -> bool:
    code, body = get(port, "/health")
    return code == 200 and json.loads(body)["status"] == "ok"


def _reports_marathon_error(port: int) -> bool:
    _, body = get(port, "/health")
    return bool(body) and "keeping the last good state" in " ".join(json.loads(body)["reasons"])


def _assert_nowhere(secret: str, output: str, pages: dict[str, str]) -> None:
    assert output.strip(), "the run logged nothing"
    assert secret not in output
    for path, text in pages.items():
        assert text or path in ("/config", "/services"), f"{path} answered nothing"
        assert secret not in text, path


@pytest.mark.parametrize("variant", ["basic-env", "basic-in-url", "token"])
def test_credentials_never_leak_from_a_working_run(haproxy_bin: str, variant: str) -> None:
    auth: Any = TokenAuth(TOKEN) if variant == "token" else BasicAuth("bob", SECRET)
    secret = TOKEN if variant == "token" else SECRET
    with MarathonEmulator(auth=auth) as emulator:
        MarathonClient(emulator.url, auth=auth).create_app(
            {"id": "/cred/web", "cmd": "sleep 1000", "instances": 1,
             "portDefinitions": [{"port": free_port(), "protocol": "tcp"}]}
        )  # fmt: skip
        url = emulator.url
        if variant == "basic-in-url":
            args, env = ["--marathon", url.replace("://", f"://bob:{SECRET}@")], {}
        elif variant == "basic-env":
            args, env = ["--marathon", url, "--user", "bob"], {"MARATHON_PASSWORD": SECRET}
        else:
            args, env = ["--marathon", url], {"MARATHON_TOKEN": TOKEN}
        output, pages = _run_sidecar(args, env, haproxy_bin, _healthy)
        requests_seen = emulator.requests
    assert any(r.path == "/v2/apps" for r in requests_seen)  # it did authenticate
    _assert_nowhere(secret, output, pages)


@pytest.mark.parametrize("variant", ["wrong-password", "wrong-token"])
def test_credentials_never_leak_from_refused_requests(haproxy_bin: str, variant: str) -> None:
    if variant == "wrong-token":
        auth: Any = TokenAuth("the-right-token")
        args, env, secret = [], {"MARATHON_TOKEN": TOKEN}, TOKEN
    else:
        auth = BasicAuth("bob", "the-right-password")
        args, env, secret = ["--user", "bob"], {"MARATHON_PASSWORD": SECRET}, SECRET
    with MarathonEmulator(auth=auth) as emulator:
        output, pages = _run_sidecar(
            ["--marathon", emulator.url, *args], env, haproxy_bin, _reports_marathon_error
        )
    assert "Marathon failed" in output  # the refusal itself is logged
    _assert_nowhere(secret, output, pages)


def test_client_errors_and_reprs_carry_no_credentials() -> None:
    with MarathonEmulator(auth=BasicAuth("bob", "right")) as emulator:
        url = emulator.url.replace("://", f"://bob:{SECRET}@")
        client = MarathonClient(url)
        with pytest.raises(MarathonError) as refused:
            client.list_apps()
        token_client = MarathonClient(emulator.url, auth=TokenAuth(TOKEN))
        with pytest.raises(MarathonError) as refused_token:
            token_client.list_apps()
    for text in (str(refused.value), repr(refused.value), repr(client), str(client.urls)):
        assert SECRET not in text
    for text in (str(refused_token.value), repr(token_client), repr(TokenAuth(TOKEN))):
        assert TOKEN not in text
    assert SECRET not in repr(BasicAuth("bob", SECRET))
    public = json.dumps(Settings(marathon_urls=(url,), user="bob", password=SECRET).public_dict())
    assert SECRET not in public
