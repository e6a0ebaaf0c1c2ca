"""The publisher's pure parts with plain data: the health rule, catalog -> specs (reusing unchanged
services), and the seed read back from what ZooKeeper holds."""

from __future__ import annotations

from typing import Any

import pytest

from publisher.feed import CatalogSpecs
from publisher.plan import ServiceState
from publisher.seed import published_catalog
from publisher.status import HealthFacts, evaluate_health
from sidecar.catalog import (
    OUT,
    READY,
    Catalog,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
    service_key,
)
from sidecar.sources.zookeeper import layout, mapping

ZK = "/smartstack/services"


def facts(**changes: Any) -> HealthFacts:
    values: dict[str, Any] = {
        "now": 1000.0,
        "role": "standby",
        "zk_state": "CONNECTED",
        "zk_state_since": 0.0,
        "max_sync_age": 60.0,
    }
    values.update(changes)
    return HealthFacts(**values)


# --- the health rule ----------------------------------------------------------------------------


def test_a_connected_standby_is_healthy() -> None:
    report = evaluate_health(facts())
    assert (report.status, report.reasons, report.http_status) == ("ok", (), 200)


@pytest.mark.parametrize(
    ("since", "status", "http"), [(990.0, "degraded", 200), (900.0, "failing", 503)]
)
def test_zookeeper_away_degrades_then_fails(since: float, status: str, http: int) -> None:
    report = evaluate_health(facts(zk_state="SUSPENDED", zk_state_since=since))
    assert (report.status, report.http_status) == (status, http)
    assert report.reasons[0].startswith("ZooKeeper suspended for")


def test_a_new_leader_waits_for_its_first_snapshot_then_fails() -> None:
    young = evaluate_health(facts(role="leader", term_started_at=990.0))
    assert young.status == "degraded" and "first Marathon snapshot" in young.reasons[0]
    old = evaluate_health(facts(role="leader", term_started_at=900.0))
    assert old.status == "failing" and "without a Marathon snapshot" in old.reasons[0]


def test_a_leader_is_judged_by_its_marathon_sync_age() -> None:
    fresh = evaluate_health(facts(role="leader", term_started_at=0.0, last_sync=990.0))
    assert (fresh.status, fresh.sync_age) == ("ok", 10.0)
    stale = evaluate_health(facts(role="leader", term_started_at=0.0, last_sync=900.0))
    assert stale.status == "failing" and "last Marathon sync 100 s ago" in stale.reasons[0]


def test_errors_being_retried_degrade() -> None:
    report = evaluate_health(
        facts(role="leader", term_started_at=0.0, last_sync=999.0, problems=("Marathon: 503",))
    )
    assert (report.status, report.reasons) == ("degraded", ("Marathon: 503",))


# --- catalog -> specs ---------------------------------------------------------------------------


def service(app_id: str, *ready: int, out: tuple[int, ...] = ()) -> Service:
    def instance(n: int, state: str) -> Instance:
        return Instance(f"{app_id[1:]}.{n}", f"10.0.0.{n}", 31000 + n, state, "running")

    instances = tuple(instance(n, READY) for n in ready) + tuple(instance(n, OUT) for n in out)
    options = ServiceOptions(service_port=10000, bind_port=10000)
    return Service(service_key(app_id, 0), app_id, 0, options, instances)


def test_specs_hold_ready_instances_and_the_options_document() -> None:
    web = service("/web", 1, 2, out=(3,))
    published = CatalogSpecs().publish(Catalog({web.key: web}))
    spec = published.specs["web:0"]
    assert {i.name for i in spec.instances} == {"web.1", "web.2"}
    assert spec.options == mapping.options_document(web)
    assert (published.instances, published.refused) == (2, ())


def test_an_unchanged_service_keeps_its_very_spec() -> None:
    web, api = service("/web", 1), service("/api", 1)
    specs = CatalogSpecs()
    first = specs.publish(Catalog({web.key: web, api.key: api}))
    changed_api = service("/api", 1, 2)
    second = specs.publish(Catalog({web.key: web, api.key: changed_api}))
    assert second.specs["web:0"] is first.specs["web:0"]
    assert second.specs["api:0"] is not first.specs["api:0"]


def test_what_was_left_out_travels_with_the_specs() -> None:
    web = service("/web", 1)
    long_name = service("/" + "x" * 250, 1)
    problem = Problem("/web", "HAPROXY_0_BALANCE", "unsupported balance algorithm")
    skipped = Skipped("/udp", "only tcp ports are proxied", 0)
    catalog = Catalog({web.key: web, long_name.key: long_name}, (problem,), (skipped,))
    published = CatalogSpecs().publish(catalog)
    assert list(published.specs) == ["web:0"]
    assert [p.app_id for p in published.refused] == [long_name.app_id]
    report = published.report()
    assert report["problems"] == [vars(problem)] and report["skipped"] == [vars(skipped)]


# --- the seed -------------------------------------------------------------------------------------


def state_of(svc: Service, *foreign: str) -> ServiceState:
    document = mapping.options_document(svc)
    names = {layout.child_name(i) for i in mapping.published_instances(svc)} | set(foreign)
    return ServiceState(True, frozenset(names), layout.options_json(document))


def test_the_seed_is_the_catalog_the_publishers_wrote() -> None:
    web, api = service("/web", 1, 2, out=(3,)), service("/api", 4)
    nerve = "myhost_0000000001"  # a nerve child: not ours, not in the seed
    seed = published_catalog(ZK, {"web:0": state_of(web, nerve), "api:0": state_of(api)})
    assert sorted(seed.services) == ["/api:0", "/web:0"]
    assert [i.id for i in seed.services["/web:0"].instances] == ["web.1", "web.2"]
    assert seed.in_rotation() == frozenset({"web.1", "web.2", "api.4"})


def test_services_that_do_not_read_back_are_left_out_of_the_seed() -> None:
    web = service("/web", 1)
    broken = ServiceState(True, frozenset(), b'{"app_id": "/x", "options": {}}')
    no_options = ServiceState(True, frozenset(), None)
    seed = published_catalog(ZK, {"web:0": state_of(web), "x:0": broken, "y:0": no_options})
    assert list(seed.services) == ["/web:0"]
