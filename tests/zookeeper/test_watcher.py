"""The sidecar's ZooKeeper watcher on a real server: changes, nerve children, hostile data."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Callable

import orjson
import pytest
from kazoo.client import KazooClient

from publisher.plan import ServiceSpec
from publisher.publisher import Publisher
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import Instance
from sidecar.sources.zookeeper.update import ServiceUpdate
from sidecar.sources.zookeeper.watcher import CatalogWatcher
from testkit import wait_until
from testkit.zk_catalog import register_nerve
from testkit.zookeeper import UpdateRecorder, ZooKeeperServer

ZK = layout.DEFAULT_ZK_PATH
OPTIONS = {"port": 10080, "mode": "http"}


def task(app: str, n: int, version: str = "v1") -> Instance:
    labels = {
        "source": "marathon-bridge",
        "app_id": f"/{app}",
        "task_id": f"{app}.{n}",
        "version": version,
    }
    return Instance.make(f"10.0.0.{n + 1}", 31000 + n, f"{app}.{n}", weight=1, labels=labels)


def spec(app: str, count: int, version: str = "v1") -> ServiceSpec:
    return ServiceSpec.of([task(app, n, version) for n in range(count)], OPTIONS)


@pytest.fixture
def connect(
    zk_server: ZooKeeperServer, kazoo_client_factory: Callable[..., KazooClient], zk_chroot: str
) -> Callable[..., KazooClient]:
    return lambda **options: kazoo_client_factory(zk_server.address, chroot=zk_chroot, **options)


@pytest.fixture
def publisher(connect: Callable[..., KazooClient]) -> Iterator[Publisher]:
    leader = Publisher(connect(), ZK, identifier="test")
    leader.start()
    yield leader
    leader.stop()


@pytest.fixture
def watch(connect: Callable[..., KazooClient]) -> Iterator[Callable[..., UpdateRecorder]]:
    watchers: list[CatalogWatcher] = []

    def start(zk_path: str = ZK, **options: object) -> UpdateRecorder:
        recorder = UpdateRecorder()
        watcher = CatalogWatcher(connect(), zk_path, recorder, **options)  # type: ignore[arg-type]
        recorder.watcher = watcher
        watchers.append(watcher)
        watcher.start()
        return recorder

    yield start
    for watcher in watchers:
        watcher.stop()


def publish(publisher: Publisher, catalog: dict[str, ServiceSpec]) -> None:
    publisher.publish(catalog)
    wait_until(publisher.written, 30, "the publisher's write")


def has(*instances: Instance) -> Callable[[object], bool]:
    return lambda update: set(update.instances) == set(instances)  # type: ignore[attr-defined]


def test_creates_changes_and_removals_reach_the_callback_on_the_worker_thread(
    publisher: Publisher, watch: Callable[..., UpdateRecorder]
) -> None:
    seen = watch()
    publish(publisher, {"web": spec("web", 2), "api": spec("api", 1)})
    web = seen.wait_for("web", has(*spec("web", 2).instances), "two instances")
    assert web.exists and web.options == OPTIONS and web.problems == ()
    seen.wait_for("api", has(task("api", 0)), "one instance")

    publish(publisher, {"web": spec("web", 3), "api": spec("api", 1, "v2")})
    seen.wait_for("web", has(*spec("web", 3).instances), "a third instance")
    seen.wait_for("api", has(task("api", 0, "v2")), "the new version")

    publish(publisher, {"web": ServiceSpec.of(spec("web", 1).instances, {"port": 10081})})
    seen.wait_for(
        "web", lambda u: u.options == {"port": 10081} and len(u.instances) == 1, "options"
    )
    seen.wait_for("api", lambda u: not u.exists and u.instances == (), "api gone")
    assert seen.threads == {"zookeeper-watcher"}
    assert all(u.options is not None for u in seen.updates if u.exists)  # never half a service


def test_an_empty_list_keeps_the_previous_instances_unless_told_otherwise(
    publisher: Publisher, watch: Callable[..., UpdateRecorder]
) -> None:
    keeping = watch()
    believing = watch(keep_on_empty=False)
    publish(publisher, {"web": spec("web", 2)})
    for seen in (keeping, believing):
        seen.wait_for("web", has(*spec("web", 2).instances), "two instances")

    publish(publisher, {"web": spec("web", 0)})

    believing.wait_for("web", lambda u: u.exists and u.instances == () and u.children == 0, "empty")
    kept = keeping.wait_for("web", lambda u: u.kept_previous, "the empty list not believed")
    assert set(kept.instances) == set(spec("web", 2).instances) and kept.children == 0

    publish(publisher, {})  # the service's path is deleted: believed by both
    for seen in (keeping, believing):
        seen.wait_for("web", lambda u: not u.exists and u.instances == (), "web deleted")


def test_nerve_registered_children_are_read_from_their_data(
    connect: Callable[..., KazooClient], watch: Callable[..., UpdateRecorder]
) -> None:
    nerve = connect()
    base = layout.service_path(ZK, "legacy")
    nerve.ensure_path(base)
    seen = watch()
    register_nerve(nerve, base, "hostA", "10.1.0.1", 8080)
    nerve.create(
        f"{base}/hostB_",
        b'{"host":"10.1.0.2","port":8080,"name":"hostB","weight":"10","labels":{"region:a":""}}',
        ephemeral=True,
        sequence=True,
    )
    update = seen.wait_for("legacy", lambda u: len(u.instances) == 2, "both nerve instances")
    assert update.options is None  # no options node: the sidecar's own config gives the port
    assert {i.host for i in update.instances} == {"10.1.0.1", "10.1.0.2"}
    assert Instance.make("10.1.0.2", 8080, "hostB", 10, {"region:a": ""}) in update.instances


def test_a_child_claiming_to_be_ours_does_not_freeze_a_nerve_service(
    connect: Callable[..., KazooClient], watch: Callable[..., UpdateRecorder]
) -> None:
    admin = connect()
    base = layout.service_path(ZK, "legacy")
    register_nerve(admin, base, "hostA", "10.1.0.1", 8080)
    seen = watch()
    seen.wait_for("legacy", lambda u: len(u.instances) == 1, "hostA")
    claimed = task("web", 7)  # labelled source: marathon-bridge, but no options node anywhere
    admin.create(f"{base}/{layout.child_name(claimed)}", layout.instance_json(claimed))
    seen.wait_for("legacy", lambda u: claimed in u.instances, "the claimed child delivered")
    register_nerve(admin, base, "hostB", "10.1.0.2", 8080)
    seen.wait_for("legacy", lambda u: len(u.instances) == 3, "hostB: the service still follows")


def test_hostile_data_is_skipped_and_reported_and_the_rest_still_served(
    publisher: Publisher, connect: Callable[..., KazooClient], watch: Callable[..., UpdateRecorder]
) -> None:
    seen = watch()
    publish(publisher, {"web": spec("web", 1), "api": spec("api", 1)})
    seen.wait_for("web", has(task("web", 0)), "web")
    hostile = connect()
    base = layout.service_path(ZK, "web")
    text = base64.urlsafe_b64encode(b'{"host":"h","port":1,"name":"n","labels":{"a":1}}').decode()
    children = {
        "bad-json_0000000001": b"{not json",
        "huge_0000000002": b'{"host":"' + b"a" * 20000 + b'","port":1,"name":"n"}',
        "unknown_0000000003": b'{"host":"h","port":1,"name":"n","evil":"x"}',
        "noport_0000000004": b'{"host":"h","name":"n"}',
        "base64_12_not!base64!!_": b"",
        f"base64_{len(text)}_{text}_": b"",
    }
    for name, data in children.items():
        hostile.create(f"{base}/{name}", data)
    hostile.create(f"{ZK}/bad service name")
    hostile.set(layout.options_path(ZK, "api"), b"[1,2]")

    web = seen.wait_for("web", lambda u: len(u.problems) == len(children), "six problems")
    assert web.instances == (task("web", 0),)
    reasons = " | ".join(p.reason for p in web.problems)
    for expected in (
        "not JSON",
        "more than 8192",
        "unknown field 'evil'",
        "no 'port'",
        "not urlsafe base64",
        "must be a string",
    ):
        assert expected in reasons
    api = seen.wait_for("api", lambda u: len(u.problems) == 1, "the bad options reported")
    assert api.options == OPTIONS and api.instances == (task("api", 0),)  # last good options kept
    assert "not an object" in api.problems[0].reason
    assert "service name" in seen.watcher.problems["bad service name"]


def test_a_service_deleted_and_recreated_is_followed(
    publisher: Publisher, connect: Callable[..., KazooClient], watch: Callable[..., UpdateRecorder]
) -> None:
    seen = watch()
    publish(publisher, {"web": spec("web", 2)})
    seen.wait_for("web", has(*spec("web", 2).instances), "web")
    publish(publisher, {})
    seen.wait_for("web", lambda u: not u.exists, "web deleted")
    publish(publisher, {"web": spec("web", 1, "v9")})
    seen.wait_for("web", has(task("web", 0, "v9")), "web recreated")


def test_a_service_recreated_while_the_worker_is_busy_is_followed(
    connect: Callable[..., KazooClient],
) -> None:
    """The service is deleted and created again while the worker is held: it then takes the
    node's end and a root listing that still has the name (the listing between, without it,
    is replaced by the later one), and must still watch the new node."""
    held, release = threading.Event(), threading.Event()
    seen = UpdateRecorder()

    def on_update(update: ServiceUpdate) -> None:
        seen(update)
        if update.service == "other":
            held.set()
            release.wait(30)

    nerve = connect()
    base = layout.service_path(ZK, "legacy")
    nerve.create(f"{base}/hostA", b'{"host":"10.1.0.1","port":8080,"name":"hostA"}', makepath=True)
    watcher = CatalogWatcher(connect(), ZK, on_update)
    watcher.start()
    try:
        seen.wait_for("legacy", lambda u: {i.host for i in u.instances} == {"10.1.0.1"}, "hostA")
        nerve.create(f"{ZK}/other/hostC", b'{"host":"10.1.0.3","port":8080,"name":"hostC"}',
                     makepath=True)  # fmt: skip
        wait_until(held.is_set, 30, "the worker holding in the callback")
        nerve.delete(base, recursive=True)
        wait_until(lambda: watcher._queue.qsize() >= 2, 30, "the node's end and a listing queued")
        nerve.create(f"{base}/hostB", b'{"host":"10.1.0.2","port":8080,"name":"hostB"}',
                     makepath=True)  # fmt: skip
        wait_until(lambda: watcher._queue.qsize() >= 3, 30, "the listing with it again queued")
        release.set()
        seen.wait_for("legacy", lambda u: {i.host for i in u.instances} == {"10.1.0.2"}, "hostB")
    finally:
        release.set()
        watcher.stop()


def test_the_watcher_never_creates_paths_and_waits_for_the_catalog(
    connect: Callable[..., KazooClient], watch: Callable[..., UpdateRecorder]
) -> None:
    admin = connect()
    seen = watch("/not/yet")
    assert admin.exists("/not") is None
    assert admin.exists(layout.bridge_root("/not/yet")) is None
    instance = Instance.make("10.2.0.1", 9000, "x")
    admin.create(
        f"/not/yet/svc/{layout.child_name(instance)}", layout.instance_json(instance), makepath=True
    )
    seen.wait_for("svc", has(instance), "the service created after the watcher started")


def test_plain_children_are_read_once_and_cached_by_name(
    connect: Callable[..., KazooClient], watch: Callable[..., UpdateRecorder]
) -> None:
    admin = connect()
    base = layout.service_path(ZK, "legacy")
    first = register_nerve(admin, base, "a", "10.3.0.1", 1)
    seen = watch()
    seen.wait_for("legacy", lambda u: len(u.instances) == 1, "a")
    admin.set(
        first, b'{"host":"10.3.0.99","port":1,"name":"a"}'
    )  # synapse ignores data changes too
    admin.create(f"{base}/b_", b'{"host":"10.3.0.2","port":1,"name":"b"}', sequence=True)
    update = seen.wait_for("legacy", lambda u: len(u.instances) == 2, "b")
    assert {i.host for i in update.instances} == {"10.3.0.1", "10.3.0.2"}
    assert orjson.loads(admin.get(first)[0])["host"] == "10.3.0.99"


def test_wait_synced_returns_once_every_existing_service_was_delivered(
    publisher: Publisher, watch: Callable[..., UpdateRecorder]
) -> None:
    catalog = {f"svc{n}": spec(f"svc{n}", n + 1) for n in range(5)}
    publish(publisher, catalog)
    seen = watch()
    assert seen.watcher.wait_synced(30)
    snapshot = seen.watcher.snapshot()
    assert {name: set(u.instances) for name, u in snapshot.items()} == {
        name: set(s.instances) for name, s in catalog.items()
    }
    assert all(u.options == OPTIONS for u in snapshot.values())


def test_an_absent_catalog_is_synced_and_empty(watch: Callable[..., UpdateRecorder]) -> None:
    seen = watch("/nothing/here")
    assert seen.watcher.wait_synced(30)
    assert seen.watcher.snapshot() == {}
