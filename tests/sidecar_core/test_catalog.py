"""The catalog: JSON round trips, and reading back refuses what must not reach the config."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sidecar.catalog import (
    DRAIN,
    OUT,
    READY,
    Catalog,
    CatalogError,
    DeploymentGroup,
    HealthCheck,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
    catalog_from_dict,
    service_from_dict,
)


def full_catalog() -> Catalog:
    options = ServiceOptions(
        service_port=10000,
        bind_port=80,
        mode="http",
        balance="leastconn",
        bind_addr="::1",
        vhosts=("a.example.com", "b.example.com"),
        path="/api",
        route_weight=5,
        sticky=True,
        groups=("external", "internal"),
        deployment=DeploymentGroup("web", "2026-01-01T00:00:00Z", 3),
        health_check=HealthCheck("http", "/health?x=1", 10000, 3000, 5),
    )
    instances = (
        Instance("web.a", "agent1", 31000, READY, "running", 1, "/web", "v1", "TASK_RUNNING", True),
        Instance("web.b", "10.0.0.2", 31001, DRAIN, "leaving", 2, "/web", "v1", "TASK_KILLING"),
        Instance("web.c", "", None, OUT, "not running", 1, "/web", "", "TASK_STAGING", False),
    )
    web = Service("/web:0", "/web", 0, options, instances)
    plain = Service("/db:1", "/db", 1, ServiceOptions(5432, 5432))
    return Catalog(
        {web.key: web, plain.key: plain},
        problems=(Problem("/web", "HAPROXY_0_BALANCE", "unsupported balance algorithm"),),
        skipped=(Skipped("/udp", "only tcp ports are proxied", 0), Skipped("/x", "why", None, "t")),
    )


def test_json_round_trip_gives_an_equal_catalog() -> None:
    catalog = full_catalog()
    data = json.loads(json.dumps(catalog.to_dict()))
    assert catalog_from_dict(data) == catalog
    assert catalog_from_dict(data).to_dict() == data


def test_the_json_shape_is_plain_and_named() -> None:
    data = full_catalog().to_dict()
    web = data["services"][1]
    assert web["key"] == "/web:0" and web["options"]["vhosts"] == ["a.example.com", "b.example.com"]
    assert web["options"]["deployment"] == {
        "name": "web",
        "started_at": "2026-01-01T00:00:00Z",
        "weight": 3,
    }
    assert web["instances"][2] == {
        "id": "web.c", "host": "", "port": None, "state": "out", "reason": "not running",
        "weight": 1, "app_id": "/web", "version": "", "status": "TASK_STAGING", "healthy": False,
    }  # fmt: skip


def test_an_empty_catalog_round_trips() -> None:
    assert catalog_from_dict(json.loads(json.dumps(Catalog().to_dict()))) == Catalog()


def mutated(path: list[Any], value: Any) -> dict[str, Any]:
    data = full_catalog().to_dict()
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["services", 1, "options", "mode"], "udp", "services[1].options.mode"),
        (["services", 1, "options", "balance"], "static-rr", "services[1].options.balance"),
        (["services", 1, "options", "vhosts"], ["*.example.com"], "services[1].options.vhosts"),
        (["services", 1, "options", "vhosts"], ["a.com\nbind *:80"], "services[1].options.vhosts"),
        (["services", 1, "options", "path"], "/a b", "services[1].options.path"),
        (["services", 1, "options", "bind_addr"], "0.0.0.0/0", "services[1].options.bind_addr"),
        (["services", 1, "options", "service_port"], 70000, "services[1].options.service_port"),
        (["services", 1, "options", "bind_port"], True, "services[1].options.bind_port"),
        (["services", 1, "options", "groups"], ["bad group"], "services[1].options.groups"),
        (["services", 1, "options", "sticky"], "yes", "services[1].options.sticky"),
        (["services", 1, "options", "deployment", "name"], "a b", "deployment.name"),
        (["services", 1, "options", "deployment", "weight"], 300, "deployment.weight"),
        (["services", 1, "options", "health_check", "kind"], "exec", "health_check.kind"),
        (["services", 1, "options", "health_check", "path"], "/#x", "health_check.path"),
        (["services", 1, "options", "health_check", "fall"], 0, "health_check.fall"),
        (["services", 1, "instances", 0, "state"], "up", "services[1].instances[0].state"),
        (["services", 1, "instances", 0, "port"], "31000", "services[1].instances[0].port"),
        (["services", 1, "instances", 0, "id"], "", "services[1].instances[0].id"),
        (["services", 1, "instances", 0, "weight"], -1, "services[1].instances[0].weight"),
        (["services", 1, "instances", 0, "healthy"], "yes", "services[1].instances[0].healthy"),
        (["services", 1, "port_index"], 1001, "services[1].port_index"),
        (["services", 1, "key"], None, "services[1].key"),
        (["services", 1], [], "services[1]"),
        (["format"], "something else", "format"),
    ],
)
def test_reading_back_names_the_bad_field(path: list[Any], value: Any, named: str) -> None:
    with pytest.raises(CatalogError) as caught:
        catalog_from_dict(mutated(path, value))
    assert named in caught.value.path
    if isinstance(value, str) and len(value) > 3:
        assert value not in str(caught.value)  # the message does not echo the data


def test_vhosts_and_sticky_need_http_mode() -> None:
    data = mutated(["services", 1, "options", "mode"], "tcp")
    with pytest.raises(CatalogError, match="need http mode"):
        catalog_from_dict(data)


def test_duplicate_keys_and_instance_ids_are_refused() -> None:
    data = full_catalog().to_dict()
    data["services"].append(copy.deepcopy(data["services"][0]))
    with pytest.raises(CatalogError, match="duplicate key"):
        catalog_from_dict(data)
    one = full_catalog().to_dict()["services"][1]
    one["instances"].append(copy.deepcopy(one["instances"][0]))
    with pytest.raises(CatalogError, match="duplicate instance ids"):
        service_from_dict(one)


def test_one_service_reads_alone_so_a_reader_can_skip_bad_ones() -> None:
    good = full_catalog().to_dict()["services"][1]
    assert service_from_dict(good) == full_catalog().services["/web:0"]
    with pytest.raises(CatalogError, match=r"^zk/web\.options"):
        service_from_dict({**good, "options": None}, "zk/web")


def test_instances_read_back_sorted_by_id() -> None:
    data = full_catalog().to_dict()
    data["services"][1]["instances"].reverse()
    assert catalog_from_dict(data) == full_catalog()


def test_catalog_helpers() -> None:
    catalog = full_catalog()
    assert len(catalog) == 2 and [s.key for s in catalog] == ["/web:0", "/db:1"]
    assert catalog.in_rotation() == frozenset({"web.a"})
    assert [i.id for _s, i in catalog.instances()] == ["web.a", "web.b", "web.c"]
