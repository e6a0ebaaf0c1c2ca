"""The daemon's terms on a real ZooKeeper, with a recording catalog source in place of Marathon:
a source exists only while its publisher leads, it is seeded with what ZooKeeper holds, and a
catalog that arrives after its term ended is never written."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
from kazoo.client import KazooClient

from publisher.daemon import PublisherDaemon
from publisher.settings import PublisherSettings
from sidecar.catalog import READY, Catalog, Instance, Service, ServiceOptions, service_key
from sidecar.metrics import FollowerMetrics
from sidecar.sources.base import CatalogListener, SourceHealth
from sidecar.sources.zookeeper import layout
from testkit import wait_until
from testkit.publisher import instances
from testkit.zookeeper import ZooKeeperServer, expire_session


class RecordingSource:
    """A CatalogSource whose catalogs the test hands over; it records what the daemon does."""

    name = "Marathon"
    catalog: Optional[Catalog] = None

    def __init__(self) -> None:
        self.seeded: Optional[Catalog] = None
        self.listener: Optional[CatalogListener] = None
        self.stopped = threading.Event()

    def start(self, listener: CatalogListener) -> None:
        self.listener = listener

    def stop(self) -> None:
        self.stopped.set()

    def seed(self, catalog: Catalog) -> None:
        self.seeded = catalog

    def snapshot_once(self) -> Catalog:
        raise NotImplementedError

    def request_resync(self, reason: str) -> None:
        pass

    def health(self) -> SourceHealth:
        return SourceHealth("Marathon", "stream", True, self.catalog is not None, None, None)

    def offer(self, catalog: Catalog) -> None:
        """What the Marathon source does with an accepted snapshot."""
        assert self.listener is not None
        self.catalog = catalog
        self.listener.source_contact()
        self.listener.catalog_changed(catalog, "snapshot (test)")


def web(*tasks: int) -> Catalog:
    found = tuple(
        Instance(f"web.{n}", f"10.0.0.{n}", 31000 + n, READY, "running", app_id="/web")
        for n in tasks
    )
    service = Service(service_key("/web", 0), "/web", 0, ServiceOptions(10000, 10000), found)
    return Catalog({service.key: service})


class Node:
    """One in-process daemon and the sources it made."""

    def __init__(
        self, server: ZooKeeperServer, zk_path: str, state_dir: Path, failures: int = 0
    ) -> None:
        self.sources: list[RecordingSource] = []
        self.failures = failures  # the first terms fail to make a source
        self.attempts = 0
        settings = PublisherSettings(
            marathon_urls=("http://127.0.0.1:9",),
            zookeeper=(server.address,),
            zk_path=zk_path,
            status_port=0,
            state_dir=str(state_dir),
        )
        self.client = KazooClient(hosts=server.address, timeout=1.0)
        self.daemon = PublisherDaemon(settings, self.client, self._make_source)
        self.daemon.start()

    def _make_source(self, metrics: FollowerMetrics) -> RecordingSource:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RuntimeError("cannot make the source (test)")
        source = RecordingSource()
        self.sources.append(source)
        return source

    def leads(self) -> bool:
        """Leading, with the term's source started (it can hand over catalogs)."""
        started = bool(self.sources) and self.sources[-1].listener is not None
        return self.daemon.publisher.role == "leader" and started


@pytest.fixture
def nodes(
    zk_server: ZooKeeperServer, zk_path: str, tmp_path: Path
) -> Iterator[Callable[..., Node]]:
    made: list[Node] = []

    def start(name: str, failures: int = 0) -> Node:
        node = Node(zk_server, zk_path, tmp_path / name, failures)
        made.append(node)
        return node

    yield start
    for node in made:
        node.daemon.shutdown()


