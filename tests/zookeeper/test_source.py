"""The ZooKeeper source on a real server: catalogs copy-on-write, the empty rule, connection
states and the publisher's heartbeat on the source's health, --once, nerve services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from kazoo.client import KazooClient

from publisher.feed import CatalogSpecs
from publisher.plan import ServiceSpec
from publisher.publisher import Publisher
from sidecar.catalog import (
    DRAIN,
    READY,
    Catalog,
    DeploymentGroup,
    HealthCheck,
    Instance,
    Service,
    ServiceOptions,
    service_key,
    updated_catalog,
)
from sidecar.main import main
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.local_services import LocalService
from sidecar.sources.zookeeper.source import ZooKeeperSource, ZooKeeperUnavailable
from testkit.waiting import wait_until
from testkit.zk_catalog import (
    CatalogRecorder,
    instance_ids,
    options_doc,
    register_nerve,
    spec,
    task,
    versions,
)
from testkit.zookeeper import ZooKeeperServer, expire_session

ZK = layout.DEFAULT_ZK_PATH
WEB, API = "/shop/web:0", "/shop/api:0"


class Stack:
    """A publisher and ZooKeeper sources on one server, under the test's chroot."""

    def __init__(self, address: str, chroot: str, connect: Callable[..., KazooClient]) -> None:
        connect(address, chroot=chroot)  # creates the chroot
        self.hosts = [address + chroot]
        self.connect = lambda: connect(address, chroot=chroot)
        self.publishers: list[Publisher] = []
        self.sources: list[ZooKeeperSource] = []

    def publisher(self, heartbeat_interval: float = 0.2) -> Publisher:
        publisher = Publisher(self.connect(), ZK, "test-publisher", heartbeat_interval)
        self.publishers.append(publisher)
        publisher.start()
        return publisher

    def source(self, **options: Any) -> tuple[ZooKeeperSource, CatalogRecorder]:
        source = ZooKeeperSource(self.hosts, ZK, **options)
        recorder = CatalogRecorder()
        self.sources.append(source)
        source.start(recorder)
        return source, recorder

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
        for publisher in self.publishers:
            publisher.stop()


@pytest.fixture
def stack(
    zk_server: ZooKeeperServer, kazoo_client_factory: Callable[..., KazooClient], zk_chroot: str
) -> Iterator[Stack]:
    made = Stack(zk_server.address, zk_chroot, kazoo_client_factory)
    yield made
    made.stop()


def publish(publisher: Publisher, catalog: dict[str, ServiceSpec]) -> None:
    assert publisher.wait_written(publisher.publish(catalog), 30)


def test_changes_arrive_as_catalogs_and_unchanged_services_keep_their_objects(
    stack: Stack,
) -> None:
    publisher = stack.publisher()
    publish(
        publisher,
        {"shop.web": spec("/shop/web", 10080, 2), "shop.api": spec("/shop/api", 10081, 1)},
    )
    source, seen = stack.source()
    first = seen.wait_for(lambda c: set(c.services) == {WEB, API}, "both services")
    assert seen.reasons[0] == "snapshot (zookeeper: first read)"
    assert first.services[WEB].options == ServiceOptions(10080, 10080, mode="http")
    assert source.health().synced and source.health().connected

    publish(
        publisher,
        {"shop.web": spec("/shop/web", 10080, 3), "shop.api": spec("/shop/api", 10081, 1)},
    )
    second = seen.wait_for(lambda c: len(c.services[WEB].instances) == 3, "a third web task")
    assert second.services[API] is first.services[API]  # copy-on-write: the very object
    assert len(seen.catalogs) == 2  # one batch, one catalog

    publish(publisher, {"shop.web": spec("/shop/web", 10080, 3)})
    third = seen.wait_for(lambda c: set(c.services) == {WEB}, "api removed")
    assert third.services[WEB] is second.services[WEB]


def test_what_the_publisher_writes_the_source_reads_back_as_the_same_services(
    stack: Stack,
) -> None:
    """The publisher's path (CatalogSpecs -> Publisher) and the source's, through a real server:
    every option and every instance in rotation come back; nothing else does."""
    web_options = ServiceOptions(
        10080, 10080, mode="http", balance="leastconn", vhosts=("web.example.com",), path="/shop",
        groups=("internal",), sticky=True, route_weight=2,
        deployment=DeploymentGroup("web", "2024-05-01T10:00:00.000Z", 20),
        health_check=HealthCheck("http", "/ping", 5000, 2000, 3),
    )  # fmt: skip
    web = Service(
        service_key("/shop/web", 1), "/shop/web", 1, web_options,
        (
            Instance("shop_web.1", "10.0.0.1", 31001, READY, "running", 1, "/shop/web", "v1"),
            Instance("shop_web.2", "10.0.0.2", 31002, READY, "running", 3, "/shop/web", "v2"),
            Instance("shop_web.3", "10.0.0.3", 31003, DRAIN, "killing", 1, "/shop/web", "v1"),
        ),
    )  # fmt: skip
    db = Service(
        service_key("/db", 0), "/db", 0, ServiceOptions(10090, 10090),
        (Instance("db.1", "10.0.1.1", 31100, READY, "running", 1, "/db", "v9"),),
    )  # fmt: skip
    catalog = Catalog({web.key: web, db.key: db})
    published = CatalogSpecs().publish(catalog)
    assert set(published.specs) == {"shop_web:1", "db:0"} and not published.refused
    publish(stack.publisher(), published.specs)

    _, seen = stack.source()
    read = seen.wait_for(lambda c: set(c.services) == set(catalog.services), "both services")
    for key, original in catalog.services.items():
        got = read.services[key]
        assert (got.app_id, got.port_index, got.options) == (
            original.app_id,
            original.port_index,
            original.options,
        )
        assert [(i.id, i.host, i.port, i.weight, i.version, i.state) for i in got.instances] == [
            (i.id, i.host, i.port, i.weight, i.version, READY)
            for i in original.instances
            if i.state == READY
        ]
    assert not read.problems and not read.skipped


