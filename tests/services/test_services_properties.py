"""Properties of services_from_apps on generated apps: deterministic, sorted, consistent."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from marathon_bridge.services import services_from_apps

port = st.integers(min_value=0, max_value=3)  # small: collisions and unassigned (0) ports


@st.composite
def task(draw: Any, n_ports: int) -> dict:
    return {
        "id": draw(st.sampled_from(["t1", "t2", "t3", "t4"])),
        "host": draw(st.sampled_from(["a", "b", ""])),
        "ports": draw(st.lists(st.integers(31000, 31003), max_size=n_ports + 1)),
        "state": draw(st.sampled_from(["TASK_RUNNING", "TASK_STAGING", None])),
        "startedAt": draw(st.sampled_from(["2021-01-01T00:00:00.000Z", None])),
    }


@st.composite
def app(draw: Any) -> dict:
    service_ports = draw(st.lists(port.map(lambda p: p and 10000 + p), max_size=3))
    tasks = draw(st.lists(task(len(service_ports)), max_size=4))
    return {
        "id": draw(st.sampled_from(["/a", "/b", "/c"])),
        "portDefinitions": [{"port": p} for p in service_ports],
        "tasks": tasks,
    }


@settings(max_examples=200, deadline=None)
@given(apps=st.lists(app(), max_size=3, unique_by=lambda a: a["id"]), data=st.data())
def test_output_does_not_depend_on_input_order(apps: list[dict], data: Any) -> None:
    shuffled = [dict(a, tasks=data.draw(st.permutations(a["tasks"]))) for a in apps]
    shuffled = data.draw(st.permutations(shuffled))
    assert services_from_apps(shuffled) == services_from_apps(apps)


@settings(max_examples=200, deadline=None)
@given(apps=st.lists(app(), max_size=4))
def test_services_sorted_assigned_and_endpoints_valid(apps: list[dict]) -> None:
    services = services_from_apps(apps)
    keys = [(s.service_port, s.app_id, s.port_index) for s in services]
    assert keys == sorted(keys)
    for service in services:
        assert service.service_port >= 10000
        endpoints = [(e.address, e.port, e.task_id) for e in service.endpoints]
        assert endpoints == sorted(endpoints)
        for endpoint in service.endpoints:
            assert endpoint.address and endpoint.port > 0
            assert endpoint.state in ("TASK_RUNNING", "")


def test_one_task_id_in_two_states_sorts_the_same_whatever_the_order() -> None:
    # found by the property above: two tasks with the same id and port, one without a state
    staged = {"id": "t2", "host": "a", "ports": [31000], "startedAt": "2021-01-01T00:00:00.000Z"}
    running = dict(staged, state="TASK_RUNNING")
    app = {"id": "/a", "portDefinitions": [{"port": 10001}]}
    first = services_from_apps([dict(app, tasks=[staged, running])])
    second = services_from_apps([dict(app, tasks=[running, staged])])
    assert first == second
    assert [e.state for e in first[0].endpoints] == ["", "TASK_RUNNING"]
