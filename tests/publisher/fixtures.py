"""The publisher tests' own fixtures (tests/publisher/conftest.py registers them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest
from kazoo.client import KazooClient

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from testkit.zookeeper import ZooKeeperServer

from .publisher_support import PublisherProcess


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