def test_a_source_lives_only_in_its_term_and_starts_from_what_zookeeper_holds(
    nodes: Callable[..., Node], reader: KazooClient, zk_path: str
) -> None:
    first = nodes("a")
    wait_until(first.leads, 30, "a to lead")
    (source,) = first.sources
    assert source.seeded is None  # nothing in ZooKeeper yet
    source.offer(web(1, 2))
    wait_until(lambda: len(instances(reader, zk_path, "web:0")) == 2, 30, "a's write")
    second = nodes("b")
    election = layout.leader_path(zk_path)
    wait_until(lambda: len(reader.get_children(election)) == 2, 30, "b to join the election")
    assert second.daemon.publisher.role == "standby" and second.sources == []

    expire_session(first.client)  # a's term ends; b is next in line

    wait_until(second.leads, 30, "b to lead")
    assert source.stopped.is_set()
    (taken_over,) = second.sources
    assert taken_over.seeded is not None
    assert taken_over.seeded.in_rotation() == frozenset({"web.1", "web.2"})
    source.offer(web(1))  # a late catalog of a's ended term: dropped
    assert first.daemon.health()[1]["catalog"]["services"] == 0
    taken_over.offer(web(1, 2, 3))
    wait_until(lambda: len(instances(reader, zk_path, "web:0")) == 3, 30, "b's write")
    assert second.daemon.publisher.wait_written(1, 30)
    assert len(instances(reader, zk_path, "web:0")) == 3
    assert len(first.sources) == 1 and first.daemon.publisher.role == "standby"


def test_a_publisher_that_leads_again_writes_nothing_until_its_source_speaks(
    nodes: Callable[..., Node], reader: KazooClient, zk_path: str
) -> None:
    only = nodes("a")
    wait_until(only.leads, 30, "a to lead")
    only.sources[0].offer(web(1, 2))
    # written, not only visible: the reader can see the nodes before the writer counts its commit
    wait_until(only.daemon.publisher.written, 30, "the first term's write")
    assert len(instances(reader, zk_path, "web:0")) == 2
    transactions = only.daemon.publisher.writer.counters.transactions

    expire_session(only.client)

    wait_until(lambda: len(only.sources) == 2 and only.leads(), 30, "a second term")
    assert only.sources[0].stopped.is_set()
    assert only.sources[1].seeded is not None and len(only.sources[1].seeded) == 1
    assert only.daemon.publisher.writer.counters.transactions == transactions
    assert not only.daemon.publisher.written()  # no catalog in this term yet
    only.sources[1].offer(web(2))
    wait_until(lambda: len(instances(reader, zk_path, "web:0")) == 1, 30, "the new term's write")


def test_a_standby_whose_session_expired_still_takes_over(
    nodes: Callable[..., Node], reader: KazooClient, zk_path: str
) -> None:
    leader = nodes("a")
    wait_until(leader.leads, 30, "a to lead")
    leader.sources[0].offer(web(1, 2))
    standby = nodes("b")
    election = layout.leader_path(zk_path)
    wait_until(lambda: len(reader.get_children(election)) == 2, 30, "b to join the election")

    expire_session(standby.client)
    leader.daemon.shutdown()  # a leaves the lead

    wait_until(standby.leads, 30, "b to lead with its new session")
    (source,) = standby.sources
    assert source.seeded is not None and source.seeded.in_rotation() == {"web.1", "web.2"}
    source.offer(web(3))
    wait_until(lambda: len(instances(reader, zk_path, "web:0")) == 1, 30, "b's write")


def test_a_term_that_fails_to_begin_ends_and_the_publisher_leads_again(
    nodes: Callable[..., Node], reader: KazooClient, zk_path: str
) -> None:
    node = nodes("a", failures=2)
    wait_until(node.leads, 30, "a to lead once its source can be made")
    assert node.attempts == 3  # two failed terms, then the third
    assert node.daemon.publisher.leadership.changes == 5  # 2 x (begun, ended) + begun
    node.sources[0].offer(web(1))
    wait_until(lambda: len(instances(reader, zk_path, "web:0")) == 1, 30, "the write")
