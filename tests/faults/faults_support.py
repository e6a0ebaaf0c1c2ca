"""Shared pieces of the fault matrix: emulator (+ standby) behind a relay, sidecar nodes, load.

- :class:`Relay`: a TCP relay in front of the emulator that a test can *cut* (port closed, every
  relayed connection reset), *restore*, or whose event streams it can *freeze* (the connection
  stays open, nothing more arrives: Marathon's bus going silent, marathon #4159).
- :class:`Node`: one sidecar :class:`~sidecar.daemon.Daemon` in a thread with its HAProxy, its own
  state directory and ``--group`` (so several nodes never bind the same service port).
- :func:`start_node` / :meth:`Node.stop`: every process and thread is stopped in teardown.

The load generator, the echo app and free ports come from ``bench/_harness.py`` (shared with the
zero-drop tests).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from _harness import (  # noqa: E402
    LoadGenerator,
    ask,
    echo_app,
    free_ports,
    haproxy_masters,
    haproxy_processes,
    wait_until,
)

from marathon_bridge.client import MarathonClient  # noqa: E402
from marathon_bridge.testing import MarathonEmulator  # noqa: E402
from sidecar.daemon import Daemon  # noqa: E402
from sidecar.main import build_daemon  # noqa: E402
from sidecar.names import backend_name, server_name  # noqa: E402
from sidecar.settings import Settings  # noqa
from sidecar.sources.marathon.source import MarathonSource  # noqa: E402

__all__ = [
    "LoadGenerator",
    "Node",
    "Relay",
    "free_ports",
    "group_app",
    "haproxy_masters",
    "haproxy_processes",
    "wait_until",
]

STREAM_SILENCE = 3.0  # the daemon polls after this long without a byte on the stream
STREAM_READ_TIMEOUT = 4.0  # and reconnects the stream after this long


# ----------------------------------------------------------------------------- relay


class Relay:
    """A TCP relay on a free loopback port in front of ``target`` (``http://host:port``)."""

    def __init__(self, target: str) -> None:
        self.target = target
        (self.port,) = free_ports(1)
        self._listener: Optional[socket.socket] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._frozen: set[int] = set()  # ids of client sockets whose stream is silenced
        self._streams: set[int] = set()
        self._thread: Optional[threading.Thread] = None
        self.cut_now = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Relay:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stop.clear()
        self.cut_now = False
        self._thread = threading.Thread(target=self._accept, name="relay", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        assert self._listener is not None
        host, port = self.target.rsplit("//", 1)[1].split(":")
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((host, int(port)), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(
                target=self._pipe, args=(client, upstream, client), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, client), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, client: socket.socket) -> None:
        to_client = sink is client
        try:
            source.settimeout(None)
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not to_client and data.startswith(b"GET /v2/events"):
                    with self._lock:
                        self._streams.add(id(client))
                if to_client:
                    with self._lock:
                        frozen = id(client) in self._frozen
                    if frozen:
                        continue  # swallowed: the client hears nothing, the socket stays open
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def freeze_streams(self) -> int:
        """Silence every open event stream (new connections are not affected). How many."""
        with self._lock:
            self._frozen |= self._streams
            return len(self._streams)

    def cut(self) -> None:
        """Close the port and reset every relayed connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
            self._streams.clear()
            self._frozen.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.cut_now = True

    def restore(self) -> None:
        if self.cut_now:
            self.start()

    def stop(self) -> None:
        if not self.cut_now:
            self.cut()


# ----------------------------------------------------------------------------- nodes


def group_app(app_id: str, port: int, instances: int, group: str, **extra: Any) -> dict[str, Any]:
    """An echo app on one service port, served only by the node of ``group``."""
    app = echo_app(app_id, port, instances)
    app["labels"]["HAPROXY_GROUP"] = group
    app.update(extra)
    return app


def node_settings(
    urls: tuple[str, ...], state_dir: str, haproxy_bin: str, group: str, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "marathon_urls": urls,
        "state_dir": state_dir,
        "haproxy_bin": haproxy_bin,
        "group": group,
        "status_host": "127.0.0.1",
        "status_port": free_ports(1)[0],
        "debounce": 0.05,
        "min_reload_interval": 0.5,
        "resync_interval": 60.0,
        "poll_interval": 1.0,
        "empty_confirm": 30.0,
        "drain_timeout": 3.0,
        "marathon_timeout": 1.5,
    }
    values.update(extra)
    return Settings(**values)


@dataclass
class Node:
    """One sidecar daemon (in a thread) and the HAProxy it runs."""

    daemon: Daemon
    thread: threading.Thread
    state_dir: str
    settings: Settings
    own_state_dir: bool = True
    stopped: bool = field(default=False)

    # -- reading the sidecar

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

    def errors(self) -> float:
        return self.metric_sum("marathon_sidecar_marathon_errors_total")

    def status(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.settings.status_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except OSError as exc:
            return 0, str(exc)
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        code, body = self.status("/health")
        report: dict[str, Any] = json.loads(body) if code else {"status": "", "reasons": [body]}
        report["http_status"] = code
        return report

    @property
    def admin_socket(self) -> str:
        return str(Path(self.state_dir) / "run" / "admin.sock")

    def ready_servers(self, app_id: str, port: int) -> set[str]:
        """Names of the servers HAProxy has ready in the app's backend (``show servers state``)."""
        runtime = self.daemon.applier.runtime
        return {
            s.name
            for s in runtime.show_servers_state(backend_name(app_id, port))
            if s.admin == "ready" and s.address not in ("-", "0.0.0.0")
        }

    def routes_exactly(self, emulator: MarathonEmulator, app_id: str, port: int) -> bool:
        """HAProxy's ready servers are the app's healthy running tasks."""
        wanted = {server_name(t) for t in healthy_ids(emulator, app_id)}
        return bool(wanted) and self.ready_servers(app_id, port) == wanted

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.daemon.stop()
        self.thread.join(30)
        if self.own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


def marathon_urls(node: Node) -> list[str]:
    """The node's Marathon URLs in the client's current order (the last that answered first)."""
    source = node.daemon.source
    assert isinstance(source, MarathonSource)
    return list(source.client.urls)  # type: ignore[attr-defined]


def start_node(
    urls: tuple[str, ...],
    haproxy_bin: str,
    group: str,
    *,
    state_dir: Optional[str] = None,
    **extra: Any,
) -> Node:
    """A daemon in a thread; returns once HAProxy answers on its admin socket."""
    own = state_dir is None
    directory = state_dir or tempfile.mkdtemp(prefix="flt-", dir="/tmp")  # short: socket paths
    settings = node_settings(urls, directory, haproxy_bin, group, **extra)
    daemon = build_daemon(settings, startup_wait=10.0, stream_silence=STREAM_SILENCE)
    assert isinstance(daemon.source, MarathonSource)
    daemon.source.follower.stream_read_timeout = STREAM_READ_TIMEOUT
    thread = threading.Thread(target=daemon.run, name=f"sidecar-{group}", daemon=True)
    thread.start()
    node = Node(daemon, thread, directory, settings, own_state_dir=own)
    try:
        wait_until(
            lambda: daemon.haproxy.running() and Path(node.admin_socket).exists(),
            60,
            message="the sidecar started HAProxy",
        )
    except BaseException:
        node.stop()
        raise
    return node


def healthy_ids(emulator: MarathonEmulator, app_id: str) -> set[str]:
    out = set()
    for task in emulator.tasks(app_id, states=["TASK_RUNNING"]):
        results = task.get("healthCheckResults") or []
        if results and all(r.get("alive") for r in results):
            out.add(task["id"])
    return out


# ----------------------------------------------------------------------------- processes

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SidecarProcess:
    """``python -m sidecar`` (run, killed, run again on the same state dir), following Marathon
    through ``relay`` and serving ``group``."""

    relay: Relay
    group: str
    state_dir: str
    status_port: int
    haproxy_bin: str
    proc: Optional[subprocess.Popen[bytes]] = None
    runs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        args = [
            sys.executable, "-m", "sidecar",
            "--marathon", self.relay.url,
            "--state-dir", self.state_dir,
            "--haproxy-bin", self.haproxy_bin,
            "--group", self.group,
            "--status-listen", f"127.0.0.1:{self.status_port}",
            "--marathon-timeout", "1.5",
            "--poll-interval", "1",
            "--min-reload-interval", "0.5",
            "--drain-timeout", "3",
            "--log-format", "json",
        ]  # fmt: skip
        log = open(Path(self.state_dir) / "sidecar.log", "ab")  # noqa: SIM115
        with log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.runs.append(self.proc)

    def status(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.status_port, timeout=5)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except OSError:
            return 0, ""
        finally:
            conn.close()

    def health(self) -> dict[str, Any]:
        code, body = self.status("/health")
        return dict(json.loads(body)) if code else {"status": "", "reasons": []}

    def master_pid(self) -> Optional[int]:
        try:
            return int((Path(self.state_dir) / "run" / "haproxy.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (Path(self.state_dir) / "sidecar.log").read_text()[-3000:]
        return ""


@contextlib.contextmanager
def sidecar_process(
    emulator: MarathonEmulator, haproxy_bin: str, group: str
) -> Iterator[SidecarProcess]:
    """A sidecar process behind its own relay; every run and any master left by a killed run
    (both started here) are stopped at the end."""
    relay = Relay(emulator.url).start()
    state_dir = tempfile.mkdtemp(prefix="flts-", dir="/tmp")
    process = SidecarProcess(relay, group, state_dir, free_ports(1)[0], haproxy_bin)
    try:
        yield process
    finally:
        masters = {process.master_pid()}
        for run in process.runs:
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)
                try:
                    run.wait(30)
                except subprocess.TimeoutExpired:
                    run.kill()
                    run.wait(10)
        for pid in masters:
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGTERM)
                wait_until(lambda pid=pid: not alive(pid), 30, message="leftover master stopped")
        relay.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def alive(pid: Optional[int]) -> bool:
    """True while ``pid`` runs (a zombie is dead)."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ", 1)[1][:1] != "Z"


def served_by_all(emulator: MarathonEmulator, app_id: str, port: int) -> bool:
    """A handful of new connections reach exactly the app's healthy tasks."""
    answers = {ask(port) for _ in range(8)}
    return answers == healthy_ids(emulator, app_id)


# ----------------------------------------------------------------------------- the cluster


@dataclass
class Cluster:
    """The Marathon side: a leader emulator running echo tasks, a standby, relays to the leader."""

    emulator: MarathonEmulator
    standby: MarathonEmulator
    relay: Relay  # the sidecar's first --marathon URL
    standby_relay: Relay  # the standby's way to the leader (its 302 for /v2/events points here)
    client: MarathonClient

    def freeze_streams(self) -> int:
        """Silence every open event stream, whichever way it reached the leader."""
        return self.relay.freeze_streams() + self.standby_relay.freeze_streams()

    def deploy(self, app: dict[str, Any], timeout: float = 90.0) -> None:
        self.client.create_app(app)
        wait_until(
            lambda: len(healthy_ids(self.emulator, app["id"])) == app["instances"],
            timeout,
            message=f"{app['id']}: {app['instances']} healthy tasks",
        )

    def healthy(self, app_id: str) -> set[str]:
        return healthy_ids(self.emulator, app_id)
