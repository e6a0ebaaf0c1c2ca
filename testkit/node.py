"""A sidecar node under test: the :class:`~sidecar.daemon.Daemon` in a thread with the real
HAProxy it starts, its own state directory, and ways to read it from outside.

:func:`sidecar_settings` gives the settings tests use (loopback status server, short intervals);
:func:`start_sidecar` starts a daemon thread and returns a :class:`SidecarNode` once HAProxy
answers (or at once, ``wait_for_haproxy=False``); :meth:`SidecarNode.stop` stops it and removes
the state directory it created. Every test that starts a daemon goes through here, so a change
to the daemon's constructor is made once.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing import MarathonEmulator
from sidecar.daemon import Daemon
from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.main import build_daemon
from sidecar.names import backend_name, server_name
from sidecar.settings import Settings
from sidecar.sources.marathon.source import MarathonSource
from testkit.apps import healthy_task_ids
from testkit.http import health_of, status_of
from testkit.waiting import wait_until

STREAM_SILENCE = 3.0  # seconds without a byte on the event stream before the daemon polls


def short_state_dir(prefix: str) -> str:
    """A new private directory under /tmp: short, because UNIX socket paths are limited."""
    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


def sidecar_settings(
    marathon_urls: tuple[str, ...], state_dir: str, haproxy_bin: str, **overrides: Any
) -> Settings:
    """Settings of a sidecar under test: status server on an OS-chosen loopback port, short
    debounce, reload interval, drain and timeouts; ``overrides`` win."""
    values: dict[str, Any] = {
        "marathon_urls": marathon_urls,
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
    values.update(overrides)
    return Settings(**values)


@dataclass
class SidecarNode:
    """One sidecar daemon running in a thread, and the HAProxy it runs."""

    daemon: Daemon
    thread: threading.Thread
    state_dir: str
    own_state_dir: bool = True
    stopped: bool = field(default=False)

    @property
    def settings(self) -> Settings:
        return self.daemon.settings

    def marathon_urls(self) -> list[str]:
        """Marathon URLs in the client's current order (the last that answered first)."""
        client = marathon_source(self.daemon).client
        assert isinstance(client, MarathonClient), f"not an HTTP client: {client!r}"
        return list(client.urls)

    # -- the status server

    @property
    def status_port(self) -> int:
        server = self.daemon.status_server
        assert server is not None, "the status server is not running"
        return int(server.port)

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}"

    def status(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the status server; (0, the error) when it does not answer."""
        return status_of(self.status_port, path)

    def health(self) -> dict[str, Any]:
        """The /health report with ``http_status`` (0 when it does not answer)."""
        return health_of(self.status_port)

    def served_ports(self) -> set[int]:
        """The service ports /services lists."""
        services = json.loads(self.status("/services")[1])["services"]
        return {int(s["service_port"]) for s in services}

    # -- metrics, read in-process

    def metric(self, name: str, labels: Optional[dict[str, str]] = None) -> float:
        value = self.daemon.metrics.registry.get_sample_value(name, labels or {})
        return float(value or 0.0)

    def metric_sum(self, name: str) -> float:
        """A counter summed over all its label values."""
        total = 0.0
        for family in self.daemon.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == name:
                    total += sample.value
        return total

    # -- HAProxy

    @property
    def admin_socket(self) -> str:
        return str(Path(self.state_dir) / "run" / "admin.sock")

    @property
    def runtime(self) -> RuntimeAPI:
        return RuntimeAPI(self.admin_socket, timeout=5.0)

    def haproxy_serving(self) -> bool:
        """HAProxy runs and its admin socket exists."""
        return bool(self.daemon.haproxy.running()) and Path(self.admin_socket).exists()

    def ready_servers(self, app_id: str, port: int) -> set[str]:
        """Names of the servers HAProxy has ready in the app's backend (``show servers state``)."""
        return ready_server_names(self.runtime, backend_name(app_id, port))

    def routes_exactly(self, emulator: MarathonEmulator, app_id: str, port: int) -> bool:
        """HAProxy's ready servers are the app's healthy running tasks (and there are some)."""
        wanted = {server_name(t) for t in healthy_task_ids(emulator, app_id)}
        return bool(wanted) and self.ready_servers(app_id, port) == wanted

    # -- lifecycle

    def stop(self) -> None:
        """Stop the daemon (and its HAProxy); remove the state directory made for it."""
        if self.stopped:
            return
        self.stopped = True
        self.daemon.stop()
        self.thread.join(30)
        if self.own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        assert not self.thread.is_alive(), "the sidecar daemon did not stop"

    def __enter__(self) -> SidecarNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def marathon_source(daemon: Daemon) -> MarathonSource:
    """The daemon's catalog source, which these nodes always take from Marathon."""
    source = daemon.source
    assert isinstance(source, MarathonSource), f"not a Marathon source: {source!r}"
    return source


def ready_server_names(runtime: RuntimeAPI, backend: str) -> set[str]:
    """The servers of ``backend`` that HAProxy has ready, with an address."""
    return {
        s.name
        for s in runtime.show_servers_state(backend)
        if s.admin == "ready" and s.address not in ("-", "0.0.0.0")
    }


def start_sidecar(
    settings: Settings,
    *,
    startup_wait: float = 15.0,
    stream_silence: float = STREAM_SILENCE,
    stream_read_timeout: Optional[float] = None,
    own_state_dir: bool = True,
    wait_for_haproxy: bool = True,
) -> SidecarNode:
    """A daemon thread on ``settings``; returns once its status server listens and (unless
    ``wait_for_haproxy`` is false) HAProxy answers on its admin socket. ``own_state_dir``:
    :meth:`SidecarNode.stop` removes ``settings.state_dir``."""
    daemon = build_daemon(settings, startup_wait=startup_wait, stream_silence=stream_silence)
    if stream_read_timeout is not None:
        marathon_source(daemon).follower.stream_read_timeout = stream_read_timeout
    name = f"sidecar-{settings.group or 'node'}"
    thread = threading.Thread(target=daemon.run, name=name, daemon=True)
    thread.start()
    node = SidecarNode(daemon, thread, settings.state_dir, own_state_dir=own_state_dir)
    try:
        wait_until(lambda: daemon.status_server is not None, 30, "the status server listens")
        if wait_for_haproxy:
            wait_until(node.haproxy_serving, 60, "the sidecar started HAProxy")
    except BaseException:
        node.stop()
        raise
    return node


StartNode = Callable[..., SidecarNode]  # a fixture's "start a node" callable