def ready_ids(catalog: Catalog) -> dict[str, list[str]]:
    return {
        key: [i.id for i in service.instances if i.state == READY]
        for key, service in catalog.services.items()
    }


def test_catalogs_handed_over_change_by_change_are_written_as_the_last_one(
    stack: Stack,
) -> None:
    """The writer looks only at the names a tagged catalog changed, across catalogs it skipped
    (handed over faster than written): what ZooKeeper holds in the end is the last catalog."""

    def svc(app_id: str, *tasks: int) -> Service:
        instances = tuple(
            Instance(f"{app_id[1:]}.{n}", "10.0.0.1", 31000 + n, READY, "running", 1, app_id)
            for n in tasks
        )
        return Service(service_key(app_id, 0), app_id, 0, ServiceOptions(10080, 10080), instances)

    publisher, specs = stack.publisher(), CatalogSpecs()
    catalog = updated_catalog(Catalog(), {s.key: s for s in (svc("/web", 1), svc("/api", 2))})
    published = specs.publish(catalog)
    assert publisher.wait_written(publisher.publish(published.specs, None, published.changes), 30)
    steps = [
        {"/web:0": svc("/web", 1, 3)},  # a task more
        {"/api:0": None, "/db:0": svc("/db", 4)},  # one service gone, one new
        {"/web:0": svc("/web", 3)},  # a task less
        {"/db:0": svc("/db", 5)},  # a task replaced
    ]
    number = 0
    for step in steps:
        catalog = updated_catalog(catalog, step)
        published = specs.publish(catalog)
        number = publisher.publish(published.specs, None, published.changes)
    assert publisher.wait_written(number, 30)

    _, seen = stack.source()
    read = seen.wait_for(lambda c: set(c.services) == {"/web:0", "/db:0"}, "web and db")
    assert ready_ids(read) == ready_ids(catalog)


def test_an_empty_catalog_after_a_full_one_is_believed_only_when_confirmed(stack: Stack) -> None:
    publisher = stack.publisher()
    publish(publisher, {"shop.web": spec("/shop/web", 10080, 2)})
    _, seen = stack.source(empty_confirm=1.0)
    seen.wait_for(lambda c: WEB in c.services, "web")

    publish(publisher, {})  # the publisher removes the last service
    seen.wait_problem("answered with no services while 1 were known")
    assert WEB in seen.latest.services  # type: ignore[union-attr]  held back meanwhile
    seen.wait_for(lambda c: not c.services, "the empty catalog, once confirmed")
    wait_until(lambda: seen.problem is None, 10, "the problem cleared")


def test_an_emptied_service_keeps_its_instances(stack: Stack) -> None:
    publisher = stack.publisher()
    publish(
        publisher,
        {"shop.web": spec("/shop/web", 10080, 2), "shop.api": spec("/shop/api", 10081, 1)},
    )
    _, seen = stack.source()
    seen.wait_for(lambda c: len(c.services) == 2, "both")
    publish(
        publisher,
        {"shop.web": spec("/shop/web", 10080, 0), "shop.api": spec("/shop/api", 10081, 2)},
    )
    seen.wait_for(lambda c: len(c.services[API].instances) == 2, "api scaled")
    assert instance_ids(seen.latest, WEB) == {"shop_web.0", "shop_web.1"}  # type: ignore[arg-type]


def test_zookeeper_away_keeps_the_catalog_says_so_and_changes_flow_after_restart(
    zk_server_factory: Callable[..., ZooKeeperServer],
    kazoo_client_factory: Callable[..., KazooClient],
    zk_chroot: str,
) -> None:
    server = zk_server_factory()
    stack = Stack(server.address, zk_chroot, kazoo_client_factory)
    try:
        publisher = stack.publisher()
        publish(publisher, {"shop.web": spec("/shop/web", 10080, 2)})
        source, seen = stack.source()
        before = seen.wait_for(lambda c: WEB in c.services, "web")

        server.stop()
        seen.wait_problem("serving the last known catalog")
        assert not source.health().connected
        assert source.health().details["state"] in ("SUSPENDED", "LOST")
        assert seen.latest is before  # nothing delivered while away
        publisher.publish({"shop.web": spec("/shop/web", 10080, 2, "v2")})

        server.start()
        seen.wait_for(lambda c: versions(c, WEB) == {"v2"}, "v2 after the restart", 60)
        wait_until(lambda: seen.problem is None, 30, "the problem cleared")
        assert source.health().connected
    finally:
        stack.stop()


