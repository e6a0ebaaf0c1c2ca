"""/livez and /readyz of a real sidecar: the daemon, a real HAProxy and the Marathon emulator.

- Marathon down past ``--sync-max-age``: live but not ready; ready again once it answers.
- HAProxy's master killed: live while the sidecar restarts it within the grace; not live once
  the restart takes longer (the restart is held back by the test); live and ready again after.
- At start with Marathon unreachable and nothing saved: HAProxy runs an empty config, the sidecar
  is live but not ready until the first catalog is applied.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.daemon import Daemon
from sidecar.haproxy.process import HAProxyProcess
from sidecar.main import build_daemon, make_render_settings, run_dir
from testkit import free_port, wait_until
from testkit.http import status_of
from testkit.node import short_state_dir, sidecar_settings

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


class HeldRestarts(HAProxyProcess):
    """The real HAProxy, whose restart after a death (by the supervision or by an apply) waits
    until the test lets it go."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.release = threading.Event()
        self.release.set()

    def start(self) -> None:
        if self.master_pid is not None and not self.running():
            self.release.wait(60)
        super().start()


@dataclass
class Node:
    """A sidecar daemon in a thread that drives a :class:`HeldRestarts` HAProxy."""

    daemon: Daemon
    thread: threading.Thread
    haproxy: HeldRestarts

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        server = self.daemon.status_server
        assert server is not None
        status, body = status_of(server.port, path)
        return status, json.loads(body)

    def stop(self) -> None:
        self.haproxy.release.set()
        self.daemon.stop()
        self.thread.join(30)
        shutil.rmtree(self.daemon.settings.state_dir, ignore_errors=True)
        assert not self.thread.is_alive(), "the daemon did not stop"


def serves(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def start_node(emulator: MarathonEmulator, haproxy_bin: str, **overrides: Any) -> Node:
    settings = sidecar_settings(
        (emulator.url,), short_state_dir("sc-probe-"), haproxy_bin, marathon_timeout=1.0,
        **overrides,
    )  # fmt: skip
    render = make_render_settings(settings)
    haproxy = HeldRestarts(
        haproxy_bin,
        settings.haproxy_config_path,
        run_dir(settings),
        admin_socket=render.admin_socket,
    )
    daemon = build_daemon(settings, haproxy=haproxy, startup_wait=1.0, stream_silence=1.0)
    thread = threading.Thread(target=daemon.run, name="sidecar-probes", daemon=True)
    thread.start()
    return Node(daemon, thread, haproxy)


@pytest.fixture
def node_factory(haproxy_bin: str) -> Iterator[Callable[..., Node]]:
    started: list[Node] = []

    def make(emulator: MarathonEmulator, **overrides: Any) -> Node:
        node = start_node(emulator, haproxy_bin, **overrides)
        started.append(node)
        wait_until(lambda: node.daemon.status_server is not None, 30, "the status server")
        return node

    yield make
    for node in started:
        node.stop()


@pytest.fixture
def emulator() -> Iterator[tuple[MarathonEmulator, int]]:
    """The emulator with one app on a free service port: (emulator, service port)."""
    port = free_port()
    with MarathonEmulator(heartbeat_interval=0.5) as marathon:
        app = {"id": "/web", "cmd": "sleep 3600", "portDefinitions": [{"port": port}]}
        MarathonClient(marathon.url).create_app(app)
        yield marathon, port


def test_marathon_down_past_the_max_age_is_live_but_not_ready(
    node_factory: Callable[..., Node], emulator: tuple[MarathonEmulator, int]
) -> None:
    marathon, port = emulator
    node = node_factory(marathon, sync_max_age=2.0)
    wait_until(lambda: node.probe("/readyz")[0] == 200 and serves(port), timeout=30)
    marathon.suspend()
    try:
        wait_until(lambda: node.probe("/readyz")[0] == 503, timeout=30, message="not ready")
        status, ready = node.probe("/readyz")
        assert status == 503, ready
        assert any(r.startswith("last Marathon contact") for r in ready["reasons"]), ready
        live_status, live = node.probe("/livez")
        assert (live_status, live["reasons"]) == (200, []), live
        assert serves(port)  # HAProxy keeps serving what it had
    finally:
        marathon.resume()
    wait_until(lambda: node.probe("/readyz")[0] == 200, timeout=30, message="ready again")


def test_a_killed_haproxy_is_not_live_until_restarted(
    node_factory: Callable[..., Node], emulator: tuple[MarathonEmulator, int]
) -> None:
    marathon, port = emulator
    node = node_factory(marathon)
    wait_until(lambda: node.probe("/readyz")[0] == 200 and serves(port), timeout=30)
    node.daemon.board.haproxy_grace = 0.5
    master = node.haproxy.master_pid
    assert master is not None
    node.haproxy.release.clear()
    os.kill(master, signal.SIGKILL)
    wait_until(lambda: node.probe("/livez")[0] == 503, timeout=30, message="not live")
    status, live = node.probe("/livez")
    assert live["reasons"][0].startswith("HAProxy's master has not run for"), live
    assert live["haproxy_origin"] is None
    status, ready = node.probe("/readyz")
    # not running, or a restart under way that the test holds back: not ready either way
    assert status == 503, ready
    assert ready["reasons"][0] in ("HAProxy is not running", "HAProxy is starting"), ready
    node.haproxy.release.set()
    wait_until(lambda: node.probe("/livez")[0] == 200, timeout=30, message="live again")
    wait_until(lambda: node.probe("/readyz")[0] == 200 and serves(port), timeout=30)
    assert node.haproxy.master_pid not in (None, master)
    assert node.probe("/livez")[1]["reasons"] == []


def test_at_start_not_ready_until_the_first_catalog_is_applied(
    node_factory: Callable[..., Node], emulator: tuple[MarathonEmulator, int]
) -> None:
    marathon, port = emulator
    marathon.suspend()
    try:
        node = node_factory(marathon)  # waits 1 s for Marathon, then starts HAProxy empty
        wait_until(lambda: node.daemon.board.health().haproxy_origin == "started", timeout=30)
        status, ready = node.probe("/readyz")
        assert status == 503
        assert ready["reasons"] == ["no catalog applied yet (waiting for Marathon)"], ready
        assert node.probe("/livez")[0] == 200
        assert not serves(port)
    finally:
        marathon.resume()
    wait_until(lambda: node.probe("/readyz")[0] == 200, timeout=30, message="ready")
    assert serves(port)
