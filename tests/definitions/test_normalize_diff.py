"""Normalization (Marathon's defaults and translations), comparable form, and diff."""

from __future__ import annotations

import copy
import json

import pytest

from marathon_bridge.definitions import (
    MISSING,
    Change,
    comparable,
    diff_apps,
    normalize_app,
    same_json,
)
from testkit.examples import EXAMPLES


def all_example_apps() -> list[dict]:
    apps = []
    for path in sorted(EXAMPLES.rglob("*.json")):
        data = json.loads(path.read_text())
        if (
            isinstance(data, dict)
            and "id" in data
            and ("cmd" in data or "container" in data or "args" in data)
        ):
            apps.append(data)
        if isinstance(data, dict) and isinstance(data.get("apps"), list):
            apps.extend(a for a in data["apps"] if isinstance(a, dict))
    return apps


def test_defaults_of_a_minimal_host_app() -> None:
    assert normalize_app({"id": "web", "cmd": "sleep 1"}) == {
        "id": "/web",
        "cmd": "sleep 1",
        "instances": 1,
        "cpus": 1.0,
        "mem": 128.0,
        "disk": 0.0,
        "gpus": 0,
        "backoffSeconds": 1,
        "backoffFactor": 1.15,
        "maxLaunchDelaySeconds": 300,
        "executor": "",
        "requirePorts": False,
        "killSelection": "YOUNGEST_FIRST",
        "role": "*",
        "labels": {},
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": 0, "name": "default", "protocol": "tcp"}],
        "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
        "unreachableStrategy": {"inactiveAfterSeconds": 0, "expungeAfterSeconds": 0},
    }


def test_input_is_never_mutated() -> None:
    app = {
        "id": "a",
        "cmd": "x",
        "ports": [0],
        "container": {"docker": {"image": "i", "network": "BRIDGE", "portMappings": [{}]}},
    }
    before = copy.deepcopy(app)
    normalize_app(app)
    comparable(app)
    assert app == before


def test_unknown_fields_are_kept_untouched() -> None:
    extra = {"nested": [1, {"x": None}], "n": 1}
    out = normalize_app(
        {
            "id": "/a",
            "cmd": "x",
            "somethingNew": extra,
            "container": {"type": "MESOS", "docker": {"image": "i", "future": True}},
        }
    )
    assert out["somethingNew"] == extra
    assert out["container"]["docker"]["future"] is True


def test_bridge_app_from_legacy_docker_fields() -> None:
    out = normalize_app(
        {
            "id": "/b",
            "container": {
                "type": "DOCKER",
                "docker": {
                    "image": "nginx",
                    "network": "BRIDGE",
                    "portMappings": [{"containerPort": 80}],
                },
            },
        }
    )
    assert out["networks"] == [{"mode": "container/bridge"}]
    assert out["container"]["portMappings"] == [
        {"containerPort": 80, "hostPort": 0, "servicePort": 0, "protocol": "tcp", "labels": {}}
    ]
    assert "network" not in out["container"]["docker"]
    assert "portMappings" not in out["container"]["docker"]
    assert "portDefinitions" not in out
    assert out["container"]["docker"] == {
        "image": "nginx",
        "forcePullImage": False,
        "privileged": False,
        "parameters": [],
    }
    assert out["container"]["volumes"] == []


def test_container_network_gets_default_mapping_without_host_port() -> None:
    out = normalize_app({"id": "/c", "cmd": "x", "networks": [{"name": "dcos"}]})
    assert out["networks"] == [{"name": "dcos", "mode": "container"}]
    assert out["container"] == {
        "type": "MESOS",
        "portMappings": [
            {
                "containerPort": 0,
                "name": "default",
                "servicePort": 0,
                "protocol": "tcp",
                "labels": {},
            }
        ],
        "volumes": [],
    }


def test_ip_address_becomes_networks_and_mappings() -> None:
    out = normalize_app(
        {
            "id": "/p",
            "cmd": "x",
            "ipAddress": {
                "networkName": "dcos",
                "discovery": {"ports": [{"name": "p", "number": 7777, "protocol": "tcp"}]},
            },
        }
    )
    assert "ipAddress" not in out
    assert out["networks"] == [{"mode": "container", "name": "dcos"}]
    assert out["container"]["type"] == "MESOS"
    assert out["container"]["portMappings"] == [
        {"containerPort": 7777, "name": "p", "protocol": "tcp", "servicePort": 0, "labels": {}}
    ]


def test_host_mode_drops_port_mappings_and_ports_become_port_definitions() -> None:
    out = normalize_app(
        {
            "id": "/h",
            "cmd": "x",
            "ports": [8080, 0],
            "container": {"type": "MESOS", "portMappings": [{"containerPort": 1}]},
        }
    )
    assert out["portDefinitions"] == [
        {"port": 8080, "protocol": "tcp"},
        {"port": 0, "protocol": "tcp"},
    ]
    assert "ports" not in out
    assert "portMappings" not in out["container"]


