"""What the ZooKeeper watcher delivers, as the neutral catalog: plain data, no server."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.catalog import (
    READY,
    Catalog,
    Problem,
    Service,
    ServiceOptions,
    Skipped,
    changed_services,
)
from sidecar.catalog import Instance as CatalogInstance
from sidecar.sources.zookeeper.layout import Instance
from sidecar.sources.zookeeper.layout import Problem as ReadProblem
from sidecar.sources.zookeeper.translate import (
    NO_OPTIONS,
    Assembly,
    ServiceEntry,
    assemble,
    printable,
    service_entry,
)
from sidecar.sources.zookeeper.update import ServiceUpdate, gone

LEGACY = ServiceOptions(service_port=10100, bind_port=10100, mode="http")


def options_doc(app_id: str = "/shop/web", port_index: int = 0, **options: Any) -> dict[str, Any]:
    """A publisher's options node for one service."""
    body = {"service_port": 10080, "bind_port": 10080, "mode": "http", **options}
    return {"app_id": app_id, "port_index": port_index, "options": body}


def task(n: int, version: str = "v1", app: str = "/shop/web") -> Instance:
    labels = {"source": "marathon-bridge", "app_id": app, "task_id": f"web.{n}", "version": version}
    return Instance.make(f"10.0.0.{n}", 31000 + n, f"web.{n}", weight=1, labels=labels)


def nerve(
    host: str, port: int = 8080, name: str = "hostA", weight: Optional[int] = None
) -> Instance:
    return Instance.make(host, port, name, weight=weight, labels={"region:a": ""})


def update(
    service: str, *instances: Instance, options: Optional[dict[str, Any]] = None, **extra: Any
) -> ServiceUpdate:
    return ServiceUpdate(service, True, tuple(instances), options=options, **extra)


def test_a_publisher_service_takes_identity_and_options_from_its_options_node() -> None:
    entry = service_entry(update("shop.web", task(2), task(1), options=options_doc()), {})
    (service,) = entry.services
    assert (service.key, service.app_id, service.port_index) == ("/shop/web:0", "/shop/web", 0)
    assert service.options == ServiceOptions(10080, 10080, mode="http")
    assert [i.id for i in service.instances] == ["web.1", "web.2"]
    first = service.instances[0]
    assert (first.host, first.port, first.state, first.weight) == ("10.0.0.1", 31001, READY, 1)
    assert (first.app_id, first.version) == ("/shop/web", "v1")
    assert entry.problems == () and entry.skipped == ()


def test_a_nerve_service_is_served_with_the_port_of_the_services_map() -> None:
    entry = service_entry(
        update("legacy", nerve("10.1.0.2"), nerve("10.1.0.1", weight=10)), {"legacy": LEGACY}
    )
    (service,) = entry.services
    assert (service.key, service.app_id, service.options) == ("legacy:0", "legacy", LEGACY)
    # synapse's server naming: <name>_<host>:<port>, unique per (host, port, name)
    assert [i.id for i in service.instances] == ["hostA_10.1.0.1:8080", "hostA_10.1.0.2:8080"]
    assert [i.weight for i in service.instances] == [10, 1]


def test_a_nerve_service_without_an_entry_is_skipped_and_reported() -> None:
    entry = service_entry(update("unknown", nerve("10.1.0.1")), {"legacy": LEGACY})
    assert entry.services == () and entry.skipped == (Skipped("unknown", NO_OPTIONS),)


