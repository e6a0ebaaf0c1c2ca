"""The pure Marathon -> services mapping, on plain dicts and on the shared Marathon examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from marathon_bridge.services import (
    BRIDGE,
    CONTAINER,
    HOST,
    Endpoint,
    is_running,
    network_mode,
    port_specs,
    services_from_apps,
    task_endpoints,
    task_health,
)


def running_task(task_id: str, host: str = "agent1", ports: Any = (31000,), **extra: Any) -> dict:
    task = {
        "id": task_id,
        "host": host,
        "ports": list(ports),
        "state": "TASK_RUNNING",
        "startedAt": "2021-02-10T12:00:02.456Z",
        "version": "2021-02-10T11:59:59.000Z",
    }
    task.update(extra)
    return task


def host_app(app_id: str = "/web", ports: Any = (10000,), tasks: Any = (), **extra: Any) -> dict:
    app = {
        "id": app_id,
        "networks": [{"mode": "host"}],
        "portDefinitions": [
            {"port": p, "protocol": "tcp", "name": f"p{i}"} for i, p in enumerate(ports)
        ],
        "tasks": list(tasks),
    }
    app.update(extra)
    return app


def addresses(service: Any) -> list[tuple[str, int]]:
    return [(e.address, e.port) for e in service.endpoints]


# --- network_mode ---------------------------------------------------------------------------


def test_network_mode_from_networks() -> None:
    assert network_mode({"networks": [{"mode": "host"}]}) == HOST
    assert network_mode({"networks": [{"mode": "container/bridge"}]}) == BRIDGE
    assert network_mode({"networks": [{"mode": "container", "name": "dcos"}]}) == CONTAINER
    assert network_mode({"networks": [{"name": "dcos"}]}) == CONTAINER  # mode defaults to container


def test_network_mode_defaults_to_host() -> None:
    assert network_mode({"id": "/x"}) == HOST
    assert network_mode({"id": "/x", "networks": []}) == HOST


def test_network_mode_from_legacy_fields() -> None:
    assert network_mode({"container": {"docker": {"network": "BRIDGE"}}}) == BRIDGE
    assert network_mode({"container": {"docker": {"network": "USER"}}}) == CONTAINER
    assert network_mode({"container": {"docker": {"network": "HOST"}}}) == HOST
    assert network_mode({"ipAddress": {"discovery": {"ports": []}}}) == CONTAINER
    assert network_mode({"ipAddress": None, "container": None}) == HOST


# --- host networking ------------------------------------------------------------------------


def test_host_mode_several_ports_map_to_task_ports_by_index() -> None:
    app = host_app(ports=(10000, 10001), tasks=[running_task("t1", "a1", (31000, 31001))])
    services = services_from_apps([app])
    assert [(s.service_port, s.port_index, s.port_name) for s in services] == [
        (10000, 0, "p0"),
        (10001, 1, "p1"),
    ]
    assert addresses(services[0]) == [("a1", 31000)]
    assert addresses(services[1]) == [("a1", 31001)]
    assert services[0].network_mode == HOST


def test_legacy_top_level_ports_are_service_ports() -> None:
    app = {"id": "/old", "ports": [10013], "tasks": [running_task("t1", "a1", (31005,))]}
    [service] = services_from_apps([app])
    assert (service.service_port, addresses(service)) == (10013, [("a1", 31005)])


def test_port_definitions_win_over_legacy_ports() -> None:
    app = {"id": "/x", "ports": [10013], "portDefinitions": [{"port": 10020}]}
    assert [s.service_port for s in port_specs(app)] == [10020]


def test_require_ports_sets_the_host_port() -> None:
    app = host_app(ports=(8080,), requirePorts=True)
    assert port_specs(app)[0].host_port == 8080
    assert port_specs(host_app(ports=(8080,)))[0].host_port is None


def test_empty_port_definitions_means_no_services() -> None:
    app = {"id": "/worker", "portDefinitions": [], "tasks": [running_task("t1")]}
    assert services_from_apps([app]) == []


def test_unassigned_service_port_is_skipped_but_keeps_its_index() -> None:
    app = host_app(ports=(0, 10001), tasks=[running_task("t1", "a1", (31000, 31001))])
    [service] = services_from_apps([app])
    assert (service.service_port, service.port_index, addresses(service)) == (
        10001,
        1,
        [("a1", 31001)],
    )


def test_task_missing_a_port_gets_no_endpoint_for_it() -> None:
    short = running_task("short", "a1", (31000,))
    app = host_app(ports=(10000, 10001), tasks=[short, running_task("full", "a2", (32000, 32001))])
    endpoints = task_endpoints(app, short)
    assert endpoints[0] is not None and endpoints[1] is None
    services = services_from_apps([app])
    assert [e.task_id for e in services[0].endpoints] == ["short", "full"]
    assert [e.task_id for e in services[1].endpoints] == ["full"]


def test_task_without_host_or_with_port_zero_gets_no_endpoint() -> None:
    app = host_app()
    assert task_endpoints(app, running_task("t", host="")) == [None]
    assert task_endpoints(app, running_task("t", ports=(0,))) == [None]
    assert task_endpoints(app, {"id": "t", "host": "a1", "state": "TASK_RUNNING"}) == [None]


def test_endpoint_carries_task_details() -> None:
    task = running_task("t1", "a1", (31000,))
    [endpoint] = task_endpoints(host_app(), task)
    assert endpoint == Endpoint(
        task_id="t1",
        address="a1",
        port=31000,
        host="a1",
        state="TASK_RUNNING",
        healthy=None,
        version="2021-02-10T11:59:59.000Z",
    )


def test_labels_of_app_and_port_are_copied_as_strings() -> None:
    app = host_app(labels={"HAPROXY_GROUP": "external"})
    app["portDefinitions"][0]["labels"] = {"VIP_0": "1.2.3.4:80"}
    [service] = services_from_apps([app])
    assert dict(service.labels) == {"HAPROXY_GROUP": "external"}
    assert dict(service.port_labels) == {"VIP_0": "1.2.3.4:80"}


# --- bridge ---------------------------------------------------------------------------------


def bridge_app(mappings: list[dict], tasks: Any = (), legacy: bool = False) -> dict:
    if legacy:
        container = {"type": "DOCKER", "docker": {"network": "BRIDGE", "portMappings": mappings}}
        return {"id": "/br", "container": container, "tasks": list(tasks)}
    return {
        "id": "/br",
        "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "portMappings": mappings},
        "tasks": list(tasks),
    }


def test_bridge_service_port_maps_to_task_host_port() -> None:
    mappings = [
        {"containerPort": 80, "hostPort": 0, "servicePort": 10101, "name": "http"},
        {"containerPort": 9090, "hostPort": 0, "servicePort": 10102, "protocol": "udp"},
    ]
    app = bridge_app(mappings, [running_task("t1", "a1", (31001, 31002))])
    http, metrics = services_from_apps([app])
    assert (http.network_mode, http.port_name, addresses(http)) == (BRIDGE, "http", [("a1", 31001)])
    assert (metrics.protocol, addresses(metrics)) == ("udp", [("a1", 31002)])


def test_bridge_mapping_without_host_port_still_uses_a_host_port() -> None:
    app = bridge_app([{"containerPort": 80, "servicePort": 10101}], [running_task("t1", "a1")])
    assert port_specs(app)[0].host_port == 0
    [service] = services_from_apps([app])
    assert addresses(service) == [("a1", 31000)]


def test_legacy_docker_bridge_port_mappings() -> None:
    mappings = [{"containerPort": 80, "hostPort": 0, "servicePort": 10019}]
    app = bridge_app(mappings, [running_task("t1", "a1", (31555,))], legacy=True)
    [service] = services_from_apps([app])
    assert (service.network_mode, service.service_port, addresses(service)) == (
        BRIDGE,
        10019,
        [("a1", 31555)],
    )


# --- container networks (IP per task) --------------------------------------------------------


def container_app(mappings: list[dict], tasks: Any = ()) -> dict:
    return {
        "id": "/ip",
        "networks": [{"mode": "container", "name": "dcos"}],
        "container": {"type": "MESOS", "portMappings": mappings},
        "tasks": list(tasks),
    }


def ip_task(task_id: str, ip: str = "10.0.0.5", ports: Any = (), host: str = "a1") -> dict:
    return running_task(task_id, host, ports, ipAddresses=[{"ipAddress": ip, "protocol": "IPv4"}])


def test_container_network_uses_task_ip_and_container_port() -> None:
    app = container_app([{"containerPort": 8080, "servicePort": 10200}], [ip_task("t1")])
    [service] = services_from_apps([app])
    assert (service.network_mode, addresses(service)) == (CONTAINER, [("10.0.0.5", 8080)])


def test_container_mapping_with_host_port_uses_agent_and_the_right_task_port() -> None:
    # task "ports" only has entries for mappings with a hostPort, in mapping order
    mappings = [
        {"containerPort": 8080, "servicePort": 10200},
        {"containerPort": 9000, "hostPort": 0, "servicePort": 10201},
        {"containerPort": 7000, "servicePort": 10202},
        {"containerPort": 6000, "hostPort": 31999, "servicePort": 10203},
    ]
    app = container_app(mappings, [ip_task("t1", ports=(31500, 31999))])
    by_port = {s.service_port: addresses(s) for s in services_from_apps([app])}
    assert by_port == {
        10200: [("10.0.0.5", 8080)],
        10201: [("a1", 31500)],
        10202: [("10.0.0.5", 7000)],
        10203: [("a1", 31999)],
    }


def test_container_task_without_ip_gets_no_endpoint() -> None:
    app = container_app([{"containerPort": 8080, "servicePort": 10200}])
    staging = running_task("t1", "a1", (), ipAddresses=[])
    assert task_endpoints(app, staging) == [None]


def test_legacy_user_network_with_docker_port_mappings() -> None:
    app = {
        "id": "/user",
        "container": {
            "docker": {
                "network": "USER",
                "portMappings": [{"containerPort": 80, "servicePort": 10300}],
            }
        },
        "ipAddress": {"networkName": "dcos"},
        "tasks": [ip_task("t1", "10.1.1.1")],
    }
    [service] = services_from_apps([app])
    assert (service.network_mode, addresses(service)) == (CONTAINER, [("10.1.1.1", 80)])


def test_legacy_ip_address_discovery_ports() -> None:
    app = {
        "id": "/legacy-ip",
        "ipAddress": {
            "discovery": {"ports": [{"number": 7777, "name": "my-port", "protocol": "tcp"}]}
        },
        "tasks": [ip_task("t1", "10.2.2.2")],
    }
    [spec] = port_specs(app)
    assert (spec.container_port, spec.name, spec.service_port) == (7777, "my-port", 0)
    [endpoint] = task_endpoints(app, app["tasks"][0])
    assert endpoint is not None and (endpoint.address, endpoint.port) == ("10.2.2.2", 7777)
    # Marathon < 1.5 assigned no service ports to IP-per-task apps: nothing to serve
    assert services_from_apps([app]) == []
    app["ports"] = [10400]
    [service] = services_from_apps([app])
    assert (service.service_port, addresses(service)) == (10400, [("10.2.2.2", 7777)])


# --- task state and health --------------------------------------------------------------------


def test_only_running_tasks_are_endpoints_by_default() -> None:
    tasks = [
        running_task("run", "a1", (31000,)),
        running_task("stage", "a2", (31001,), state="TASK_STAGING"),
        running_task("kill", "a3", (31002,), state="TASK_KILLING"),
    ]
    [service] = services_from_apps([host_app(tasks=tasks)])
    assert [e.task_id for e in service.endpoints] == ["run"]


def test_old_marathon_task_without_state_is_running_once_started() -> None:
    assert is_running({}, {"id": "t", "startedAt": "2015-09-17T09:32:42.598Z"})
    assert not is_running({}, {"id": "t", "startedAt": None})
    assert not is_running({}, {"id": "t"})
    assert not is_running({}, {"id": "t", "state": "TASK_STAGING", "startedAt": "x"})


def test_custom_accept_predicate() -> None:
    tasks = [running_task("a", "a1", (31000,)), running_task("b", "a2", (31001,))]
    [service] = services_from_apps([host_app(tasks=tasks)], accept=lambda app, t: t["id"] == "b")
    assert [e.task_id for e in service.endpoints] == ["b"]


def test_task_health() -> None:
    checked = {"healthChecks": [{"protocol": "HTTP", "path": "/health"}]}
    alive = {"healthCheckResults": [{"alive": True}]}
    assert task_health({}, alive) is None
    assert task_health({"healthChecks": []}, alive) is None
    assert task_health(checked, alive) is True
    assert (
        task_health(checked, {"healthCheckResults": [{"alive": True}, {"alive": False}]}) is False
    )
    assert task_health(checked, {"healthCheckResults": []}) is False
    assert task_health(checked, {}) is False


def test_health_is_reported_on_endpoints() -> None:
    task = running_task("t1", healthCheckResults=[{"alive": True}])
    app = host_app(tasks=[task], healthChecks=[{"protocol": "TCP"}])
    [service] = services_from_apps([app])
    assert service.endpoints[0].healthy is True


# --- ordering ---------------------------------------------------------------------------------


def test_output_is_sorted_and_independent_of_input_order() -> None:
    tasks = [
        running_task("t3", "b", (31000,)),
        running_task("t2", "a", (31001,)),
        running_task("t1", "a", (31000,)),
    ]
    apps = [
        host_app("/z", ports=(10005,), tasks=tasks),
        host_app("/b", ports=(10001,)),
        host_app("/a", ports=(10001,)),
    ]
    first = services_from_apps(apps)
    assert [(s.service_port, s.app_id) for s in first] == [
        (10001, "/a"),
        (10001, "/b"),
        (10005, "/z"),
    ]
    assert [(e.address, e.port, e.task_id) for e in first[2].endpoints] == [
        ("a", 31000, "t1"),
        ("a", 31001, "t2"),
        ("b", 31000, "t3"),
    ]
    reversed_apps = [dict(a, tasks=list(reversed(a["tasks"]))) for a in reversed(apps)]
    assert services_from_apps(reversed_apps) == first


def test_apps_without_tasks_key_give_services_without_endpoints() -> None:
    app = host_app()
    del app["tasks"]
    [service] = services_from_apps([app])
    assert service.endpoints == ()


# --- shared Marathon examples ------------------------------------------------------------------


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_doc_example_apps_with_legacy_ports(examples_dir: Path) -> None:
    apps = load(examples_dir / "api-docs-head" / "GET_v2_apps.response.doc-example.json")["apps"]
    services = services_from_apps(apps)
    assert [(s.app_id, s.service_port, s.network_mode) for s in services] == [
        ("/myapp", 10013, HOST),
        ("/myapp", 10015, HOST),
    ]
    assert all(s.endpoints == () for s in services)


def test_doc_example_tasks_joined_with_their_apps(examples_dir: Path) -> None:
    tasks = load(examples_dir / "api-docs-head" / "GET_v2_tasks.response.json")["tasks"]
    apps: dict[str, dict] = {}
    for task in tasks:
        app = apps.setdefault(
            task["appId"],
            {"id": task["appId"], "portDefinitions": [{"port": p} for p in task["servicePorts"]]},
        )
        app.setdefault("tasks", []).append(task)
    services = services_from_apps(apps.values())
    assert [(s.app_id, s.service_port, addresses(s)) for s in services] == [
        ("/tools/docker/registry", 5000, [("srv2.example.com", 31721)]),
        ("/frontend-foosball", 10019, [("srv4.example.com", 31292)]),
    ]


def test_derived_task_examples(examples_dir: Path) -> None:
    derived = examples_dir / "derived-from-code"
    running = load(derived / "task.running.v1.10.json")
    healthy = load(derived / "task.running.with-health.v1.10.json")
    staging = load(derived / "task.staging.v1.10.EnrichedTaskWritesTest.json")
    app = host_app("/foo/bar", ports=(10000,), tasks=[running, staging])
    [service] = services_from_apps([app])
    assert addresses(service) == [("agent1.mesos", 31045)]
    assert task_endpoints(app, staging) == [None]
    assert not is_running(app, staging)
    checked = host_app("/foo/bar", healthChecks=[{"protocol": "HTTP"}])
    assert task_health(checked, healthy) is True
    assert task_health(checked, running) is False


def test_minimal_app_with_embedded_task(examples_dir: Path) -> None:
    app = load(examples_dir / "derived-from-code" / "GET_v2_apps_id.minimal-app.v1.10.json")["app"]
    [service] = services_from_apps([app])
    assert (service.app_id, service.service_port, service.port_name) == ("/foo", 10000, "default")
    assert addresses(service) == [("agent1.mesos", 31045)]
