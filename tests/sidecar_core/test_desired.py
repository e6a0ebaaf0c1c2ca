"""build_model: networking modes, ports, names, resolution, conflicts, groups, health checks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marathon_bridge.services import network_mode, port_specs, task_endpoints
from sidecar.desired import BuildCache, build_model
from sidecar.haproxy_model import (
    HAProxyModel,
    HealthCheckSpec,
    RouteSpec,
    in_rotation,
    listener_signature,
)
from sidecar.names import safe_name, server_name
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon.model import MarathonState
from sidecar.sources.marathon.translate import (
    MarathonTranslator,
    catalog_from_apps,
    host_slots,
    task_address,
)

HOSTS = {"agent1": "10.0.0.1", "agent2": "10.0.0.2", "agent3": "10.0.0.3"}
SETTINGS = RenderSettings()


def running(
    task_id: str, host: str = "agent1", ports: Any = (31000,), **extra: Any
) -> dict[str, Any]:
    task = {"id": task_id, "host": host, "ports": list(ports), "state": "TASK_RUNNING"}
    task.update(extra)
    return task


def host_app(
    app_id: str = "/web", ports: Any = (10000,), tasks: Any = (), **extra: Any
) -> dict[str, Any]:
    app = {
        "id": app_id,
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": p, "protocol": "tcp"} for p in ports],
        "tasks": list(tasks),
    }
    app.update(extra)
    return app


def model_of(
    apps: list[dict[str, Any]],
    settings: RenderSettings = SETTINGS,
    previously_in: frozenset[str] = frozenset(),
) -> HAProxyModel:
    return build_model(catalog_from_apps(apps, previously_in), settings, HOSTS.get)


def servers(model: HAProxyModel, backend_index: int = 0) -> list[tuple[str, int, str]]:
    return [(s.address, s.port, s.state) for s in model.backends[backend_index].servers]


# --- networking modes and ports -----------------------------------------------------------------


def test_host_mode_several_ports() -> None:
    app = host_app(
        ports=(10000, 10001),
        tasks=[running("t1", ports=(31000, 31001)), running("t2", "agent2", (32000, 32001))],
    )
    model = model_of([app])
    assert [(f.name, f.port, f.binds, f.default_backend) for f in model.frontends] == [
        ("fe_10000", 10000, ("127.0.0.1",), "be_web_10000"),
        ("fe_10001", 10001, ("127.0.0.1",), "be_web_10001"),
    ]
    assert [b.name for b in model.backends] == ["be_web_10000", "be_web_10001"]
    assert servers(model, 0) == [("10.0.0.1", 31000, "ready"), ("10.0.0.2", 32000, "ready")]
    assert servers(model, 1) == [("10.0.0.1", 31001, "ready"), ("10.0.0.2", 32001, "ready")]


def test_bridge_mode_uses_host_and_host_ports() -> None:
    app = {
        "id": "/bridge",
        "networks": [{"mode": "container/bridge"}],
        "container": {
            "type": "DOCKER",
            "portMappings": [
                {"containerPort": 80, "hostPort": 0, "servicePort": 10010},
                {"containerPort": 81, "hostPort": 0, "servicePort": 10011},
            ],
        },
        "tasks": [
            running("b1", "agent2", (31500, 31501), ipAddresses=[{"ipAddress": "172.17.0.2"}])
        ],
    }
    model = model_of([app])
    assert servers(model, 0) == [("10.0.0.2", 31500, "ready")]
    assert servers(model, 1) == [("10.0.0.2", 31501, "ready")]


def test_container_mode_uses_task_ip_and_container_port_or_host_port() -> None:
    app = {
        "id": "/ippt",
        "networks": [{"mode": "container", "name": "dcos"}],
        "container": {
            "type": "MESOS",
            "portMappings": [
                {"containerPort": 8080, "servicePort": 10020},
                {"containerPort": 9090, "hostPort": 0, "servicePort": 10021},
            ],
        },
        "tasks": [
            running(
                "c1",
                "agent3",
                (31900,),
                ipAddresses=[{"ipAddress": "192.168.0.7", "protocol": "IPv4"}],
            )
        ],
    }
    model = model_of([app])
    assert servers(model, 0) == [("192.168.0.7", 8080, "ready")]
    assert servers(model, 1) == [("10.0.0.3", 31900, "ready")]


def test_legacy_ip_address_and_docker_port_mappings() -> None:
    legacy_ippt = {
        "id": "/legacy-ippt",
        "ipAddress": {
            "discovery": {"ports": [{"number": 8080, "name": "http", "protocol": "tcp"}]}
        },
        "ports": [10030],
        "tasks": [running("l1", ipAddresses=[{"ipAddress": "fd00::7"}])],
    }
    legacy_bridge = {
        "id": "/legacy-bridge",
        "container": {
            "docker": {
                "network": "BRIDGE",
                "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": 10031}],
            }
        },
        "tasks": [running("l2", "agent2", (31777,))],
    }
    model = model_of([legacy_ippt, legacy_bridge])
    assert {b.name: servers(model, i) for i, b in enumerate(model.backends)} == {
        "be_legacy-ippt_10030": [("fd00::7", 8080, "ready")],
        "be_legacy-bridge_10031": [("10.0.0.2", 31777, "ready")],
    }


def test_ports_without_service_port_are_not_served() -> None:
    assert model_of([host_app(ports=(0,), tasks=[running("t")])]) == HAProxyModel()


def test_udp_ports_are_skipped_with_a_reason() -> None:
    app = host_app(ports=(10000,))
    app["portDefinitions"][0]["protocol"] = "udp"
    model = model_of([app])
    assert model.backends == () and model.skipped[0].reason == "only tcp ports are proxied"
    app["portDefinitions"][0]["protocol"] = "udp,tcp"
    assert len(model_of([app]).backends) == 1


apps_modes = st.sampled_from(["host", "container/bridge", "container"])


@settings(max_examples=200, deadline=None)
@given(
    mode=apps_modes,
    host_ports=st.lists(
        st.one_of(st.none(), st.integers(0, 70000), st.booleans(), st.floats(0, 70000)), max_size=4
    ),
    mappings=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 65535)), st.one_of(st.none(), st.integers(0, 65535))
        ),
        min_size=1,
        max_size=3,
    ),
    ips=st.lists(
        st.fixed_dictionaries({"ipAddress": st.sampled_from(["10.1.1.1", "", "x"])}), max_size=2
    ),
    host=st.sampled_from(["agent1", "", "10.9.9.9"]),
)
def test_endpoint_fast_path_agrees_with_services(
    mode: str, host_ports: list[Any], mappings: list[Any], ips: list[Any], host: str
) -> None:
    """build_model computes endpoints once per app; it must match services.task_endpoints."""
    if mode == "host":
        app: dict[str, Any] = {
            "id": "/x",
            "networks": [{"mode": "host"}],
            "portDefinitions": [{"port": 10000 + i} for i in range(len(mappings))],
        }
    else:
        pms = []
        for i, (container_port, hp) in enumerate(mappings):
            pm: dict[str, Any] = {"servicePort": 10000 + i}
            if container_port is not None:
                pm["containerPort"] = container_port
            if hp is not None:
                pm["hostPort"] = hp
            pms.append(pm)
        app = {"id": "/x", "networks": [{"mode": mode}], "container": {"portMappings": pms}}
    task = {
        "id": "t",
        "host": host,
        "ports": host_ports,
        "ipAddresses": ips,
        "state": "TASK_RUNNING",
    }
    specs = port_specs(app)
    slots = host_slots(network_mode(app), specs)
    expected = task_endpoints(app, task)
    for spec, endpoint in zip(specs, expected):
        got = task_address(task, slots[spec.index], spec.container_port)
        want = (
            None if endpoint is None or endpoint.port > 65535 else (endpoint.address, endpoint.port)
        )
        assert got == want


# --- names ------------------------------------------------------------------------------------


def test_server_names_come_from_task_ids() -> None:
    assert server_name("web.instance-1._app.1") == "web.instance-1._app.1"
    weird = server_name("web task#1\n")
    assert weird.startswith("web_task_1_-") and len(weird) <= 64
    assert server_name("a b") != server_name("a_b")  # sanitized names keep distinct ids apart
    long = server_name("x" * 300)
    assert len(long) == 64 and long == server_name("x" * 300)
    assert server_name("-dash")[0].isalnum()


def test_safe_name_is_stable_and_allowed() -> None:
    for raw in ["/a/b", "é", "", "{}", "x" * 100, "::1", "a\nb"]:
        name = safe_name(raw)
        assert name == safe_name(raw)
        assert all(c.isascii() and (c.isalnum() or c in "_.:-") for c in name) and name


def test_backend_names_from_app_ids_stay_unique() -> None:
    apps = [
        host_app("/a/b", ports=(10000,)),
        host_app("/a_b", ports=(10001,)),
        host_app("/a/b c", ports=(10002,)),
    ]
    names = [b.name for b in model_of(apps).backends]
    assert len(set(names)) == 3
    assert "be_a_b_10000" in names and "be_a_b_10001" in names


# --- resolution ---------------------------------------------------------------------------------


def test_unresolvable_host_skips_only_that_server() -> None:
    app = host_app(
        tasks=[
            running("t1"),
            running("t2", "no-such-agent"),
            running("t3", "10.5.5.5"),
            running("t4", "bad host\n"),
        ]
    )
    model = model_of([app])
    assert servers(model) == [("10.0.0.1", 31000, "ready"), ("10.5.5.5", 31000, "ready")]
    assert sorted(s.task_id for s in model.skipped) == ["t2", "t4"]
    assert {s.reason for s in model.skipped} == {"task host does not resolve to an IP address"}


def test_resolver_returning_garbage_or_raising_is_treated_as_unresolved() -> None:
    catalog = catalog_from_apps([host_app(tasks=[running("t1")])])

    def broken(host: str) -> str:
        raise OSError("dns down")

    assert build_model(catalog, SETTINGS, broken).backends[0].servers == ()
    assert build_model(catalog, SETTINGS, lambda h: "not-an-ip\n").backends[0].servers == ()


def test_task_without_port_is_skipped() -> None:
    model = model_of([host_app(tasks=[running("t1", ports=())])])
    assert (
        model.backends[0].servers == ()
        and model.skipped[0].reason == "task has no address for this port"
    )


# --- selection in the model -------------------------------------------------------------------


def test_killing_task_that_was_in_is_drained_others_dropped() -> None:
    app = host_app(
        tasks=[
            running("k1", state="TASK_KILLING"),
            running("k2", state="TASK_KILLING"),
            running("r"),
        ]
    )
    model = model_of([app], previously_in=frozenset({"k1", "r"}))
    assert [(s.task_id, s.state) for s in model.backends[0].servers] == [
        ("k1", "drain"),
        ("r", "ready"),
    ]
    assert in_rotation(model) == frozenset({"r"})


def test_leader_election_keeps_servers() -> None:
    app = host_app(
        healthChecks=[{"protocol": "HTTP"}],
        tasks=[running("a", healthCheckResults=[]), running("b", healthCheckResults=[])],
    )
    assert model_of([app]).backends[0].servers == ()
    kept = model_of([app], previously_in=frozenset({"a", "b"}))
    assert [s.task_id for s in kept.backends[0].servers] == ["a", "b"]


# --- labels in the model -----------------------------------------------------------------------


def test_two_apps_on_one_port_lowest_id_wins() -> None:
    model = model_of([host_app("/b", ports=(10000,)), host_app("/a", ports=(10000,))])
    assert [b.app_id for b in model.backends] == ["/a"]
    assert model.skipped[0].app_id == "/b" and "already served" in model.skipped[0].reason


def test_port_label_overrides_bind_port_and_bad_port_skips() -> None:
    model = model_of([host_app(labels={"HAPROXY_0_PORT": "20000"})])
    assert [f.port for f in model.frontends] == [20000] and model.backends[0].service_port == 10000
    model = model_of([host_app(labels={"HAPROXY_0_PORT": "99999"})])
    assert model.frontends == () and model.skipped[0].reason == "bad HAPROXY_{n}_PORT label"


def test_port_label_conflicting_with_another_service_port() -> None:
    model = model_of(
        [
            host_app("/a", ports=(10000,)),
            host_app("/b", ports=(10001,), labels={"HAPROXY_0_PORT": "10000"}),
        ]
    )
    assert [b.app_id for b in model.backends] == ["/a"]


def test_reserved_ports_and_vhost_port_are_not_given_to_apps() -> None:
    settings = RenderSettings(reserved_ports=(10000,), vhost_port=10001)
    model = model_of([host_app("/a", ports=(10000,)), host_app("/b", ports=(10001,))], settings)
    assert model.backends == ()
    assert {s.reason for s in model.skipped} == {"port is reserved by the sidecar"}


def test_enabled_false_skips_the_port() -> None:
    model = model_of([host_app(labels={"HAPROXY_0_ENABLED": "false"})])
    assert model.backends == () and model.skipped[0].reason == "disabled by HAPROXY_{n}_ENABLED"


def test_groups_filter() -> None:
    apps = [
        host_app("/ext", ports=(10000,), labels={"HAPROXY_GROUP": "external"}),
        host_app("/int", ports=(10001,), labels={"HAPROXY_GROUP": "internal,other"}),
        host_app("/none", ports=(10002,)),
        host_app(
            "/split",
            ports=(10003, 10004),
            labels={"HAPROXY_GROUP": "external", "HAPROXY_1_GROUP": "internal"},
        ),
    ]

    def served(groups: tuple[str, ...]) -> list[int]:
        return [f.port for f in model_of(apps, RenderSettings(groups=groups)).frontends]

    assert served(()) == [10000, 10001, 10002, 10003, 10004]
    assert served(("internal",)) == [10001, 10004]
    assert served(("external",)) == [10000, 10003]
    assert served(("*",)) == [10000, 10001, 10002, 10003, 10004]


def test_bind_addr_only_when_allowed() -> None:
    app = host_app(labels={"HAPROXY_0_BIND_ADDR": "127.0.0.2"})
    model = model_of([app])
    assert model.frontends[0].binds == ("127.0.0.1",)
    assert model.problems[0].label == "HAPROXY_0_BIND_ADDR"
    allowed = RenderSettings(bind_addrs=("127.0.0.1", "::1"), label_bind_addrs=("127.0.0.2",))
    assert model_of([app], allowed).frontends[0].binds == ("127.0.0.2",)
    assert model_of([host_app()], allowed).frontends[0].binds == ("127.0.0.1", "::1")
    ipv6 = host_app(labels={"HAPROXY_0_BIND_ADDR": "0:0::1"})  # compared as addresses, not text
    assert model_of([ipv6], allowed).frontends[0].binds == ("::1",)


def test_label_for_missing_port_index_is_a_problem() -> None:
    model = model_of([host_app(labels={"HAPROXY_3_MODE": "http"})])
    assert [(p.label, p.reason) for p in model.problems] == [
        ("HAPROXY_3_*", "the app has no port with this index")
    ]


def test_vhost_routes_on_the_shared_frontend_ordered_by_weight_and_path() -> None:
    apps = [
        host_app("/a", ports=(10000,), labels={"HAPROXY_0_VHOST": "shop.example.com"}),
        host_app(
            "/b",
            ports=(10001,),
            labels={"HAPROXY_0_VHOST": "shop.example.com", "HAPROXY_0_PATH": "/api"},
        ),
        host_app(
            "/c",
            ports=(10002,),
            labels={"HAPROXY_0_VHOST": "x.example.com", "HAPROXY_0_BACKEND_WEIGHT": "5"},
        ),
        host_app("/d", ports=(10003,), labels={"HAPROXY_0_MODE": "http"}),
    ]
    model = model_of(apps, RenderSettings(vhost_port=8080))
    vhost = model.frontends[0]
    assert (vhost.name, vhost.port, vhost.mode, vhost.default_backend) == (
        "fe_vhost_8080",
        8080,
        "http",
        None,
    )
    assert vhost.routes == (
        RouteSpec("be_c_10002", ("x.example.com",), ""),
        RouteSpec("be_b_10001", ("shop.example.com",), "/api"),
        RouteSpec("be_a_10000", ("shop.example.com",), ""),
    )
    assert not any(f.routes for f in model_of(apps).frontends)  # no vhost port: no routing


def test_active_health_check_from_marathon_check() -> None:
    check = {
        "protocol": "HTTP",
        "path": "/health",
        "portIndex": 1,
        "intervalSeconds": 10,
        "timeoutSeconds": 3,
        "maxConsecutiveFailures": 5,
    }
    app = host_app(
        ports=(10000, 10001),
        healthChecks=[check],
        labels={"HAPROXY_0_HEALTHCHECK": "true", "HAPROXY_1_HEALTHCHECK": "true"},
    )
    model = model_of([app])
    assert model.backends[0].health_check is None
    assert model.problems[0].reason == "no Marathon HTTP/TCP health check for this port"
    assert model.backends[1].health_check == HealthCheckSpec("http", "/health", 10000, 3000, 2, 5)


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        ({"protocol": "TCP"}, HealthCheckSpec("tcp", "/", 60000, 20000, 2, 3)),
        (
            {"protocol": "MESOS_HTTP", "path": "/h?x=1"},
            HealthCheckSpec("http", "/h?x=1", 60000, 20000, 2, 3),
        ),
        (
            {"protocol": "HTTP", "path": "/a b#c", "intervalSeconds": 1},
            HealthCheckSpec("tcp", "/", 5000, 5000, 2, 3),
        ),
        (
            {"protocol": "HTTPS", "maxConsecutiveFailures": 0},
            HealthCheckSpec("tcp", "/", 60000, 20000, 2, 3),
        ),
        (
            {"protocol": "HTTP", "intervalSeconds": "10", "timeoutSeconds": float("nan")},
            HealthCheckSpec("http", "/", 60000, 20000, 2, 3),
        ),
    ],
)
def test_health_check_derivation(check: dict[str, Any], expected: HealthCheckSpec) -> None:
    app = host_app(healthChecks=[check], labels={"HAPROXY_0_HEALTHCHECK": "true"})
    assert model_of([app]).backends[0].health_check == expected


def test_command_check_is_not_used() -> None:
    app = host_app(
        healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"}}],
        labels={"HAPROXY_0_HEALTHCHECK": "true"},
    )
    assert model_of([app]).backends[0].health_check is None


# --- signature and determinism --------------------------------------------------------------------


def test_listener_signature_ignores_servers_but_not_listeners() -> None:
    one = model_of([host_app(tasks=[running("t1")])])
    two = model_of([host_app(tasks=[running("t1"), running("t2", "agent2")])])
    assert one != two and listener_signature(one) == listener_signature(two)
    http = model_of([host_app(tasks=[running("t1")], labels={"HAPROXY_0_MODE": "http"})])
    assert listener_signature(http) != listener_signature(one)
    more = model_of([host_app(ports=(10000, 10001), tasks=[running("t1")])])
    assert listener_signature(more) != listener_signature(one)
    hash(listener_signature(more))


def test_model_does_not_depend_on_input_order() -> None:
    apps = [
        host_app(
            f"/app{i}",
            ports=(10000 + i,),
            tasks=[running(f"t{i}.{j}", f"agent{j % 3 + 1}", (31000 + j,)) for j in range(3)],
        )
        for i in range(20)
    ]
    assert model_of(apps) == model_of(list(reversed(apps)))


# --- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bind_addrs": ("localhost",)},
        {"bind_addrs": ()},
        {"admin_socket": "relative.sock"},
        {"admin_socket": "/tmp/a b.sock"},
        {"server_state_file": "/tmp/x\nglobal"},
        {"hard_stop_after": "30 s"},
        {"timeout_client": "1m\n"},
        {"maxconn": 0},
        {"maxconn": True},
        {"vhost_port": 70000},
        {"groups": ("a b",)},
        {"spread_checks": 60},
    ],
)
def test_bad_render_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RenderSettings(**kwargs)


# --- the build cache -----------------------------------------------------------------------------


def event_sequence() -> list[tuple[str, dict[str, Any]]]:
    return [
        (
            "status_update_event",
            {
                "appId": "/app1",
                "taskId": "n1",
                "taskStatus": "TASK_RUNNING",
                "host": "agent2",
                "ports": [32000],
            },
        ),
        ("health_status_changed_event", {"appId": "/app2", "instanceId": "t2.0", "alive": False}),
        ("status_update_event", {"appId": "/app3", "taskId": "t3.1", "taskStatus": "TASK_KILLING"}),
        ("status_update_event", {"appId": "/app3", "taskId": "t3.1", "taskStatus": "TASK_KILLED"}),
        (
            "api_post_event",
            {
                "appDefinition": {
                    "id": "/app4",
                    "portDefinitions": [{"port": 10004}],
                    "labels": {"HAPROXY_0_MODE": "http"},
                }
            },
        ),
        ("app_terminated_event", {"appId": "/app5"}),
        ("api_post_event", {"appDefinition": {"id": "/zz", "portDefinitions": [{"port": 10001}]}}),
    ]


def test_cache_gives_the_same_model_as_a_fresh_build() -> None:
    apps = [
        host_app(
            f"/app{i}",
            ports=(10000 + i,),
            tasks=[running(f"t{i}.{j}", f"agent{j % 3 + 1}", (31000 + j,)) for j in range(3)],
            healthChecks=[{"protocol": "TCP"}] if i == 2 else [],
        )
        for i in range(8)
    ]
    for app in apps:
        for task in app["tasks"]:
            task["healthCheckResults"] = [{"alive": True}]
    state = MarathonState.from_apps(apps)
    translator, cache = MarathonTranslator(), BuildCache()
    hosts = dict(HOSTS)
    steps = [*event_sequence(), ("dns", {}), ("settings", {})]
    settings = SETTINGS
    for event_type, data in steps:
        if event_type == "dns":
            hosts["agent1"] = "10.0.0.99"
        elif event_type == "settings":
            settings = RenderSettings(passive_checks=False)
        else:
            state = state.apply_event(event_type, data).state
        catalog = translator.translate(state)
        cached = build_model(catalog, settings, hosts.get, cache)
        fresh = build_model(catalog, settings, hosts.get)
        assert cached == fresh
    assert len(cache) == len(catalog) == len(state.apps)
    assert any(s.address == "10.0.0.99" for b in fresh.backends for s in b.servers)


def test_cache_reuses_unchanged_apps() -> None:
    apps = [host_app(f"/a{i}", ports=(10000 + i,), tasks=[running(f"t{i}")]) for i in range(3)]
    state = MarathonState.from_apps(apps)
    translator, cache = MarathonTranslator(), BuildCache()
    first = build_model(translator.translate(state), SETTINGS, HOSTS.get, cache)
    state2 = state.apply_event(
        "status_update_event", {"appId": "/a1", "taskId": "t1", "taskStatus": "TASK_KILLED"}
    ).state
    second = build_model(translator.translate(state2), SETTINGS, HOSTS.get, cache)
    # unchanged apps keep the very same backend objects; the changed one is rebuilt
    assert second.backends[0] is first.backends[0] and second.backends[2] is first.backends[2]
    assert second.backends[1].servers == ()
