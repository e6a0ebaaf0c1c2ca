"""The publisher against a real ZooKeeper: what it writes, what it never touches, who may write."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import orjson
import pytest
from kazoo.client import KazooClient

from publisher.plan import ServiceSpec
from publisher.publisher import Publisher
from sidecar.sources.zookeeper import layout
from sidecar.sources.zookeeper.layout import Instance
from testkit import wait_until
from testkit.synapse_reader import discover
from testkit.zookeeper import ZooKeeperServer, expire_session

ZK = layout.DEFAULT_ZK_PATH
OPTIONS = {"port": 10080, "mode": "http"}


def task(app: str, n: int, version: str = "v1") -> Instance:
    return Instance.make(
        f"10.0.{n // 250}.{n % 250 + 1}",
        31000 + n,
        f"{app}.{n}",
        weight=1,
        labels={
            "source": "marathon-bridge",
            "app_id": f"/{app}",
            "task_id": f"{app}.{n}",
            "version": version,
        },
    )


def spec(app: str, count: int, version: str = "v1") -> ServiceSpec:
    return ServiceSpec.of([task(app, n, version) for n in range(count)], OPTIONS)


ClientFactory = Callable[..., KazooClient]


@pytest.fixture
def connect(
    zk_server: ZooKeeperServer, kazoo_client_factory: ClientFactory, zk_chroot: str
) -> Callable[..., KazooClient]:
    """Clients of this test's chroot on the shared server."""
    return lambda **options: kazoo_client_factory(zk_server.address, chroot=zk_chroot, **options)


@pytest.fixture
def publishers(connect: Callable[..., KazooClient]) -> Iterator[Callable[..., Publisher]]:
    made: list[Publisher] = []

    def start(name: str, **options: object) -> Publisher:
        publisher = Publisher(connect(), ZK, identifier=name, **options)  # type: ignore[arg-type]
        made.append(publisher)
        publisher.start()
        return publisher

    yield start
    for publisher in made:
        publisher.stop()


def children_stats(client: KazooClient, service: str) -> dict[str, int]:
    """child name -> czxid (a recreated node gets a new one)."""
    base = layout.service_path(ZK, service)
    return {name: client.exists(f"{base}/{name}").czxid for name in client.get_children(base)}