def test_skipped_children_are_reported_with_the_child_and_the_reason() -> None:
    bad = ReadProblem("/smartstack/services/shop.web/bad-json_0000000001", "instance is not JSON")
    entry = service_entry(update("shop.web", task(1), options=options_doc(), problems=(bad,)), {})
    assert len(entry.services[0].instances) == 1
    assert entry.skipped == (
        Skipped("/shop/web", "instance is not JSON", None, "bad-json_0000000001"),
    )


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (options_doc(mode="udp"), "options.options.mode"),
        (options_doc(port_index=-1), "options.port_index"),
        (options_doc(app_id=""), "options.app_id"),
        (options_doc(service_port=70000), "options.options.service_port"),
        (options_doc(vhosts=["bad host!"]), "options.options.vhosts"),
        (options_doc(mode="tcp", balance="uri"), "options.options.balance"),
        ({"unexpected": True}, "options.app_id"),
    ],
)
def test_bad_options_skip_a_new_service_and_name_the_field(
    options: dict[str, Any], field: str
) -> None:
    entry = service_entry(update("shop.web", task(1), options=options), {})
    assert entry.services == ()
    (skipped,) = entry.skipped
    assert skipped.app_id == "shop.web" and field in skipped.reason


def test_bad_options_keep_the_last_good_ones_with_a_problem() -> None:
    good = service_entry(update("shop.web", task(1), options=options_doc()), {})
    later = service_entry(
        update("shop.web", task(1), task(2), options=options_doc(mode="udp")), {}, good
    )
    (service,) = later.services
    assert service.options == good.services[0].options and len(service.instances) == 2
    (problem,) = later.problems
    assert problem.app_id == "/shop/web" and problem.label == "options"
    assert "mode" in problem.reason and "last good options stay" in problem.reason


def test_an_unreadable_options_node_is_a_problem_or_a_skip() -> None:
    read = ReadProblem("/marathon-bridge/x/options/shop.web", "options are not JSON")
    kept = service_entry(
        update("shop.web", task(1), options=options_doc(), options_problem=read, problems=(read,)),
        {},
    )
    assert kept.services and kept.problems[0].label == "options" and kept.skipped == ()
    never = service_entry(update("shop.web", task(1), options_problem=read, problems=(read,)), {})
    assert never.services == () and "not JSON" in never.skipped[0].reason


def test_duplicate_task_ids_keep_the_first_and_report_the_other() -> None:
    twin = Instance.make("10.0.0.9", 31009, "web.1", labels=dict(task(1).labels))
    entry = service_entry(update("shop.web", task(1), twin, options=options_doc()), {})
    assert [i.host for i in entry.services[0].instances] == ["10.0.0.1"]
    assert entry.skipped == (Skipped("/shop/web", "another instance has the same id", 0, "web.1"),)


def test_an_equal_result_keeps_the_very_service_object() -> None:
    first = service_entry(update("shop.web", task(1), options=options_doc()), {})
    again = service_entry(update("shop.web", task(1), options=options_doc(), children=3), {}, first)
    assert again.services[0] is first.services[0]
    changed = service_entry(update("shop.web", task(1, "v2"), options=options_doc()), {}, first)
    assert changed.services[0] is not first.services[0]


def test_a_deleted_service_contributes_nothing() -> None:
    assert service_entry(gone("shop.web"), {}) == ServiceEntry(gone("shop.web"))


def test_assemble_keeps_unchanged_services_and_collects_what_was_left_out() -> None:
    web = service_entry(update("shop.web", task(1), options=options_doc()), {})
    legacy = service_entry(update("legacy", nerve("10.1.0.1")), {"legacy": LEGACY})
    unknown = service_entry(update("unknown", nerve("10.1.0.2")), {})
    catalog = assemble([("shop.web", web), ("legacy", legacy), ("unknown", unknown)])
    assert set(catalog.services) == {"/shop/web:0", "legacy:0"}
    assert catalog.services["/shop/web:0"] is web.services[0]
    assert catalog.skipped == (Skipped("unknown", NO_OPTIONS),)
    assert assemble([]) == Catalog()


def test_two_services_claiming_one_key_the_lowest_name_wins_whatever_the_order() -> None:
    a = service_entry(update("a-web", task(1), options=options_doc()), {})
    b = service_entry(update("b-web", task(2), options=options_doc()), {})
    for order in ([("a-web", a), ("b-web", b)], [("b-web", b), ("a-web", a)]):
        catalog = assemble(order)
        assert catalog.services["/shop/web:0"] is a.services[0]
        (lost,) = catalog.skipped
        assert lost.app_id == "/shop/web" and "a-web" in lost.reason


