"""`marathon-publisher` as a real process for tests: start, signal, read /health and /metrics, and
see its TCP connections to Marathon in /proc (what it holds, not what it says); reading what it
wrote into ZooKeeper; and pytest fixtures (a Marathon emulator, this test's catalog path, a
reader, publishers that are stopped after the test).

Register the fixtures from a conftest.py (with the ZooKeeper ones of `testkit.zookeeper`); tests
that use them get the `zookeeper` marker through `zk_server` (testkit/markers.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from kazoo.client import KazooClient

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from sidecar.sources.zookeeper import layout
from testkit.http import health_of, metric_sample, status_of
from testkit.ports import free_port
from testkit.process import tcp_connections_to, terminate
from testkit.waiting import wait_until
from testkit.zookeeper import DEFAULT_HEAP_MB, ZooKeeperServer

PUBLISHING_ZK_PATH = "/smartstack/services"


def publisher_command() -> str:
    command = Path(sys.executable).with_name("marathon-publisher")
    if not command.exists():
        raise AssertionError(f"{command} is missing: the package is not installed (setup.sh)")
    return str(command)


class PublisherProcess:
    """One `marathon-publisher` on loopback, its log in `<work>/<name>.log`."""

    def __init__(
        self, work: Path, name: str, marathon: str, zookeeper: str, zk_path: str, *extra: str
    ) -> None:
        self.name = name
        self.status_port = free_port()
        self.log_path = work / f"{name}.log"
        argv = [
            publisher_command(),
            "--marathon", marathon,
            "--zookeeper", zookeeper,
            "--zk-path", zk_path,
            "--status-listen", f"127.0.0.1:{self.status_port}",
            "--state-dir", str(work / name),
            "--zk-session-timeout", "1",
            "--poll-interval", "0.5",
            *extra,
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def health(self) -> dict[str, Any]:
        """The /health report with ``http_status`` (0, and no ``role``, while nothing answers)."""
        return health_of(self.status_port)

    def role(self) -> Optional[str]:
        found = self.health().get("role")
        return None if found is None else str(found)

    def metrics_text(self) -> str:
        """/metrics as Prometheus text ("" while nothing answers)."""
        status, text = status_of(self.status_port, "/metrics")
        return text if status == 200 else ""

    def metric(self, name: str, labels: Optional[dict[str, str]] = None) -> float:
        """One sample of /metrics (0 when absent)."""
        return metric_sample(self.metrics_text(), name, labels)

    def wait_health(self, what: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Wait until /health has these top-level fields; the log tail says why it did not."""

        def matched() -> Optional[dict[str, Any]]:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
            found = self.health()
            return found if fields.items() <= found.items() else None

        return wait_until(matched, timeout, f"{self.name}: {what}")

    def marathon_connections(self, port: int) -> int:
        """Established TCP connections of this process to 127.0.0.1:`port`."""
        return tcp_connections_to(self.pid, port)

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGCONT)  # a paused one must be able to stop
        terminate(self.process)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Publishing:
    """ZooKeeper mode's middle on loopback: a ZooKeeper server (ticking every ``tick_ms``) and a
    leading publisher following ``marathon``, under ``work``; :meth:`sidecar_args` are the flags
    of a sidecar that watches what it writes."""

    def __init__(
        self,
        work: Path,
        marathon: str,
        *publisher_args: str,
        tick_ms: int = 500,
        heap_mb: int = DEFAULT_HEAP_MB,
        lead_timeout: float = 60.0,
    ) -> None:
        self.zookeeper = ZooKeeperServer(work / "zookeeper", tick_ms=tick_ms, heap_mb=heap_mb)
        self.zookeeper.start()
        try:
            self.publisher = PublisherProcess(
                work, "publisher", marathon, self.zookeeper.address, PUBLISHING_ZK_PATH,
                *publisher_args,
            )  # fmt: skip
            self.publisher.wait_health("the publisher to lead", lead_timeout, role="leader")
        except BaseException:
            self.zookeeper.stop()
            raise

    def sidecar_args(self) -> list[str]:
        address = self.zookeeper.address
        return ["--source", "zookeeper", "--zookeeper", address, "--zk-path", PUBLISHING_ZK_PATH]

    def stop(self) -> None:
        self.publisher.stop()
        self.zookeeper.stop()


# --- what ZooKeeper holds -----------------------------------------------------------------------


def children_stats(reader: KazooClient, zk_path: str, service: str) -> dict[str, tuple[int, int]]:
    """Instance child name -> (czxid, mzxid): a rewritten or recreated child changes them."""
    base = layout.service_path(zk_path, service)
    stats = {}
    for name in reader.get_children(base):
        _data, stat = reader.get(f"{base}/{name}")
        stats[name] = (stat.czxid, stat.mzxid)
    return stats


def instances(reader: KazooClient, zk_path: str, service: str) -> list[layout.Instance]:
    """The service's instances decoded from their child names ([] while it does not exist)."""
    base = layout.service_path(zk_path, service)
    if reader.exists(base) is None:
        return []
    decoded = [layout.decode_child_name(base, n) for n in reader.get_children(base)]
    return sorted((i for i in decoded if isinstance(i, layout.Instance)), key=lambda i: i.name)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def marathon() -> Iterator[MarathonEmulator]:
    """An emulated Marathon (no task processes) with a fast SSE heartbeat."""
    with MarathonEmulator(heartbeat_interval=0.5) as emulator:
        yield emulator


@pytest.fixture
def marathon_client(marathon: MarathonEmulator) -> Iterator[MarathonClient]:
    client = MarathonClient(marathon.url, timeout=(3.0, 10.0))
    yield client
    client.close()


@pytest.fixture
def zk_path(zk_chroot: str) -> str:
    """This test's catalog path (its bridge root follows from it)."""
    return f"{zk_chroot}/services"


@pytest.fixture
def reader(
    zk_server: ZooKeeperServer, kazoo_client_factory: Callable[..., KazooClient]
) -> KazooClient:
    """A plain client that reads what the publishers wrote."""
    return kazoo_client_factory(zk_server.address)


@pytest.fixture
def publishers(
    tmp_path: Path, marathon: MarathonEmulator, zk_server: ZooKeeperServer, zk_path: str
) -> Iterator[Callable[..., PublisherProcess]]:
    """`start(name, *extra flags)` -> a running publisher on this test's Marathon and path."""
    started: list[PublisherProcess] = []

    def start(name: str, *extra: str) -> PublisherProcess:
        address = zk_server.address
        process = PublisherProcess(tmp_path, name, marathon.url, address, zk_path, *extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