def test_every_instance_is_written_as_synapse_reads_it(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a")
    leader.publish({"web": spec("web", 3), "api": spec("api", 2)})
    wait_until(leader.written, 30, "the catalog to be written")
    reader = connect()
    for app, count in (("web", 3), ("api", 2)):
        view = discover(reader, layout.service_path(ZK, app))
        assert view.skipped == []
        assert view.generator_config == {}
        assert sorted((b["host"], b["port"], b["name"]) for b in view.backends) == sorted(
            (t.host, t.port, t.name) for t in spec(app, count).instances
        )
        assert all(b["labels"]["source"] == "marathon-bridge" for b in view.backends)
        assert all(b["id"] is None and b["weight"] == 1 for b in view.backends)
        base = layout.service_path(ZK, app)
        for child in reader.get_children(base):
            data, stat = reader.get(f"{base}/{child}")
            assert stat.ephemeralOwner == 0
            assert layout.decode_child_name(base, child) == layout.instance_from_data(
                base, child, data
            )
        assert reader.get(base)[0] == b""
        options = reader.get(layout.options_path(ZK, app))[0]
        assert orjson.loads(options) == OPTIONS


def test_a_change_recreates_only_the_changed_instance(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a")
    leader.publish({"web": spec("web", 4)})
    wait_until(leader.written, 30, "the first catalog")
    reader = connect()
    before = children_stats(reader, "web")
    transactions = leader.writer.counters.transactions
    changed = spec("web", 4).instances - {task("web", 2)} | {task("web", 2, "v2")}
    leader.publish({"web": ServiceSpec.of(changed, OPTIONS)})
    wait_until(leader.written, 30, "the change")
    after = children_stats(reader, "web")
    assert leader.writer.counters.transactions == transactions + 1
    kept = set(before) & set(after)
    assert len(kept) == 3 and all(before[n] == after[n] for n in kept)
    assert set(after) - set(before) == {layout.child_name(task("web", 2, "v2"))}
    assert set(before) - set(after) == {layout.child_name(task("web", 2))}


def test_nerve_children_are_never_touched(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    nerve = connect()
    base = layout.service_path(ZK, "web")
    nerve.ensure_path(base)
    registered = nerve.create(
        f"{base}/myhost_", b'{"host":"10.9.0.1","port":8080,"name":"myhost"}', sequence=True
    )
    leader = publishers("a")
    leader.publish({"web": spec("web", 2)})
    wait_until(leader.written, 30, "the catalog")
    view = discover(nerve, base)  # synapse serves both writers' instances side by side
    assert sorted(b["name"] for b in view.backends) == ["myhost", "web.0", "web.1"]
    assert [b["id"] for b in view.backends if b["name"] == "myhost"] == [0]
    leader.publish({})
    wait_until(leader.written, 30, "the service's removal")
    assert nerve.get_children(base) == [registered.rsplit("/", 1)[1]]
    assert nerve.exists(layout.options_path(ZK, "web")) is None


def test_a_removed_service_goes_away_entirely(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a")
    leader.publish({"web": spec("web", 2), "api": spec("api", 1)})
    wait_until(leader.written, 30, "the catalog")
    leader.publish({"api": spec("api", 1)})
    wait_until(leader.written, 30, "web's removal")
    reader = connect()
    assert reader.exists(layout.service_path(ZK, "web")) is None
    assert reader.get_children(layout.options_root(ZK)) == ["api"]


def test_a_large_change_is_split_into_transactions_under_the_limit(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a", max_transaction_bytes=20_000)
    leader.publish({"web": spec("web", 300)})
    wait_until(leader.written, 60, "300 instances")
    assert leader.writer.counters.transactions >= 5
    assert len(connect().get_children(layout.service_path(ZK, "web"))) == 300


def test_one_leader_the_standby_writes_nothing_and_takes_over_without_rewrites(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    first = publishers("a")
    wait_until(lambda: first.role == "leader", 30, "a to lead")
    second = publishers("b")
    catalog = {"web": spec("web", 5), "api": spec("api", 3)}
    first.publish(catalog)
    second.publish(catalog)
    wait_until(first.written, 30, "the leader's write")
    assert second.role == "standby"
    assert second.writer.counters.transactions == 0
    reader = connect()
    before = {s: children_stats(reader, s) for s in catalog}

    first.stop()  # releases the lock: the standby leads and reconciles

    wait_until(lambda: second.role == "leader", 30, "b to lead")
    wait_until(second.written, 30, "b's reconcile")
    assert second.writer.counters.created == 0
    assert second.writer.counters.deleted == 0
    assert {s: children_stats(reader, s) for s in catalog} == before
    heartbeat = orjson.loads(reader.get(layout.heartbeat_path(ZK))[0])
    assert heartbeat["leader"] in ("a", "b")


def test_the_fence_stops_a_leader_whose_lock_node_is_gone(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a")
    leader.publish({"web": spec("web", 1)})
    wait_until(leader.written, 30, "the catalog")
    admin = connect()
    changes = leader.leadership.changes
    lock_root = layout.leader_path(ZK)
    for node in admin.get_children(lock_root):
        admin.delete(f"{lock_root}/{node}")  # an operator forcing a failover

    leader.publish({"web": spec("web", 2)})

    wait_until(lambda: leader.leadership.changes >= changes + 2, 30, "the fence to end the term")
    assert leader.writer.counters.problems == {}
    wait_until(leader.written, 30, "the write in the next term")  # it leads again (alone)
    assert len(admin.get_children(layout.service_path(ZK, "web"))) == 2


def test_a_bad_service_name_or_instance_skips_that_service_only(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a")
    bad_host = Instance.make(
        "10.0.0.1\nserver evil", 80, "api.1", labels={"source": "marathon-bridge"}
    )
    leader.publish(
        {
            "bad name": spec("x", 1),
            "web": spec("web", 1),
            "api": ServiceSpec.of([bad_host], OPTIONS),
        }
    )
    wait_until(leader.written, 30, "the catalog")
    assert "service name" in leader.writer.counters.problems["bad name"]
    assert "'host' has characters" in leader.writer.counters.problems["api"]
    assert connect().get_children(ZK) == ["web"]


def test_a_leader_whose_session_expires_leads_again_after_a_full_reconcile(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a")
    leader.publish({"web": spec("web", 3)})
    wait_until(leader.written, 30, "the catalog")
    reader = connect()
    base = layout.service_path(ZK, "web")
    lost = layout.child_name(task("web", 1))
    reader.delete(f"{base}/{lost}")  # behind the writer's back: only a full read finds it
    before = children_stats(reader, "web")
    created, deleted = leader.writer.counters.created, leader.writer.counters.deleted
    changes = leader.leadership.changes

    expire_session(leader.client)

    wait_until(lambda: leader.leadership.changes >= changes + 2, 30, "a lost term and a new one")
    wait_until(lambda: lost in reader.get_children(base), 30, "the reconcile to restore the child")
    assert leader.role == "leader"
    assert (leader.writer.counters.created, leader.writer.counters.deleted) == (
        created + 1,
        deleted,
    )
    after = children_stats(reader, "web")
    assert {n: after[n] for n in before} == before  # the others were not rewritten


def test_transactions_near_the_default_limit_are_accepted_by_the_server(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    leader = publishers("a")
    leader.publish({"big": spec("big", 2500)})
    wait_until(leader.written, 120, "2,500 instances")
    assert leader.writer.counters.transactions >= 2  # ~1.4 MB of creates: more than one multi
    assert leader.writer.counters.problems == {}
    assert len(connect().get_children(layout.service_path(ZK, "big"))) == 2500


def test_many_services_read_at_once_read_as_one_at_a_time(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    """The pipelined read of a full sync and a new leader's seed: ours, a nerve service without
    options, and one that does not exist."""
    leader = publishers("a")
    leader.publish({f"s{n}": spec(f"s{n}", n % 3) for n in range(450)})
    wait_until(leader.written, 60, "the catalog to be written")
    connect().create(layout.service_path(ZK, "nerve") + "/hostA", b"{}", makepath=True)
    names = [f"s{n}" for n in range(450)] + ["nerve", "missing"]
    many = leader.writer.read_services(names)
    assert many == {name: leader.writer.read_service(name) for name in names}
    assert many["missing"].exists is False and many["nerve"].options is None
    assert len(many["s2"].children) == 2 and many["s2"].options is not None


def test_a_service_changed_behind_the_publishers_back_is_read_again_and_written(
    publishers: Callable[..., Publisher], connect: Callable[..., KazooClient]
) -> None:
    """Its cached state is stale: the transaction sent for it fails (a conflict), the service is
    read again and written; the other service of the same sync is written at once."""
    leader = publishers("a")
    assert leader.wait_written(leader.publish({"web": spec("web", 2), "api": spec("api", 1)}), 30)
    admin = connect()
    base = layout.service_path(ZK, "web")
    admin.delete(f"{base}/{sorted(admin.get_children(base))[0]}")
    changed = {"web": spec("web", 2, "v2"), "api": spec("api", 2)}
    assert leader.wait_written(leader.publish(changed), 30)
    assert leader.writer.counters.conflicts == 1
    for service, wanted in changed.items():
        names = {layout.child_name(i) for i in wanted.instances}
        assert set(admin.get_children(layout.service_path(ZK, service))) == names