def test_problems_of_entries_reach_the_catalog() -> None:
    good = service_entry(update("shop.web", task(1), options=options_doc()), {})
    bad = service_entry(update("shop.web", task(1), options=options_doc(mode="udp")), {}, good)
    catalog = assemble([("shop.web", bad)])
    assert catalog.problems == bad.problems and isinstance(catalog.problems[0], Problem)


def test_znodes_that_are_no_service_names_are_reported_readably() -> None:
    catalog = assemble([], {"bad name\nwith a newline": "service name ...: use 1-200 letters"})
    (skipped,) = catalog.skipped
    assert skipped.app_id == "bad name\\nwith a newline" and "1-200 letters" in skipped.reason


# --- one changed entry at a time ------------------------------------------------------------------

NAMES = ("a", "b", "c", "d")
KEYS = ("/x:0", "/y:0", "/z:0")  # fewer keys than names: names claim one key in turn


def plain_entry(
    name: str, key: Optional[str], problem: bool, skipped: bool, n: int
) -> ServiceEntry:
    """An entry made of plain data: maybe a service (instance ``n``), a problem, a skipped part."""
    app_id = key.rsplit(":", 1)[0] if key else name
    instance = CatalogInstance(f"{name}.{n}", "10.0.0.1", 31000 + n, READY, "in ZooKeeper")
    services = (Service(key, app_id, 0, LEGACY, (instance,)),) if key else ()
    return ServiceEntry(
        gone(name),
        services,
        (Problem(app_id, "options", f"bad {name}"),) if problem else (),
        (Skipped(app_id, f"child of {name}", None, f"c{n}"),) if skipped else (),
    )


entries = st.builds(
    plain_entry,
    st.sampled_from(NAMES),
    st.one_of(st.none(), st.sampled_from(KEYS)),
    st.booleans(),
    st.booleans(),
    st.integers(0, 3),
)
batches = st.tuples(
    st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), entries), max_size=3),
    st.sampled_from([{}, {"bad\nname": "not a service name"}]),
)


def reference(entries: dict[str, ServiceEntry], bad_names: dict[str, str]) -> Catalog:
    """The rule, written plainly: the lowest name holds a key; bad names first, then by name
    each entry's problems and skipped parts, with the keys it lost."""
    owners: dict[str, str] = {}
    for name in sorted(entries):
        for service in entries[name].services:
            owners.setdefault(service.key, name)
    problems: list[Problem] = []
    skipped = [Skipped(printable(n), why) for n, why in sorted(bad_names.items())]
    services = {}
    for name in sorted(entries):
        problems += entries[name].problems
        skipped += entries[name].skipped
        for service in entries[name].services:
            if owners[service.key] == name:
                services[service.key] = service
            else:
                reason = (
                    f"{service.key} is already served from ZooKeeper service {owners[service.key]}"
                )
                skipped.append(Skipped(service.app_id, reason, service.port_index))
    return Catalog(services, tuple(problems), tuple(skipped))


@settings(max_examples=300, deadline=None)
@given(st.lists(batches, min_size=1, max_size=12))
def test_one_batch_at_a_time_equals_assembling_every_entry(
    history: list[tuple[dict[str, Optional[ServiceEntry]], dict[str, str]]],
) -> None:
    assembly = Assembly()
    current: dict[str, ServiceEntry] = {}
    before = assembly.catalog
    for changed, bad_names in history:
        for name, entry in changed.items():
            if entry is None:
                current.pop(name, None)
            else:
                current[name] = entry._replace(update=gone(name))
        catalog = assembly.update({n: current.get(n) for n in changed}, bad_names)
        expected = reference(current, bad_names)
        assert catalog == expected
        assert catalog == assemble(sorted(current.items()), bad_names)
        for service in catalog.services.values():  # the entries' very objects
            assert any(service is s for e in current.values() for s in e.services)
        differ = {
            key
            for key in set(before.services) | set(catalog.services)
            if before.services.get(key) is not catalog.services.get(key)
        }
        assert differ <= set(changed_services(before, catalog))
        before = catalog