def test_non_host_app_gets_one_mapping_per_port_definition() -> None:
    out = normalize_app(
        {
            "id": "/b",
            "cmd": "x",
            "ports": [0, 0, 0],
            "container": {"docker": {"image": "i", "network": "BRIDGE"}},
        }
    )
    assert len(out["container"]["portMappings"]) == 3
    assert "portDefinitions" not in out
    assert out["requirePorts"] is False


def test_uris_become_fetch() -> None:
    out = normalize_app({"id": "/u", "cmd": "x", "uris": ["http://h/a.tar.gz", "http://h/b.py"]})
    assert "uris" not in out
    assert out["fetch"] == [
        {"uri": "http://h/a.tar.gz", "extract": True, "executable": False, "cache": False},
        {"uri": "http://h/b.py", "extract": False, "executable": False, "cache": False},
    ]


def test_health_and_readiness_defaults() -> None:
    out = normalize_app(
        {
            "id": "/a",
            "cmd": "x",
            "healthChecks": [
                {"protocol": "http", "path": "/h"},
                {"protocol": "COMMAND", "command": {"value": "true"}},
                {"protocol": "TCP", "port": 80},
            ],
            "readinessChecks": [{}],
        }
    )
    http, command, tcp = out["healthChecks"]
    assert http == {
        "protocol": "HTTP",
        "path": "/h",
        "gracePeriodSeconds": 300,
        "intervalSeconds": 60,
        "timeoutSeconds": 20,
        "maxConsecutiveFailures": 3,
        "delaySeconds": 15,
        "ipProtocol": "IPv4",
        "ignoreHttp1xx": False,
        "portIndex": 0,
    }
    assert "portIndex" not in command and "ignoreHttp1xx" not in command
    assert "portIndex" not in tcp and tcp["port"] == 80
    assert out["readinessChecks"] == [
        {
            "name": "readinessCheck",
            "protocol": "HTTP",
            "path": "/",
            "portName": "http-api",
            "intervalSeconds": 30,
            "timeoutSeconds": 10,
            "httpStatusCodesForReady": [200],
            "preserveLastResponse": False,
        }
    ]


def test_constraint_operators_upper_case_and_empty_lists_omitted() -> None:
    out = normalize_app(
        {
            "id": "/a",
            "cmd": "x",
            "constraints": [["hostname", "unique"]],
            "args": [],
            "env": {},
            "healthChecks": [],
        }
    )
    assert out["constraints"] == [["hostname", "UNIQUE"]]
    assert "args" not in out and "env" not in out and "healthChecks" not in out


