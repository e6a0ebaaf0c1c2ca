"""Fixtures for tests against the real HAProxy: tiny named HTTP backends, a supervised HAProxy in
tmp_path that is always stopped in teardown, a traffic loop, and the real renderer pointed at
tmp_path."""

from __future__ import annotations

import http.client
import os
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

import pytest

from sidecar.haproxy.process import HAProxyProcess
from sidecar.haproxy_model import BackendSpec, FrontendSpec, HAProxyModel, ServerSpec
from sidecar.render import render_config
from sidecar.render_settings import RenderSettings
from testkit.http import get

# ----------------------------------------------------------------------------- backends


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: NamedServer

    def do_GET(self) -> None:
        self.server.hits += 1
        if self.path.startswith("/slow"):
            self.server.slow_started.set()
            self.server.release.wait(30)
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class NamedServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 answering every GET with its own name."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.name = name
        self.hits = 0
        self.release = threading.Event()
        self.slow_started = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # HAProxy closing idle server connections is normal here

    def stop(self) -> None:
        self.release.set()
        self.shutdown()
        self.server_close()


@pytest.fixture
def backends() -> Iterator[Callable[..., NamedServer]]:
    started: list[NamedServer] = []

    def make(name: str, port: int = 0) -> NamedServer:
        server = NamedServer(name, port)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# ----------------------------------------------------------------------------- HTTP client


def answers(port: int, n: int) -> Counter[str]:
    """Who answered ``n`` requests on ``port`` ("<status>" for non-200)."""
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, body = get(port)
        seen[body if status == 200 else str(status)] += 1
    return seen


@dataclass
class TrafficLoop:
    """A thread sending requests continuously; counts answers per backend and failures."""

    port: int
    keep_alive: bool = False
    ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None

    def start(self) -> TrafficLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        conn: Optional[http.client.HTTPConnection] = None
        while not self._stop.is_set():
            self.sent += 1
            try:
                if conn is None or not self.keep_alive:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", "/", headers={} if self.keep_alive else {"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read().decode()
                if resp.status == 200:
                    self.ok[body] += 1
                else:
                    self.failures.append(f"HTTP {resp.status}")
                if not self.keep_alive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def total_ok(self) -> int:
        return sum(self.ok.values())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


@pytest.fixture
def traffic() -> Iterator[Callable[..., TrafficLoop]]:
    loops: list[TrafficLoop] = []

    def start(port: int, keep_alive: bool = False) -> TrafficLoop:
        loop = TrafficLoop(port, keep_alive).start()
        loops.append(loop)
        return loop

    yield start
    for loop in loops:
        loop.stop()


# ----------------------------------------------------------------------------- HAProxy


@dataclass
class HAPaths:
    root: Path
    run_dir: Path
    config: Path
    admin_socket: Path
    state_file: Path


@pytest.fixture
def hapaths(tmp_path: Path) -> HAPaths:
    run_dir = tmp_path / "run"
    paths = HAPaths(
        root=tmp_path,
        run_dir=run_dir,
        config=tmp_path / "haproxy.cfg",
        admin_socket=run_dir / "admin.sock",
        state_file=tmp_path / "server-state",
    )
    assert len(str(paths.admin_socket)) < 100, "UNIX socket path too long"
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    return paths


@pytest.fixture
def haproxy_process(haproxy_bin: str, hapaths: HAPaths) -> Iterator[HAProxyProcess]:
    """An HAProxyProcess in tmp_path (not started); stopped in teardown whatever happened."""
    proc = HAProxyProcess(
        haproxy_bin,
        str(hapaths.config),
        str(hapaths.run_dir),
        admin_socket=str(hapaths.admin_socket),
    )
    yield proc
    proc.stop(timeout=10)
    assert not proc.running()


def render_settings(paths: HAPaths) -> RenderSettings:
    return RenderSettings(
        admin_socket=str(paths.admin_socket),
        server_state_file=str(paths.state_file),
        hard_stop_after="10s",
        maxconn=2000,
    )


def render_for_tests(model: HAProxyModel, paths: HAPaths) -> str:
    """The real renderer with the sockets and state file of this test's tmp_path."""
    return render_config(model, render_settings(paths))


def service(
    app: str, port: int, servers: dict[str, NamedServer], balance: str = "roundrobin"
) -> tuple[FrontendSpec, BackendSpec]:
    """One service port: frontend fe_<port> -> backend be_<port> with the given named servers."""
    specs = tuple(
        ServerSpec(name=name, address="127.0.0.1", port=srv.port, task_id=f"{app}.{name}")
        for name, srv in sorted(servers.items())
    )
    backend = BackendSpec(
        name=f"be_{port}",
        app_id=app,
        service_port=port,
        mode="http",
        balance=balance,
        servers=specs,
    )
    frontend = FrontendSpec(
        name=f"fe_{port}",
        port=port,
        binds=("127.0.0.1",),
        mode="http",
        default_backend=backend.name,
    )
    return frontend, backend


def model_of(*services: tuple[FrontendSpec, BackendSpec]) -> HAProxyModel:
    return HAProxyModel(
        frontends=tuple(fe for fe, _ in services), backends=tuple(be for _, be in services)
    )


def with_servers(
    model: HAProxyModel, backend: str, servers: tuple[ServerSpec, ...]
) -> HAProxyModel:
    backends = tuple(
        replace(b, servers=servers) if b.name == backend else b for b in model.backends
    )
    return replace(model, backends=backends)


class Kit:
    """The helpers above, handed to tests as a fixture (importlib mode cannot import conftest)."""

    get = staticmethod(get)
    answers = staticmethod(answers)
    service = staticmethod(service)
    model_of = staticmethod(model_of)
    with_servers = staticmethod(with_servers)

    def __init__(self, paths: HAPaths) -> None:
        self.paths = paths

    def render(self, model: HAProxyModel) -> str:
        return render_for_tests(model, self.paths)


@pytest.fixture
def kit(hapaths: HAPaths) -> Kit:
    return Kit(hapaths)


@pytest.fixture
def make_applier(
    haproxy_process: HAProxyProcess, hapaths: HAPaths, kit: Kit
) -> Callable[..., object]:
    """An Applier driving ``haproxy_process`` with the real renderer (override via kwargs)."""
    from sidecar.apply import Applier
    from sidecar.haproxy.runtime import RuntimeAPI

    def make(**kwargs: object) -> Applier:
        options: dict = {
            "haproxy_bin": haproxy_process.haproxy_bin,
            "state_file": str(hapaths.state_file),
            "drain_timeout": 30.0,
            "config_write_delay": 0.0,
        }
        options.update(kwargs)
        render = options.pop("render", kit.render)
        return Applier(
            haproxy_process,
            RuntimeAPI(str(hapaths.admin_socket)),
            str(hapaths.config),
            render,  # type: ignore[arg-type]
            **options,  # type: ignore[arg-type]
        )

    return make
