"""Real ZooKeeper servers for tests: one standalone server or a three-server ensemble on loopback.

Debian's `zookeeper` package (scripts/setup.sh installs it) ships the server as
/usr/share/java/zookeeper.jar, whose manifest names its dependencies. We run the Java main class
directly (no system service, no zkServer.sh): a temporary data dir, ports the OS picked, the admin
server off, a fast tickTime (sessions of 2-20 ticks, so session-expiry tests take a second or two
instead of the usual 4-40 s) and a small heap. Readiness is a condition: the server answers the
`srvr` four-letter word with a `Mode:` line (standalone, leader or follower), i.e. it serves.

pytest fixtures (registered from tests/zookeeper/conftest.py):
- `zk_server`: one standalone server for the session; tests that stop or restart it take their own
  through `zk_server_factory`.
- `zk_ensemble`: three servers on 127.0.1.1-3 for a module.
- `zk_chroot`: a fresh path per test (`/t/<test name>-<n>`), so tests sharing a server never see
  each other's nodes.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from testkit.ports import free_ports
from testkit.waiting import wait_until

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# slf4j's simple binding (Debian's libslf4j-java, a dependency of the package) so the server's log
# lands in the data dir's zookeeper.log; without it slf4j falls back to printing nothing.
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
DEFAULT_HEAP_MB = 64
JVM_OPTIONS = (
    "-Xms16m",
    "-Xss512k",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
    "-Dzookeeper.jmx.log4j.disable=true",
    "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
)
DEFAULT_TICK_MS = 100
START_TIMEOUT = 60.0

T = TypeVar("T")


def four_letter_word(host: str, port: int, word: str, timeout: float = 2.0) -> str:
    """Send a four-letter command (`srvr`, `ruok`, `mntr`) and return the whole answer."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(word.encode("ascii"))
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


class ZooKeeperServer:
    """One ZooKeeper JVM on loopback: its config, data dir and process."""

    def __init__(
        self,
        workdir: Path,
        host: str = "127.0.0.1",
        tick_ms: int = DEFAULT_TICK_MS,
        server_id: Optional[int] = None,
        heap_mb: int = DEFAULT_HEAP_MB,
    ) -> None:
        self.workdir = workdir
        self.heap_mb = heap_mb  # the JVM's -Xmx: the tests' catalogs fit in the default
        self.host = host
        self.port, quorum_port, election_port = free_ports(3, host)
        self.tick_ms = tick_ms
        self.server_id = server_id
        self.peer_ports = (quorum_port, election_port)
        self.peers: Sequence[ZooKeeperServer] = ()
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.data_dir = workdir / "data"
        self.log_path = workdir / "zookeeper.log"
        self.config_path = workdir / "zoo.cfg"

    @property
    def address(self) -> str:
        """`host:port` for clients."""
        return f"{self.host}:{self.port}"

    def write_config(self) -> None:
        """zoo.cfg (and myid in an ensemble) in the work dir."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"tickTime={self.tick_ms}",
            f"dataDir={self.data_dir}",
            f"clientPort={self.port}",
            f"clientPortAddress={self.host}",
            "initLimit=20",
            "syncLimit=10",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,mntr,stat",
            "maxClientCnxns=0",
            "autopurge.purgeInterval=0",
        ]
        if self.peers:
            for peer in self.peers:
                quorum, election = peer.peer_ports
                lines.append(f"server.{peer.server_id}={peer.host}:{quorum}:{election}")
            (self.data_dir / "myid").write_text(f"{self.server_id}\n")
        self.config_path.write_text("\n".join(lines) + "\n")

    def launch(self) -> None:
        """Start the JVM without waiting for it to serve."""
        if self.running():
            raise RuntimeError(f"ZooKeeper {self.address} is already running")
        self.write_config()
        classpath = [str(ZOOKEEPER_JAR)]
        if SLF4J_SIMPLE_JAR.exists():
            classpath.append(str(SLF4J_SIMPLE_JAR))
        heap = f"-Xmx{self.heap_mb}m"
        command = [java_binary(), heap, *JVM_OPTIONS, "-cp", ":".join(classpath), MAIN_CLASS]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start and wait until it serves; returns the seconds that took."""
        started = time.monotonic()
        self.launch()
        self.wait_serving(timeout)
        return time.monotonic() - started

    def mode(self, timeout: float = 2.0) -> Optional[str]:
        """`standalone`, `leader` or `follower` while serving; None otherwise."""
        try:
            answer = four_letter_word(self.host, self.port, "srvr", timeout)
        except OSError:
            return None
        found = re.search(r"^Mode: (\w+)", answer, re.MULTILINE)
        return found.group(1) if found else None

    def wait_serving(self, timeout: float = START_TIMEOUT) -> str:
        """Wait until the server answers with a mode; fail early if the JVM died."""

        def serving() -> Optional[str]:
            if not self.running():
                raise AssertionError(f"ZooKeeper {self.address} exited:\n{self.log_tail()}")
            return self.mode(timeout=0.5)  # a starting server may accept and not answer yet

        return wait_until(serving, timeout, f"ZooKeeper {self.address} to serve")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait (a crash)."""
        self._end(signal.SIGKILL)

    def restart(self, timeout: float = START_TIMEOUT) -> float:
        """Stop, then start on the same port and data dir; returns the seconds to serve."""
        self.stop()
        return self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: the process stays, answers nothing."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def resident_kib(self) -> Optional[int]:
        """The JVM's resident memory (VmRSS) in KiB, for the harness figures."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) if found else None