def test_watches_are_set_again_after_a_session_expiry(stack: Stack) -> None:
    publisher = stack.publisher()
    publish(publisher, {"shop.web": spec("/shop/web", 10080, 2)})
    source, seen = stack.source()
    seen.wait_for(lambda c: WEB in c.services, "web")

    expire_session(source.client)
    publish(
        publisher,
        {"shop.web": spec("/shop/web", 10080, 2, "v2"), "shop.api": spec("/shop/api", 10081, 1)},
    )
    seen.wait_for(lambda c: versions(c, WEB) == {"v2"} and API in c.services, "changes after")
    assert source.health().details["session_losses"] >= 1


def test_a_silent_publisher_makes_the_catalog_suspect(stack: Stack) -> None:
    publisher = stack.publisher(heartbeat_interval=0.2)
    publish(publisher, {"shop.web": spec("/shop/web", 10080, 1)})
    source, seen = stack.source(heartbeat_stale=1.5)
    seen.wait_for(lambda c: WEB in c.services, "web")
    wait_until(lambda: source.health().details["heartbeat_age_seconds"] is not None, 10, "a beat")
    assert source.health().details["publisher"] == "test-publisher"

    publisher.stop()
    seen.wait_problem("the publisher's heartbeat is")
    assert "catalog may be stale" in str(seen.problem)
    assert source.health().details["heartbeat_stale"] is True


def test_nerve_services_are_served_from_the_services_map(stack: Stack) -> None:
    nerve = stack.connect()
    base = layout.service_path(ZK, "legacy")
    register_nerve(nerve, base, "hostA", "10.1.0.1", 8080)
    nerve.create(
        f"{ZK}/unmapped/hostB_0000000001",
        b'{"host":"10.1.0.2","port":8080,"name":"hostB"}',
        makepath=True,
    )
    legacy = ServiceOptions(10100, 10100, mode="http")
    _, seen = stack.source(local_services=[LocalService("legacy", legacy)])
    catalog = seen.wait_for(lambda c: "legacy:0" in c.services, "the nerve service")
    assert catalog.services["legacy:0"].options == legacy
    assert instance_ids(catalog, "legacy:0") == {"hostA_10.1.0.1:8080"}
    assert [s.app_id for s in catalog.skipped] == ["unmapped"]


def test_once_reads_everything_and_fails_clearly_without_zookeeper(stack: Stack) -> None:
    publisher = stack.publisher()
    publish(
        publisher,
        {"shop.web": spec("/shop/web", 10080, 2), "shop.api": spec("/shop/api", 10081, 1)},
    )
    catalog = ZooKeeperSource(stack.hosts, ZK).snapshot_once()
    assert set(catalog.services) == {WEB, API} and len(catalog.services[WEB].instances) == 2

    unreachable = ZooKeeperSource(["127.0.0.1:1"], ZK, connect_timeout=0.5)
    with pytest.raises(ZooKeeperUnavailable, match=r"127\.0\.0\.1:1: no connection within"):
        unreachable.snapshot_once()


def test_the_source_writes_nothing(stack: Stack) -> None:
    admin = stack.connect()
    _, seen = stack.source()
    seen.wait_for(lambda c: not c.services, "the (absent) catalog read")
    assert admin.get_children("/") == []  # not even the catalog path or the bridge root
    task_node = f"{ZK}/late/{layout.child_name(task('/late', 0))}"
    admin.create(task_node, layout.instance_json(task("/late", 0)), makepath=True)
    admin.create(
        layout.options_path(ZK, "late"),
        layout.options_json(options_doc("/late", 10090)),
        makepath=True,
    )
    seen.wait_for(lambda c: "/late:0" in c.services, "a catalog created after the start")


def test_the_sidecar_writes_a_config_once_from_zookeeper(
    zk_server: ZooKeeperServer,
    kazoo_client_factory: Callable[..., KazooClient],
    zk_chroot: str,
    haproxy_bin: str,
    tmp_path: Path,
) -> None:
    zk_path = f"{zk_chroot}/services"  # no chroot: the sidecar takes a plain path
    writer = Publisher(kazoo_client_factory(zk_server.address), zk_path, "once-publisher")
    writer.start()
    try:
        publish(writer, {"shop.web": spec("/shop/web", 10080, 2)})
    finally:
        writer.stop()
    argv = [
        "--source", "zookeeper",
        "--zookeeper", zk_server.address,
        "--zk-path", zk_path,
        "--once",
        "--output", str(tmp_path / "haproxy.cfg"),
        "--state-dir", str(tmp_path),
        "--haproxy-bin", haproxy_bin,
    ]  # fmt: skip
    assert main(argv, {}) == 0
    config = (tmp_path / "haproxy.cfg").read_text()
    assert "be_shop_web_10080" in config and "10.0.0.2:31001" in config
