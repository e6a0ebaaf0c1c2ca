"""The contract between the publisher and the ZooKeeper source (plain data): service names, the
options node's JSON, the instance JSON, and reading them back into the catalog."""

from __future__ import annotations

import orjson
import pytest

from sidecar.catalog import (
    DRAIN,
    OUT,
    READY,
    Catalog,
    DeploymentGroup,
    HealthCheck,
    Instance,
    Service,
    ServiceOptions,
    service_key,
)
from sidecar.sources.zookeeper import layout, mapping
from sidecar.sources.zookeeper.layout import LayoutError


def instance(n: int, state: str = READY, **fields: object) -> Instance:
    values: dict[str, object] = {
        "id": f"shop_web.{n}",
        "host": f"agent-{n}.example.com",
        "port": 31000 + n,
        "state": state,
        "reason": "running",
        "weight": 1,
        "app_id": "/shop/web",
        "version": "2024-05-01T10:00:00.000Z",
        "status": "TASK_RUNNING",
    }
    values.update(fields)
    return Instance(**values)  # type: ignore[arg-type]


def service(app_id: str = "/shop/web", index: int = 0, *instances: Instance) -> Service:
    options = ServiceOptions(
        service_port=10000 + index,
        bind_port=10000 + index,
        mode="http",
        balance="leastconn",
        vhosts=("web.example.com",),
        path="/shop",
        groups=("internal",),
        deployment=DeploymentGroup("web", "2024-05-01T10:00:00.000Z", 20),
        health_check=HealthCheck("http", "/ping", 5000, 2000, 3),
    )
    return Service(service_key(app_id, index), app_id, index, options, tuple(instances))


@pytest.mark.parametrize(
    ("app_id", "index", "name"),
    [("/shop/web", 0, "shop_web:0"), ("/api", 1, "api:1"), ("/a.b/c-d/e", 12, "a.b_c-d_e:12")],
)
def test_a_service_is_named_after_its_app_id_and_port_index(
    app_id: str, index: int, name: str
) -> None:
    assert mapping.service_name(app_id, index) == name
    assert layout.check_service_name(name) == name


def test_names_of_marathon_app_ids_never_collide() -> None:
    ids = ["/a/b", "/a.b", "/a-b", "/ab", "/a/b/c", "/a/b.c", "/a.b/c"]
    names = {mapping.service_name(app_id, index) for app_id in ids for index in (0, 1, 10)}
    assert len(names) == len(ids) * 3


def test_a_name_that_does_not_fit_a_znode_is_refused() -> None:
    with pytest.raises(LayoutError, match="service name"):
        mapping.service_name("/" + "x" * 250, 0)


def test_only_instances_in_rotation_with_an_address_are_published() -> None:
    published = mapping.published_instances(
        service(
            "/shop/web",
            0,
            instance(1),
            instance(2, DRAIN, reason="killing"),
            instance(3, OUT, reason="health check failing"),
            instance(4, host="", port=None),
        )
    )
    assert {i.name for i in published} == {"shop_web.1"}


def test_an_instance_carries_nerves_fields_and_our_labels() -> None:
    (published,) = mapping.published_instances(service("/shop/web", 0, instance(1, weight=5)))
    assert orjson.loads(layout.instance_json(published)) == {
        "host": "agent-1.example.com",
        "port": 31001,
        "name": "shop_web.1",
        "weight": 5,
        "labels": {
            "source": "marathon-bridge",
            "app_id": "/shop/web",
            "task_id": "shop_web.1",
            "version": "2024-05-01T10:00:00.000Z",
        },
    }
    assert published.owned
    assert layout.decode_child_name("", layout.child_name(published)) == published


def test_an_unknown_version_is_left_out_of_the_labels() -> None:
    (published,) = mapping.published_instances(service("/shop/web", 0, instance(1, version="")))
    assert published.label("version") is None


def test_the_options_node_is_the_catalogs_service_json_without_key_and_instances() -> None:
    document = mapping.options_document(service("/shop/web", 0, instance(1)))
    assert set(document) == {"app_id", "port_index", "options"}
    assert document["options"]["deployment"] == {
        "name": "web",
        "started_at": "2024-05-01T10:00:00.000Z",
        "weight": 20,
    }
    assert layout.parse_options(layout.options_json(document)) == document


def test_a_written_service_reads_back_as_the_same_catalog_service() -> None:
    original = service("/shop/web", 2, instance(1), instance(2, weight=3), instance(3, OUT))
    found, problems = mapping.zookeeper_services(Catalog({original.key: original}))
    (written,) = found.values()
    assert problems == [] and written.name == "shop_web:2"
    stored = layout.parse_options(layout.options_json(written.options))
    children = [layout.decode_child_name("", layout.child_name(i)) for i in written.instances]
    read = mapping.catalog_service(stored, [c for c in children if isinstance(c, layout.Instance)])

    assert read is not None
    assert (read.key, read.app_id, read.port_index) == ("/shop/web:2", "/shop/web", 2)
    assert read.options == original.options
    assert [(i.id, i.host, i.port, i.weight, i.version, i.state) for i in read.instances] == [
        (i.id, i.host, i.port, i.weight, i.version, READY)
        for i in original.instances
        if i.state == READY
    ]
    assert {i.reason for i in read.instances} == {mapping.IN_ZOOKEEPER}


def test_options_that_the_catalog_refuses_read_back_as_nothing() -> None:
    document = mapping.options_document(service())
    document["options"] = {**document["options"], "mode": "udp"}
    assert mapping.catalog_service(document, []) is None
    with pytest.raises(Exception, match=r"options\.options\.mode"):
        mapping.identity_from_options(document)


def test_an_instance_nerve_registered_gets_synapses_name() -> None:
    nerve = layout.Instance.make("10.0.0.9", 8080, "host-9")
    read = mapping.catalog_instance(nerve, "/legacy")
    assert (read.id, read.app_id, read.weight) == ("host-9_10.0.0.9:8080", "/legacy", 1)


def test_services_that_cannot_be_written_are_reported_and_the_others_kept() -> None:
    good = service("/shop/web", 0, instance(1))
    long_id = service("/" + "x" * 250, 0)
    twin = service("/shop_web", 0)  # not a Marathon id, but must not overwrite /shop/web:0
    catalog = Catalog({s.key: s for s in (good, long_id, twin)})
    found, problems = mapping.zookeeper_services(catalog)
    assert list(found) == ["shop_web:0"]
    assert found["shop_web:0"].options["app_id"] == "/shop/web"
    assert {(p.app_id, p.label) for p in problems} == {
        (long_id.app_id, mapping.NAME_LABEL),
        ("/shop_web", mapping.NAME_LABEL),
    }
    assert all(p.reason for p in problems)