class ZooKeeperEnsemble:
    """Three servers, each on its own loopback address (127.0.1.1-3 by default)."""

    def __init__(
        self,
        workdir: Path,
        hosts: Sequence[str] = ("127.0.1.1", "127.0.1.2", "127.0.1.3"),
        tick_ms: int = DEFAULT_TICK_MS,
    ) -> None:
        self.servers = [
            ZooKeeperServer(workdir / f"server{i}", host, tick_ms, server_id=i)
            for i, host in enumerate(hosts, start=1)
        ]
        for server in self.servers:
            server.peers = self.servers

    @property
    def address(self) -> str:
        """The connection string with every server."""
        return ",".join(server.address for server in self.servers)

    def start(self, timeout: float = START_TIMEOUT) -> float:
        """Start all three together and wait until each serves (a leader was elected)."""
        started = time.monotonic()
        for server in self.servers:
            server.launch()
        self.wait_quorum(timeout)
        return time.monotonic() - started

    def wait_quorum(self, timeout: float = START_TIMEOUT) -> ZooKeeperServer:
        """Wait until every running server serves and one of them leads; return the leader."""
        for server in self.servers:
            if server.running():
                server.wait_serving(timeout)
        return wait_until(self.leader, timeout, "the ensemble to elect a leader")

    def leader(self) -> Optional[ZooKeeperServer]:
        """The server that says `Mode: leader` right now, if any."""
        for server in self.servers:
            if server.running() and server.mode() == "leader":
                return server
        return None

    def followers(self) -> list[ZooKeeperServer]:
        return [s for s in self.servers if s.running() and s.mode() == "follower"]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def java_binary() -> str:
    """The `java` on PATH (Debian's zookeeper pulls a headless JRE)."""
    found = shutil.which("java")
    if not found:
        raise RuntimeError("java is not installed: run scripts/setup.sh (it installs zookeeper)")
    return found


def require_zookeeper() -> None:
    """Fail (not skip) when the package is missing: the suite needs it."""
    if not ZOOKEEPER_JAR.exists():
        pytest.fail(
            f"{ZOOKEEPER_JAR} is missing: run scripts/setup.sh (Debian's zookeeper package)"
        )
    java_binary()


_chroot_counter = itertools.count(1)


