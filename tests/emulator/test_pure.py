"""The emulator's pure helpers: service-port assignment, label selectors, wire formats."""

from __future__ import annotations

import re

import pytest

from marathon_bridge.testing import appmodel
from marathon_bridge.testing.faults import FaultInjector
from marathon_bridge.testing.wire import dumps_play, dumps_rest, sse_frame, timestamp


def host_app(*ports: int) -> dict:
    return {
        "id": "/a",
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": p} for p in ports],
    }


def test_lowest_free_ports_skip_used_and_own_fixed_ports() -> None:
    out = appmodel.assign_service_ports(host_app(0, 10001, 0), None, used={10000, 10002})
    assert appmodel.service_ports(out) == [10003, 10001, 10004]


def test_previous_ports_are_reused_first() -> None:
    previous = host_app(10007, 10008)
    out = appmodel.assign_service_ports(host_app(0, 10008), previous, used={10000})
    assert appmodel.service_ports(out) == [10007, 10008]


def test_port_range_exhaustion_is_reported() -> None:
    with pytest.raises(appmodel.PortRangeExhausted, match=r"\[10000-10001\)"):
        appmodel.assign_service_ports(host_app(0, 0, 0), None, set(), 10000, 10001)


def test_bridge_mappings_get_service_and_host_port_requests() -> None:
    app = {
        "id": "/b",
        "networks": [{"mode": "container/bridge"}],
        "container": {
            "portMappings": [
                {"containerPort": 80, "hostPort": 0},
                {"containerPort": 81, "hostPort": 8081},
            ]
        },
    }
    out = appmodel.assign_service_ports(app, None, set())
    assert appmodel.service_ports(out) == [10000, 10001]
    assert appmodel.host_port_requests(out) == [0, 8081]
    container = {
        "id": "/c",
        "networks": [{"mode": "container", "name": "n"}],
        "container": {"portMappings": [{"containerPort": 80}]},
    }
    assert appmodel.host_port_requests(container) == []
    check = {"protocol": "HTTP", "portIndex": 0}
    assert appmodel.health_check_port(container, check, []) == 80


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier", ["api", "web"]),
        ("tier==backend", ["api"]),
        ("tier!=backend", ["other", "web"]),
        ("tier in (backend,frontend)", ["api", "web"]),
        ("tier notin (backend)", ["other", "web"]),
        ("tier,team==x", ["api"]),
        ("odd==a\\,b", ["other"]),
    ],
)
def test_label_selectors(selector: str, expected: list[str]) -> None:
    apps = {
        "api": {"tier": "backend", "team": "x"},
        "web": {"tier": "frontend"},
        "other": {"odd": "a,b"},
    }
    parsed = appmodel.parse_label_selector(selector)
    assert (
        sorted(n for n, labels in apps.items() if appmodel.labels_match(labels, parsed)) == expected
    )


def test_wire_formats() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp())
    assert timestamp(0.0015) == "1970-01-01T00:00:00.002Z"
    assert dumps_rest({"cpus": 1.0, "x": [0.5]}) == b'{"cpus":1.0,"x":[0.5]}'
    assert dumps_play({"cpus": 1.0, "x": [0.5], "b": True}) == b'{"cpus":1,"x":[0.5],"b":true}'
    assert sse_frame("a", b"{}") == b"event: a\r\ndata: {}\r\n\r\n"


def test_fault_injector_counts_and_expires() -> None:
    faults = FaultInjector()
    once = faults.add("/v2/*", method="GET", status=500, times=1)
    faults.add("/ping", delay=0.1)
    assert faults.take("POST", "/v2/apps") == []
    assert faults.take("GET", "/v2/apps") == [once]
    assert faults.take("GET", "/v2/apps") == []
    assert [f.delay for f in faults.take("GET", "/ping")] == [0.1]
    faults.add("/x", status=502, duration=0.0)
    assert faults.take("GET", "/x") == []
    faults.clear()
    assert faults.active() == []
