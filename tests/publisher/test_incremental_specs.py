"""Catalog -> specs one change at a time gives what naming and mapping the whole catalog gives
(plain data): the same specs and refusals after every step of random histories with removals,
renamed services and names two services share, tagged catalogs or not; and the changes it tags
the specs with cover every spec that changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.feed import CatalogSpecs, Published
from publisher.plan import ServiceSpec
from sidecar.catalog import (
    READY,
    Catalog,
    Instance,
    Problem,
    Service,
    ServiceOptions,
    updated_catalog,
)
from sidecar.changes import changed_between
from sidecar.sources.zookeeper import mapping

# "/a/b" and "/a_b" share the name a_b:<port index>; the long ones cannot have a name at all
APP_IDS = ("/a/b", "/a_b", "/a", "/c/d", "/" + "x" * 250, "/" + "y" * 250)
KEYS = ("k1", "k2", "k3", "k4", "k5")  # a key whose service changes app id is a renamed service
OPTIONS = ServiceOptions(service_port=10000, bind_port=10000)


def make_service(key: str, app_id: str, port_index: int, ready: int, version: int) -> Service:
    instances = tuple(
        Instance(f"t{n}.{version}", f"10.0.0.{n + 1}", 31000 + n, READY, "running")
        for n in range(ready)
    )
    return Service(key, app_id, port_index, OPTIONS, instances)


services = st.builds(
    make_service,
    st.sampled_from(KEYS),
    st.sampled_from(APP_IDS),
    st.integers(0, 1),
    st.integers(0, 3),
    st.integers(0, 2),
)
# one step: keys replaced by a service (made under that key) or removed (None)
steps = st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), services), max_size=3)


def full_walk(catalog: Catalog) -> tuple[dict[str, ServiceSpec], tuple[Problem, ...]]:
    """What publishing the whole catalog at once gives."""
    named, refused = mapping.named_services(catalog)
    specs = {}
    for name, service in named.items():
        written = mapping.zookeeper_service(service, name)
        specs[name] = ServiceSpec(written.instances, written.options)
    return specs, tuple(refused)


def next_catalog(catalog: Catalog, step: Mapping[str, Optional[Service]], tagged: bool) -> Catalog:
    changed = {
        key: None if service is None else service._replace(key=key) for key, service in step.items()
    }
    made = updated_catalog(catalog, changed)
    return made if tagged else Catalog(dict(made.services))  # untagged: found by walking


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(steps, st.booleans()), min_size=1, max_size=12))
def test_one_change_at_a_time_equals_the_whole_catalog_at_once(
    history: list[tuple[dict[str, Optional[Service]], bool]],
) -> None:
    specs = CatalogSpecs()
    catalog = Catalog()
    last: Optional[Published] = None
    for step, tagged in history:
        catalog = next_catalog(catalog, step, tagged)
        published = specs.publish(catalog)
        expected_specs, expected_refused = full_walk(catalog)
        assert dict(published.specs) == expected_specs
        assert published.refused == expected_refused
        assert published.instances == sum(len(s.instances) for s in expected_specs.values())
        if last is not None:
            assert_changes_cover(last, published)
        last = published


def assert_changes_cover(before: Published, after: Published) -> None:
    """Every name whose spec is not the very same object is in the changes, when they tell."""
    names = changed_between(before.changes, after.changes)
    if names is None:
        return
    differ = {
        name
        for name in set(before.specs) | set(after.specs)
        if before.specs.get(name) is not after.specs.get(name)
    }
    assert differ <= names


def test_a_service_that_leaves_a_shared_name_hands_it_to_the_next_key() -> None:
    first = make_service("/a/b:0", "/a/b", 0, 1, 0)
    second = make_service("/a_b:0", "/a_b", 0, 2, 0)
    specs = CatalogSpecs()
    both = updated_catalog(Catalog(), {first.key: first, second.key: second})
    published = specs.publish(both)
    assert published.specs["a_b:0"].instances == mapping.published_instances(first)
    (refused,) = published.refused
    assert refused.app_id == "/a_b" and "already taken by /a/b:0" in refused.reason
    published = specs.publish(updated_catalog(both, {first.key: None}))
    assert published.specs["a_b:0"].instances == mapping.published_instances(second)
    assert published.refused == ()


def test_an_unchanged_catalog_changes_no_spec() -> None:
    web = make_service("/web:0", "/web", 0, 2, 0)
    specs = CatalogSpecs()
    catalog = updated_catalog(Catalog(), {web.key: web})
    first = specs.publish(catalog)
    again = specs.publish(updated_catalog(catalog, {}))
    assert again.specs is first.specs
    assert changed_between(first.changes, again.changes) == frozenset()


def test_a_change_that_publishes_nothing_new_keeps_the_spec_and_tags_no_name() -> None:
    web = make_service("/web:0", "/web", 0, 2, 0)
    specs = CatalogSpecs()
    catalog = updated_catalog(Catalog(), {web.key: web})
    first = specs.publish(catalog)
    draining = Instance("t9.0", "10.0.0.9", 31009, "drain", "killing")
    with_drain = web._replace(instances=(*web.instances, draining))  # not written: not ready
    again = specs.publish(updated_catalog(catalog, {web.key: with_drain}))
    assert again.specs["web:0"] is first.specs["web:0"]
    assert changed_between(first.changes, again.changes) == frozenset()