def test_resident_apps_get_resident_strategies() -> None:
    volume = {"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}
    out = normalize_app(
        {
            "id": "/r",
            "cmd": "x",
            "container": {"type": "MESOS", "volumes": [volume]},
            "residency": {},
        }
    )
    assert out["upgradeStrategy"] == {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.0}
    assert out["unreachableStrategy"] == "disabled"


def test_wrong_types_are_left_alone() -> None:
    weird = {
        "id": 5,
        "cmd": "x",
        "instances": "many",
        "networks": "host",
        "container": "docker",
        "portDefinitions": [1, "a"],
    }
    out = normalize_app(weird)
    for key in ("id", "instances", "networks", "container", "portDefinitions"):
        assert out[key] == weird[key]


def test_non_mapping_normalizes_to_empty() -> None:
    assert normalize_app([1, 2]) == {}  # type: ignore[arg-type]


@pytest.mark.parametrize("app", all_example_apps(), ids=lambda a: str(a.get("id")))
def test_normalize_is_idempotent_on_examples(app: dict) -> None:
    once = normalize_app(app)
    assert normalize_app(once) == once


def test_examples_found() -> None:
    assert len(all_example_apps()) >= 15


# ----------------------------------------------------------------------------- comparable


def test_comparable_drops_what_marathon_owns() -> None:
    live = {
        "id": "/a",
        "cmd": "x",
        "version": "2020-01-01T00:00:00.000Z",
        "versionInfo": {"lastScalingAt": "x", "lastConfigChangeAt": "y"},
        "tasksStaged": 0,
        "tasksRunning": 1,
        "tasksHealthy": 1,
        "tasksUnhealthy": 0,
        "deployments": [],
        "tasks": [{"id": "t"}],
        "lastTaskFailure": {},
        "readinessCheckResults": [],
        "taskStats": {},
        "tasksStats": {},
    }
    assert comparable(live) == comparable({"id": "a", "cmd": "x"})


# ----------------------------------------------------------------------------- diff


def test_new_app() -> None:
    [change] = diff_apps({"id": "a", "cmd": "x"}, None)
    assert change.path == "/" and change.old is MISSING
    assert change.new == comparable({"id": "a", "cmd": "x"})


def test_same_app_with_defaults_spelled_out_has_no_changes() -> None:
    desired = {"id": "web", "cmd": "x", "mem": 128, "labels": {}, "env": {}}
    live = {**normalize_app(desired), "version": "2020-01-01T00:00:00.000Z", "tasksRunning": 1}
    assert diff_apps(desired, live) == []


def test_instances_change() -> None:
    desired = {"id": "/web", "cmd": "x", "instances": 3}
    live = normalize_app({"id": "/web", "cmd": "x", "instances": 1})
    assert diff_apps(desired, live) == [Change("/instances", 1, 3)]


def test_label_added_removed_changed() -> None:
    desired = {"id": "/web", "cmd": "x", "labels": {"HAPROXY_GROUP": "external", "keep": "1"}}
    live = normalize_app(
        {"id": "/web", "cmd": "x", "labels": {"HAPROXY_GROUP": "internal", "keep": "1", "old": "y"}}
    )
    assert diff_apps(desired, live) == [
        Change("/labels/HAPROXY_GROUP", "internal", "external"),
        Change("/labels/old", "y", MISSING),
    ]


def test_assigned_service_ports_are_not_differences() -> None:
    desired = {"id": "/web", "cmd": "x", "portDefinitions": [{"port": 0}, {"port": 9000}]}
    live = normalize_app(
        {"id": "/web", "cmd": "x", "portDefinitions": [{"port": 10001}, {"port": 10002}]}
    )
    assert diff_apps(desired, live) == [Change("/portDefinitions(1)/port", 10002, 9000)]
    bridged_desired = {
        "id": "/b",
        "container": {
            "docker": {"image": "i", "network": "BRIDGE", "portMappings": [{"containerPort": 80}]}
        },
    }
    bridged_live = normalize_app(bridged_desired)
    bridged_live["container"]["portMappings"][0]["servicePort"] = 10005
    assert diff_apps(bridged_desired, bridged_live) == []


def test_default_port_definition_matches_assigned_port() -> None:
    live = normalize_app({"id": "/web", "cmd": "x"})
    live["portDefinitions"][0]["port"] = 10000
    assert diff_apps({"id": "/web", "cmd": "x"}, live) == []


def test_list_lengths_differ() -> None:
    desired = {
        "id": "/w",
        "cmd": "x",
        "portDefinitions": [{"port": 0}, {"port": 0, "name": "admin"}],
    }
    live = normalize_app({"id": "/w", "cmd": "x", "portDefinitions": [{"port": 10000}]})
    assert diff_apps(desired, live) == [
        Change("/portDefinitions(1)", MISSING, {"port": 0, "name": "admin", "protocol": "tcp"})
    ]


def test_fields_marathon_drops_are_not_differences() -> None:
    desired = {
        "id": "/w",
        "cmd": "x",
        "somethingNew": 1,
        "container": {"type": "MESOS", "docker": {"image": "i", "requirePorts": True}},
    }
    live = normalize_app(
        {"id": "/w", "cmd": "x", "container": {"type": "MESOS", "docker": {"image": "i"}}}
    )
    assert diff_apps(desired, live) == []


def test_constraint_order_does_not_matter() -> None:
    desired = {"id": "/w", "cmd": "x", "constraints": [["a", "UNIQUE"], ["b", "CLUSTER", "x"]]}
    live = normalize_app(
        {"id": "/w", "cmd": "x", "constraints": [["b", "CLUSTER", "x"], ["a", "unique"]]}
    )
    assert diff_apps(desired, live) == []


def test_legacy_spelling_matches_canonical_live_app() -> None:
    desired = {"id": "/w", "cmd": "x", "uris": ["http://h/a.zip"], "ports": [0]}
    live = {
        "id": "/w",
        "cmd": "x",
        "fetch": [{"uri": "http://h/a.zip", "extract": True, "executable": False, "cache": False}],
        "portDefinitions": [{"port": 10003, "protocol": "tcp"}],
    }
    assert diff_apps(desired, live) == []


def test_type_changes_are_differences() -> None:
    desired = {"id": "/w", "cmd": "x", "requirePorts": True}
    live = normalize_app({"id": "/w", "cmd": "x"})
    assert diff_apps(desired, live) == [Change("/requirePorts", False, True)]


def test_same_json() -> None:
    assert same_json(1, 1.0)
    assert not same_json(True, 1)
    assert not same_json(0, False)
    assert same_json({"a": [1, {"b": None}]}, {"a": [1.0, {"b": None}]})
    assert not same_json({"a": 1}, {"a": 1, "b": 2})
    assert not same_json("1", 1)


def test_missing_is_a_falsy_singleton() -> None:
    assert not MISSING
    assert repr(MISSING) == "MISSING"
    assert copy.deepcopy(MISSING) is MISSING
    assert type(MISSING)() is MISSING