def chroot_for(test_name: str) -> str:
    """A path no other test in this process uses: `/t/<test name>-<n>`."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)[:80]
    return f"/t/{safe}-{os.getpid()}-{next(_chroot_counter)}"


@pytest.fixture(scope="session")
def zk_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """One standalone server shared by the session; do not stop it (use zk_server_factory)."""
    require_zookeeper()
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def zk_server_factory(tmp_path: Path) -> Iterator[Callable[..., ZooKeeperServer]]:
    """Started standalone servers that belong to one test (to stop, kill or restart)."""
    require_zookeeper()
    servers: list[ZooKeeperServer] = []

    def make(**options: Any) -> ZooKeeperServer:
        server = ZooKeeperServer(tmp_path / f"zk{len(servers)}", **options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.kill()


@pytest.fixture(scope="module")
def zk_ensemble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperEnsemble]:
    """Three servers for a module; a test that kills one brings it back (`wait_quorum`)."""
    require_zookeeper()
    ensemble = ZooKeeperEnsemble(tmp_path_factory.mktemp("ensemble"))
    ensemble.start()
    yield ensemble
    ensemble.stop()


@pytest.fixture
def zk_chroot(request: pytest.FixtureRequest) -> str:
    """A fresh path for this test's nodes."""
    return chroot_for(request.node.name)


@pytest.fixture
def kazoo_client_factory() -> Iterator[Callable[..., KazooClient]]:
    """Started kazoo clients, stopped and closed after the test.

    `connect(hosts, chroot=None, **options)`: with a chroot, the path is created first (through a
    plain client) and every path the client uses is relative to it.
    """
    made: list[KazooClient] = []

    def connect(hosts: str, chroot: Optional[str] = None, **options: Any) -> KazooClient:
        if chroot:
            setup = KazooClient(hosts=hosts)
            setup.start(timeout=30)
            setup.ensure_path(chroot)
            setup.stop()
            setup.close()
            hosts = hosts + chroot
        client = KazooClient(hosts=hosts, **options)
        made.append(client)
        client.start(timeout=30)
        return client

    yield connect
    for client in made:
        client.stop()
        client.close()


def expire_session(client: KazooClient, timeout: float = 30.0) -> None:
    """Make the server expire `client`'s session now, and wait until the client has a new one.

    A second client joins the same session (id and password) and closes it: the server ends the
    session, the first client sees it expired (LOST) and connects again with a new session.
    """
    session_id, password = client.client_id
    hosts = ",".join(f"{host}:{port}" for host, port in client.hosts)
    lost = threading.Event()

    def listener(state: str) -> None:
        if state == KazooState.LOST:
            lost.set()

    client.add_listener(listener)
    twin = KazooClient(hosts=hosts, client_id=(session_id, password))
    twin.start(timeout=timeout)
    twin.stop()
    twin.close()
    wait_until(lost.is_set, timeout, "the session to expire")
    client.remove_listener(listener)
    wait_until(
        lambda: client.connected and client.client_id[0] != session_id,
        timeout,
        "a new session",
    )


class UpdateRecorder:
    """Collects what a watcher delivers; tests wait on conditions over the latest updates."""

    def __init__(self) -> None:
        self.updates: list[Any] = []
        self.threads: set[str] = set()
        self.watcher: Any = None  # the watcher that delivers here, when a test needs it
        self._lock = threading.Lock()

    def __call__(self, update: Any) -> None:
        with self._lock:
            self.updates.append(update)
            self.threads.add(threading.current_thread().name)

    def latest(self, service: str) -> Any:
        with self._lock:
            for update in reversed(self.updates):
                if update.service == service:
                    return update
        return None

    def wait_for(
        self, service: str, check: Callable[[Any], bool], what: str, timeout: float = 30.0
    ) -> Any:
        def matched() -> Any:
            update = self.latest(service)
            return update if update is not None and check(update) else None

        return wait_until(matched, timeout, f"{service}: {what} (latest: {self.latest(service)})")
