"""Offline validation: Marathon's paths and messages, every problem at once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge.definitions import (
    AppSource,
    human_message,
    load_definitions,
    validate_app,
    validate_apps,
)
from marathon_bridge.errors import Issue
from testkit.examples import EXAMPLES

RESERVED = (
    "must not end with any of the following reserved keywords: restart, tasks, versions, ., .."
)


def app(**fields: Any) -> dict:
    base: dict[str, Any] = {"id": "/web", "cmd": "python3 -m http.server $PORT0"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def found(definition: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(i.path, i.message) for i in validate_app(definition)}


def kinds(definition: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    return {(i.path, i.message): i.kind for i in validate_app(definition)}


def test_minimal_app_is_valid() -> None:
    assert validate_app(app()) == []


# ---------------------------------------------------------------- "Done when" bad definitions


@pytest.mark.parametrize(
    ("definition", "path", "message", "kind"),
    [
        (app(id="My_App"), "/id", "error.pattern", "type"),
        (
            app(args=["sleep", "1"]),
            "/",
            "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.",
            "semantic",
        ),
        (app(instances=-1), "/instances", "error.min", "type"),
        (app(mem="lots"), "/mem", "error.expected.jsnumber", "type"),
        (
            app(healthChecks=[{"protocol": "SMTP"}]),
            "/healthChecks(0)/protocol",
            "error.unknown.enum.literal",
            "type",
        ),
        (
            app(constraints=[["hostname", "SOMETIMES"]]),
            "/constraints(0)",
            "Constraint operator must be one of the following "
            "UNIQUE, CLUSTER, GROUP_BY, LIKE, MAX_PER, UNLIKE or IS",
            "semantic",
        ),
        (
            app(upgradeStrategy={"minimumHealthCapacity": 2, "maximumOverCapacity": 0}),
            "/upgradeStrategy/minimumHealthCapacity",
            "error.max",
            "type",
        ),
    ],
)
def test_done_when_bad_definitions(definition: dict, path: str, message: str, kind: str) -> None:
    assert kinds(definition).get((path, message)) == kind


def test_every_problem_is_reported_at_once() -> None:
    bad = app(id="Bad Id", args=["x"], instances=-1, mem="lots", cpus=0, labels={"a": 1})
    assert {
        ("/id", "error.pattern"),
        ("/instances", "error.min"),
        ("/mem", "error.expected.jsnumber"),
        ("/cpus", "error.min"),
        ("/labels/a", "error.expected.jsstring"),
        ("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."),
    } <= found(bad)


def test_not_an_object() -> None:
    assert validate_app(["x"]) == [Issue("/", "error.expected.jsobject", kind="type")]  # type: ignore[arg-type]


def test_source_is_filled_in() -> None:
    [issue] = validate_app(app(instances="2"), source="apps.yaml#[1]")
    assert issue.source == "apps.yaml#[1]"
    assert str(issue) == "apps.yaml#[1]: /instances: error.expected.jsnumber"


# ---------------------------------------------------------------- ids


@pytest.mark.parametrize(
    "good", ["web", "/web", "/prod/web-1", "/a.b-c/d", "a/../b", "/x/./y"[:-4] + "y"]
)
def test_good_ids(good: str) -> None:
    assert validate_app(app(id=good)) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("Web", "error.pattern"),
        ("/-web", "error.pattern"),
        ("/web-", "error.pattern"),
        ("/a_b", "error.pattern"),
        ("/a b", "error.pattern"),
        ("/", "Path must contain at least one path element"),
        ("", "error.minLength"),
        (
            "/web/restart",
            RESERVED,
        ),
        (
            "/web/tasks",
            RESERVED,
        ),
        (
            "/web/..",
            RESERVED,
        ),
    ],
)
def test_bad_ids(bad: str, message: str) -> None:
    assert ("/id", message) in found(app(id=bad))


def test_missing_and_mistyped_id() -> None:
    assert found({"cmd": "ls"}) == {("/id", "error.path.missing")}
    assert found({"id": 5, "cmd": "ls"}) == {("/id", "error.expected.jsstring")}


def test_dependencies_are_ids() -> None:
    assert ("/dependencies(1)", "error.pattern") in found(app(dependencies=["/ok", "Not OK"]))


# ---------------------------------------------------------------- cmd / args / container


def test_cmd_args_container() -> None:
    message = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
    assert ("/", message) in found(app(cmd=...))
    assert found(app(cmd=..., args=["sleep", "1"])) == set()
    assert ("/", message) in found(app(args=["sleep"]))
    docker = {"type": "DOCKER", "docker": {"image": "nginx"}}
    assert found(app(cmd=..., container=docker)) == set()
    assert found(app(container=docker)) == set()
    assert ("/", message) in found(app(cmd=..., container={"type": "MESOS"}))
    assert found(app(cmd=..., container={"type": "MESOS", "docker": {"image": "nginx"}})) == set()


def test_cmd_length() -> None:
    assert ("/cmd", "error.minLength") in found(app(cmd=""))
    assert ("/", "must not be an empty string") in found(app(cmd="x"))
    assert found(app(cmd="ls")) == set()


def test_docker_container_needs_an_image() -> None:
    assert ("/container/docker/image", "error.path.missing") in found(app(container={"docker": {}}))
    assert ("/container/docker/image", "error.minLength") in found(
        app(container={"docker": {"image": ""}})
    )
    assert ("/container/docker", "not defined") in found(app(container={"type": "DOCKER"}))
    assert ("/container/type", "error.unknown.enum.literal") in found(
        app(container={"type": "RKT"})
    )


def test_container_type_is_case_insensitive() -> None:
    assert found(app(container={"type": "docker", "docker": {"image": "nginx"}})) == set()


def test_mesos_container_refuses_docker_only_fields() -> None:
    container = {
        "type": "MESOS",
        "docker": {"image": "x", "network": "BRIDGE", "parameters": [{"key": "a", "value": "b"}]},
    }
    problems = found(app(container=container))
    assert ("/container/docker/network", "must be empty") in problems
    assert ("/container/docker/parameters", "must be empty") in problems


def test_gpus_with_docker() -> None:
    docker = {"type": "DOCKER", "docker": {"image": "x"}}
    assert ("/", "GPU resources only work with the Mesos containerizer") in found(
        app(gpus=1, container=docker)
    )
    assert ("/gpus", "error.min") in found(app(gpus=-1))
    assert ("/gpus", "error.expected.int") in found(app(gpus=0.5))


# ---------------------------------------------------------------- resources and scalars


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("instances", 1.5, "error.expected.int"),
        ("instances", 2**31, "error.expected.int"),
        ("instances", True, "error.expected.jsnumber"),
        ("cpus", 0.0001, "error.min"),
        ("cpus", "1", "error.expected.jsnumber"),
        ("mem", -1, "error.min"),
        ("disk", -0.5, "error.min"),
        ("backoffFactor", 0.5, "error.min"),
        ("backoffSeconds", -1, "error.min"),
        ("maxLaunchDelaySeconds", -1, "error.min"),
        ("taskKillGracePeriodSeconds", -1, "error.min"),
        ("requirePorts", "yes", "error.expected.jsboolean"),
        ("labels", ["a"], "error.expected.jsobject"),
        ("args", "sleep 1", "error.expected.jsarray"),
        ("killSelection", "RANDOM", "error.unknown.enum.literal"),
        ("executor", "a//b", "error.pattern"),
        ("role", "", "error.minLength"),
    ],
)
def test_scalar_types_and_ranges(field: str, value: Any, message: str) -> None:
    assert (f"/{field}", message) in found(app(**{field: value}))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("instances", 0),
        ("instances", 3.0),
        ("cpus", 0.001),
        ("mem", 0),
        ("killSelection", "oldest_first"),
        ("executor", "//cmd"),
        ("executor", ""),
        ("user", None),
    ],
)
def test_scalar_edges_are_valid(field: str, value: Any) -> None:
    assert found(app(**{field: value})) == set()


def test_unknown_top_level_fields_are_not_errors() -> None:
    assert validate_app(app(somethingNew={"x": [1, 2]}, tasksRunning=3)) == []


def test_label_values_must_be_strings() -> None:
    assert found(app(labels={"HAPROXY_GROUP": "external", "weight": 3, "on": True})) == {
        ("/labels/weight", "error.expected.jsstring"),
        ("/labels/on", "error.expected.jsstring"),
    }


def test_env_values_are_strings_or_secret_refs() -> None:
    ok = app(env={"A": "1", "B": {"secret": "db"}}, secrets={"db": {"source": "/db/password"}})
    assert found(ok) == set()
    assert ("/env/N", "error.expected.jsstring") in found(app(env={"N": 3}))
    assert ("/env/S/secret", "error.path.missing") in found(app(env={"S": {"name": "db"}}))
    assert ("/env/S/secret", "references an undefined secret") in found(
        app(env={"S": {"secret": "db"}})
    )


def test_upgrade_strategy_needs_both_fields() -> None:
    assert found(app(upgradeStrategy={"minimumHealthCapacity": 0.5})) == {
        ("/upgradeStrategy/maximumOverCapacity", "error.path.missing")
    }
    assert ("/upgradeStrategy/maximumOverCapacity", "error.min") in found(
        app(upgradeStrategy={"minimumHealthCapacity": 0.5, "maximumOverCapacity": -0.1})
    )
    assert (
        found(app(upgradeStrategy={"minimumHealthCapacity": 0, "maximumOverCapacity": 1})) == set()
    )


def test_unreachable_strategy() -> None:
    assert found(app(unreachableStrategy="disabled")) == set()
    assert (
        found(app(unreachableStrategy={"inactiveAfterSeconds": 10, "expungeAfterSeconds": 20}))
        == set()
    )
    assert ("/unreachableStrategy", "error.unknown.enum.literal") in found(
        app(unreachableStrategy="sometimes")
    )
    assert ("/unreachableStrategy/inactiveAfterSeconds", "error.min") in found(
        app(unreachableStrategy={"inactiveAfterSeconds": -1})
    )
    assert ("/unreachableStrategy/inactiveAfterSeconds", "got 30, expected 20 or less") in found(
        app(unreachableStrategy={"inactiveAfterSeconds": 30, "expungeAfterSeconds": 20})
    )
    assert ("/unreachableStrategy", "error.expected.jsobject") in found(app(unreachableStrategy=5))


def test_fetch_and_uris() -> None:
    assert ("/uris", "may not be set in conjunction with fetch") in found(
        app(uris=["http://a/x"], fetch=[{"uri": "http://a/y"}])
    )
    assert ("/fetch(0)/uri", "error.path.missing") in found(app(fetch=[{"extract": True}]))
    assert ("/fetch(0)/uri", "error.maxLength") in found(app(fetch=[{"uri": "h" * 1025}]))
    assert found(app(uris=["http://a/x.tgz"])) == set()


def test_single_instance_label() -> None:
    labels = {"MARATHON_SINGLE_INSTANCE_APP": "true"}
    assert ("/", "Single instance app may only have one instance") in found(
        app(labels=labels, instances=2)
    )


def test_residency_needs_persistent_volumes() -> None:
    assert ("/", "App must contain persistent volumes and define residency") in found(
        app(residency={})
    )


# ---------------------------------------------------------------- networks and ports


def test_networks_modes_and_mixing() -> None:
    mixed = app(networks=[{"mode": "host"}, {"mode": "container/bridge"}])
    assert (
        "/networks",
        "May specify a single host network, single bridge network, "
        "or else 1-to-n container networks",
    ) in found(mixed)
    assert ("/networks(0)/mode", "error.unknown.enum.literal") in found(
        app(networks=[{"mode": "overlay"}])
    )
    assert ("/networks", "Host networks may not have names or labels") in found(
        app(networks=[{"mode": "host", "name": "x"}])
    )
    assert ("/networks", "Bridge networks may not have names") in found(
        app(networks=[{"mode": "container/bridge", "name": "x"}])
    )
    dup = app(networks=[{"mode": "container", "name": "a"}, {"mode": "container", "name": "a"}])
    assert ("/networks", "Duplicate networks are not allowed") in found(dup)


def test_container_network_needs_a_name_unless_marathon_has_a_default() -> None:
    unnamed = app(networks=[{"mode": "container"}])
    message = "Network name must be specified when container network is selected."
    assert ("/", message) in found(unnamed)
    assert validate_app(unnamed, default_network_name="dcos") == []
    assert found(app(networks=[{"name": "dcos"}])) == set()  # mode defaults to container


def test_docker_engine_allows_one_container_network() -> None:
    two = app(
        container={"type": "DOCKER", "docker": {"image": "x"}},
        networks=[{"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}],
    )
    assert (
        "/",
        "may only specify a single container network when using the Docker container engine",
    ) in found(two)


def test_port_mappings_not_allowed_with_host_networking() -> None:
    bad = app(
        networks=[{"mode": "host"}],
        container={"type": "MESOS", "portMappings": [{"containerPort": 80}]},
    )
    assert ("/", "portMappings are not allowed with host-networking") in found(bad)


def test_port_definitions_only_with_host_networking() -> None:
    bad = app(networks=[{"mode": "container/bridge"}], portDefinitions=[{"port": 0}])
    assert ("/", "portDefinitions are only allowed with host-networking") in found(bad)


def test_legacy_networking_drops_ports_that_do_not_apply() -> None:
    # Marathon silently drops legacy ports of a bridged docker app (AppNormalization)
    legacy = app(
        cmd=...,
        ports=[5000],
        container={"type": "DOCKER", "docker": {"image": "registry", "network": "BRIDGE"}},
    )
    assert validate_app(legacy) == []


@pytest.mark.parametrize(
    ("mapping", "path", "message"),
    [
        ({"containerPort": 70000}, "/container/portMappings(0)/containerPort", "error.max"),
        ({"hostPort": -1}, "/container/portMappings(0)/hostPort", "error.min"),
        (
            {"servicePort": "80"},
            "/container/portMappings(0)/servicePort",
            "error.expected.jsnumber",
        ),
        ({"protocol": "sctp"}, "/container/portMappings(0)/protocol", "error.unknown.enum.literal"),
        ({"name": "Web_Port"}, "/container/portMappings(0)/name", "error.pattern"),
    ],
)
def test_port_mapping_fields(mapping: dict, path: str, message: str) -> None:
    bridged = app(
        networks=[{"mode": "container/bridge"}],
        container={"type": "DOCKER", "docker": {"image": "x"}, "portMappings": [mapping]},
    )
    assert (path, message) in found(bridged)


def test_port_protocols() -> None:
    for protocol in ("tcp", "udp", "udp,tcp", "TCP"):
        assert found(app(portDefinitions=[{"port": 0, "protocol": protocol}])) == set()
    assert ("/portDefinitions(0)/protocol", "error.unknown.enum.literal") in found(
        app(portDefinitions=[{"protocol": "tcp,udp"}])
    )


def test_port_definitions_names_and_numbers() -> None:
    assert ("/portDefinitions(1)/port", "error.max") in found(
        app(portDefinitions=[{"port": 80}, {"port": 65536}])
    )
    dupe_names = app(portDefinitions=[{"port": 0, "name": "http"}, {"port": 0, "name": "http"}])
    assert ("/portDefinitions", "Port names must be unique.") in found(dupe_names)
    dupe_ports = app(portDefinitions=[{"port": 8080}, {"port": 8080}, {"port": 0}, {"port": 0}])
    assert found(dupe_ports) == {("/portDefinitions", "Ports must be unique.")}
    assert found(app(portDefinitions=[])) == set()


def test_port_mapping_names_unique() -> None:
    mappings = [{"containerPort": 80, "name": "web"}, {"containerPort": 81, "name": "web"}]
    bridged = app(
        networks=[{"mode": "container/bridge"}],
        container={"type": "MESOS", "portMappings": mappings},
    )
    assert ("/container/portMappings", "Port names must be unique.") in found(bridged)


def test_legacy_ports() -> None:
    assert ("/", "ports must be unique") in found(app(ports=[8080, 8080]))
    assert found(app(ports=[0, 0])) == set()
    assert ("/ports(0)", "error.max") in found(app(ports=[70000]))
    mismatch = app(ports=[1000], portDefinitions=[{"port": 2000}])
    assert ("/", "cannot specify both ports and port definitions") in found(mismatch)
    assert ("/", "cannot specify both an IP address and port") in found(
        app(ports=[1], ipAddress={"networkName": "n"})
    )
    assert ("/", "must not specify both networks and ipAddress") in found(
        app(ipAddress={"networkName": "n"}, networks=[{"mode": "container", "name": "n"}])
    )


def test_port_mappings_in_two_places() -> None:
    container = {
        "docker": {"image": "x", "portMappings": [{"containerPort": 1}]},
        "portMappings": [],
    }
    assert ("/container", "cannot specify both portMappings and docker.portMappings") in found(
        app(container=container)
    )
    discovery = {"discovery": {"ports": [{"name": "p", "number": 1}]}}
    both = app(
        ipAddress=discovery, container={"type": "MESOS", "portMappings": [{"containerPort": 1}]}
    )
    assert (
        "/",
        "container.portMappings and ipAddress.discovery.ports must not both be set",
    ) in found(both)


def test_docker_network_and_networks_together() -> None:
    both = app(
        container={"docker": {"image": "x", "network": "BRIDGE"}},
        networks=[{"mode": "container/bridge"}],
    )
    assert ("/", "must not specify both container.docker.network and networks") in found(both)


def test_multiple_container_networks_need_network_names_for_host_ports() -> None:
    definition = app(
        networks=[{"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}],
        container={
            "type": "MESOS",
            "portMappings": [
                {"containerPort": 80, "hostPort": 0},
                {"containerPort": 81, "networkNames": ["c"]},
            ],
        },
    )
    problems = found(definition)
    assert any(
        path == "/container/portMappings(0)" and "networkNames must be a single item list" in m
        for path, m in problems
    )
    assert ("/container/portMappings(1)/networkNames(0)", "is not one of (a,b)") in problems


# ---------------------------------------------------------------- health and readiness checks


def test_health_checks() -> None:
    assert found(app(healthChecks=[{"protocol": "http", "path": "/health"}])) == set()
    assert (
        "/healthChecks(0)",
        "Health check port indices must address an element of the ports array "
        "or container port mappings.",
    ) in found(app(healthChecks=[{"protocol": "HTTP", "portIndex": 1}]))
    assert (
        found(
            app(
                portDefinitions=[{"port": 0}, {"port": 0}],
                healthChecks=[{"protocol": "TCP", "portIndex": 1}],
            )
        )
        == set()
    )
    two_mesos = app(healthChecks=[{"protocol": "MESOS_HTTP"}, {"protocol": "MESOS_TCP"}])
    assert ("/", "AppDefinition can contain at most one Mesos health check") in found(two_mesos)
    assert ("/healthChecks(0)/intervalSeconds", "error.min") in found(
        app(healthChecks=[{"intervalSeconds": -1}])
    )
    assert ("/healthChecks(0)/gracePeriodSeconds", "error.expected.int") in found(
        app(healthChecks=[{"gracePeriodSeconds": 1.5}])
    )
    assert ("/healthChecks(0)/timeoutSeconds", "got -1, expected 0 or more") in found(
        app(healthChecks=[{"timeoutSeconds": -1}])
    )
    assert (
        "/healthChecks(0)/path",
        "path is only allowed with HTTP, HTTPS, MESOS_HTTP and MESOS_HTTPS health checks",
    ) in found(app(healthChecks=[{"protocol": "TCP", "path": "/"}]))
    assert ("/healthChecks(0)/command", "command is required for COMMAND health checks") in found(
        app(healthChecks=[{"protocol": "COMMAND"}])
    )
    assert ("/healthChecks(0)/command/value", "error.path.missing") in found(
        app(healthChecks=[{"protocol": "COMMAND", "command": {}}])
    )
    assert found(app(healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"}}])) == set()
    assert (
        "/healthChecks(0)/ipProtocol",
        "IPv6 can only be used for container type DOCKER and Mesos http/https/tcp health checks",
    ) in found(app(healthChecks=[{"protocol": "HTTP", "ipProtocol": "IPv6"}]))
    assert ("/healthChecks", "error.expected.jsarray") in found(
        app(healthChecks={"protocol": "HTTP"})
    )


def test_readiness_checks() -> None:
    ports = [{"port": 0, "name": "api"}]
    assert (
        found(
            app(
                portDefinitions=ports,
                readinessChecks=[{"portName": "api", "intervalSeconds": 2, "timeoutSeconds": 1}],
            )
        )
        == set()
    )
    assert (
        "/readinessChecks(0)/portName",
        "No port definition reference for portName http-api",
    ) in found(app(readinessChecks=[{}]))
    assert ("/readinessChecks(0)/timeoutSeconds", "got 5, expected less than 5") in found(
        app(
            portDefinitions=ports,
            readinessChecks=[{"portName": "api", "intervalSeconds": 5, "timeoutSeconds": 5}],
        )
    )
    assert ("/readinessChecks", "got 2, expected 1 or less") in found(
        app(portDefinitions=ports, readinessChecks=[{"portName": "api"}, {"portName": "api"}])
    )
    assert ("/readinessChecks(0)/protocol", "error.unknown.enum.literal") in found(
        app(readinessChecks=[{"protocol": "TCP"}])
    )
    assert ("/readinessChecks(0)/httpStatusCodesForReady", "error.minLength") in found(
        app(readinessChecks=[{"httpStatusCodesForReady": []}])
    )
    assert ("/readinessChecks(0)/httpStatusCodesForReady(0)", "error.min") in found(
        app(readinessChecks=[{"httpStatusCodesForReady": [99]}])
    )


# ---------------------------------------------------------------- constraints


@pytest.mark.parametrize(
    "constraint",
    [
        ["hostname", "UNIQUE"],
        ["hostname", "unique"],
        ["rack", "CLUSTER", "r1"],
        ["rack", "GROUP_BY"],
        ["rack", "GROUP_BY", "3"],
        ["hostname", "LIKE", "srv[0-9]+"],
        ["hostname", "UNLIKE", "db.*"],
        ["rack", "MAX_PER", "2"],
        ["os", "IS", "linux"],
    ],
)
def test_good_constraints(constraint: list) -> None:
    assert found(app(constraints=[constraint])) == set()


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        (["hostname"], "Each constraint must have either 2 or 3 fields"),
        (["a", "UNIQUE", "x", "y"], "Each constraint must have either 2 or 3 fields"),
        (["hostname", "UNIQUE", "x"], "Value specified but not used"),
        (["rack", "CLUSTER"], "Missing value"),
        (["rack", "GROUP_BY", "many"], "Value was specified but is not a number"),
        (["hostname", "LIKE"], "A regular expression value must be provided"),
        (["hostname", "LIKE", "srv[0-9"], "'srv[0-9' is not a valid regular expression"),
        (["rack", "MAX_PER", "two"], "Value was not specified or is not a number"),
        (["rack", "MAX_PER"], "Value was not specified or is not a number"),
    ],
)
def test_bad_constraints(constraint: list, message: str) -> None:
    assert ("/constraints(0)", message) in found(app(constraints=[constraint]))


def test_constraint_element_types() -> None:
    assert ("/constraints(0)(1)", "error.expected.jsstring") in found(
        app(constraints=[["hostname", 3]])
    )
    assert ("/constraints(0)", "error.expected.jsarray") in found(
        app(constraints=["hostname:UNIQUE"])
    )


# ---------------------------------------------------------------- many apps


def test_validate_apps_reports_duplicate_ids_and_sources() -> None:
    apps = [
        AppSource(app=app(id="web"), source="a.json"),
        AppSource(app=app(id="/web", instances=-1), source="b.yaml#[0]"),
    ]
    issues = validate_apps(apps)
    assert Issue("/instances", "error.min", "b.yaml#[0]", "type") in issues
    assert Issue("/id", "duplicate app id '/web' (also defined in a.json)", "b.yaml#[0]") in issues


# ---------------------------------------------------------------- human messages


@pytest.mark.parametrize(
    ("issue", "text"),
    [
        (
            Issue("/mem", "error.expected.jsnumber"),
            "error.expected.jsnumber: expected a number >= 0",
        ),
        (
            Issue("/instances", "error.expected.int"),
            "error.expected.int: expected a whole number (32-bit) >= 0",
        ),
        (
            Issue("/container/docker/image", "error.path.missing"),
            "error.path.missing: required: a non-empty string",
        ),
        (
            Issue("/upgradeStrategy/minimumHealthCapacity", "error.max"),
            "error.max: must be <= 1",
        ),
        (Issue("/mem", "error.min"), "error.min: must be >= 0"),
        (Issue("/cpus", "error.min"), "error.min: must be >= 0.001"),
        (
            Issue("/container/portMappings(3)/hostPort", "error.max"),
            "error.max: must be <= 65535",
        ),
        (
            Issue("/healthChecks(0)/protocol", "error.unknown.enum.literal"),
            "error.unknown.enum.literal: one of HTTP, HTTPS, TCP, COMMAND, MESOS_TCP, MESOS_HTTP, "
            "MESOS_HTTPS",
        ),
        (Issue("/cmd", "error.minLength"), "error.minLength: must not be empty"),
        (
            Issue("/readinessChecks(0)/httpStatusCodesForReady", "error.minLength"),
            "error.minLength: at least 1 item",
        ),
        (
            Issue("/portDefinitions(0)/name", "error.pattern"),
            "error.pattern: must be a name of lowercase letters, digits and '-', "
            "not starting or ending with '-'",
        ),
        (
            Issue("/healthChecks", "error.expected.jsarray"),
            "error.expected.jsarray: expected a list, each an object (command, "
            "gracePeriodSeconds, ignoreHttp1xx, intervalSeconds, maxConsecutiveFailures, path, "
            "port, portIndex, protocol, ipProtocol, timeoutSeconds, delaySeconds)",
        ),
        (
            Issue("/", "portMappings are not allowed with host-networking"),
            "portMappings are not allowed with host-networking",
        ),
        (Issue("/somewhere/else", "error.max"), "error.max: too big"),
    ],
)
def test_human_message(issue: Issue, text: str) -> None:
    assert human_message(issue) == text


def test_human_message_for_ids_explains_the_grammar() -> None:
    assert human_message(Issue("/id", "error.pattern")).startswith(
        "error.pattern: must be an app id: path segments of lowercase letters"
    )


# ---------------------------------------------------------------- the shared examples


def example_apps() -> list[tuple[str, dict]]:
    files = sorted(EXAMPLES.glob("system-test-apps/*.json")) + sorted(
        EXAMPLES.glob("api-docs-*/app-definition*.json")
    )
    out = [(str(f.relative_to(EXAMPLES)), json.loads(f.read_text())) for f in files]
    for group in sorted(EXAMPLES.glob("api-docs-*/group.request.json")):
        out.extend(
            (str(Path(s.source).relative_to(EXAMPLES)), s.app) for s in load_definitions(group)
        )
    return out


# The RAML doc's "full example" app shows every field at once and breaks Marathon's own rules:
# it has both cmd and args, ipAddress discovery on a DOCKER container next to portDefinitions,
# an unnamed container network (no --default_network_name offline), and an env secret
# reference to a secret it does not declare. Marathon refuses it too.
FULL_EXAMPLE_PROBLEMS = {
    ("/ipAddress", "ipAddress/discovery is not allowed for Docker containers"),
    ("/", "cannot specify both an IP address and port"),
    ("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."),
    ("/", "Network name must be specified when container network is selected."),
    ("/env/PASSWORD/secret", "references an undefined secret"),
}


@pytest.mark.parametrize(
    ("name", "definition"), example_apps(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_shared_example_apps(name: str, definition: dict) -> None:
    expected = FULL_EXAMPLE_PROBLEMS if name.endswith("app-definition.full-example.json") else set()
    assert found(definition) == expected


def test_examples_were_found() -> None:
    assert len(example_apps()) >= 15
