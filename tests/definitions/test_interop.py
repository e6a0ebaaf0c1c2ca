"""marathon-python interop: MarathonApp <-> dict without marathon-python's serializer."""

from __future__ import annotations

import builtins
import datetime
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import marathon.models
import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.errors import DefinitionError
from marathon_bridge.interop import (
    from_marathon_app,
    to_camel,
    to_marathon_app,
    to_snake,
    unknown_to_marathon_python,
)
from testkit.examples import EXAMPLES

RICH_APP: dict[str, Any] = {
    "id": "/shop/web",
    "cmd": "python3 -m http.server $PORT0",
    "instances": 2,
    "cpus": 0.25,
    "mem": 64.0,
    "disk": 10,
    "gpus": 0,
    "user": "nobody",
    "env": {"MODE": "prod", "TOKEN": {"secret": "tok"}},
    "secrets": {"tok": {"source": "/shop/token"}},
    "labels": {"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "shop.example.com"},
    "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "3"]],
    "acceptedResourceRoles": ["*"],
    "dependencies": ["/shop/db"],
    "portDefinitions": [
        {"port": 0, "protocol": "tcp", "name": "http", "labels": {"vip": "1.2.3.4:80"}}
    ],
    "requirePorts": False,
    "healthChecks": [
        {
            "protocol": "HTTP",
            "path": "/health",
            "portIndex": 0,
            "gracePeriodSeconds": 30,
            "intervalSeconds": 10,
            "timeoutSeconds": 5,
            "maxConsecutiveFailures": 3,
            "ignoreHttp1xx": False,
        },
        {"protocol": "COMMAND", "command": {"value": "true"}, "delaySeconds": 15},
    ],
    "readinessChecks": [
        {
            "name": "ready",
            "protocol": "HTTP",
            "path": "/ready",
            "portName": "http",
            "intervalSeconds": 30,
            "timeoutSeconds": 10,
            "httpStatusCodesForReady": [200, 204],
            "preserveLastResponse": True,
        }
    ],
    "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25},
    "unreachableStrategy": {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120},
    "killSelection": "OLDEST_FIRST",
    "backoffSeconds": 2,
    "backoffFactor": 1.5,
    "maxLaunchDelaySeconds": 600,
    "taskKillGracePeriodSeconds": 30,
    "fetch": [{"uri": "https://example.com/app.tgz", "extract": True}],
    "executor": "//cmd",
    "role": "shop",
    "version": "2020-01-02T03:04:05.678Z",
    "versionInfo": {
        "lastScalingAt": "2020-01-02T03:04:05.678Z",
        "lastConfigChangeAt": "2020-01-01T00:00:00.000Z",
    },
}

DOCKER_APP: dict[str, Any] = {
    "id": "/bridged",
    "networks": [{"mode": "container/bridge"}],
    "container": {
        "type": "DOCKER",
        "docker": {
            "image": "nginx:1.25",
            "privileged": True,
            "forcePullImage": True,
            "parameters": [{"key": "log-driver", "value": "none"}],
        },
        "portMappings": [
            {
                "containerPort": 80,
                "hostPort": 0,
                "servicePort": 10080,
                "protocol": "tcp",
                "name": "http",
                "labels": {"x": "y"},
            }
        ],
        "volumes": [{"containerPath": "/data", "hostPath": "/srv/data", "mode": "RO"}],
    },
}


def is_within(given: Any, back: Any) -> bool:
    """Every value of ``given`` is in ``back`` unchanged (``back`` may have more)."""
    if isinstance(given, Mapping):
        return isinstance(back, Mapping) and all(
            k in back and is_within(v, back[k]) for k, v in given.items()
        )
    if isinstance(given, list):
        return (
            isinstance(back, list)
            and len(given) == len(back)
            and all(is_within(a, b) for a, b in zip(given, back))
        )
    return bool(given == back) and type(given) is type(back)


@pytest.mark.parametrize("app", [RICH_APP, DOCKER_APP], ids=["rich", "docker"])
def test_round_trip_keeps_every_known_field(app: dict) -> None:
    assert unknown_to_marathon_python(app) == []
    obj = to_marathon_app(app)
    assert isinstance(obj, marathon.models.MarathonApp)
    back = from_marathon_app(obj)
    assert is_within(app, back)
    json.dumps(back)  # plain JSON data


def test_objects_hold_marathon_python_types() -> None:
    obj = to_marathon_app({**RICH_APP, **DOCKER_APP, "portDefinitions": None})
    assert isinstance(obj.container, marathon.models.container.MarathonContainer)
    assert isinstance(obj.container.docker, marathon.models.container.MarathonDockerContainer)
    assert isinstance(obj.health_checks[0], marathon.models.MarathonHealthCheck)
    assert isinstance(obj.constraints[0], marathon.models.MarathonConstraint)
    assert obj.upgrade_strategy.minimum_health_capacity == 0.5
    assert obj.secrets["tok"].source == "/shop/token"
    assert isinstance(obj.version_info.last_scaling_at, datetime.datetime)


def test_serializer_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("module 'collections' has no attribute 'Iterable'")

    monkeypatch.setattr(marathon.models.MarathonObject, "to_json", broken)
    monkeypatch.setattr(marathon.models.MarathonObject, "json_repr", broken)
    monkeypatch.setattr(marathon.models.MarathonConstraint, "json_repr", broken)
    assert from_marathon_app(to_marathon_app(RICH_APP))["id"] == "/shop/web"


def test_unknown_fields_are_reported_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    app = {**DOCKER_APP, "tty": True, "somethingNew": 1, "ipAddress": {"networkName": "dcos"}}
    app["container"] = {**DOCKER_APP["container"], "linuxInfo": {"seccomp": {}}}
    assert unknown_to_marathon_python(app) == [
        "/container/linuxInfo",
        "/tty",
        "/somethingNew",
        "/ipAddress",
    ]
    with caplog.at_level(logging.WARNING, logger="marathon_bridge.interop"):
        back = from_marathon_app(to_marathon_app(app))
    assert "tty" not in back and "ipAddress" not in back
    assert caplog.records[0].fields == [
        "/container/linuxInfo",
        "/tty",
        "/somethingNew",
        "/ipAddress",
    ]  # type: ignore[attr-defined]


def test_strict_refuses_unknown_fields() -> None:
    with pytest.raises(DefinitionError) as caught:
        to_marathon_app({"id": "/a", "cmd": "x", "tty": True}, strict=True)
    assert [(i.path, i.message) for i in caught.value.issues] == [
        ("/tty", "not supported by marathon-python")
    ]


def test_values_marathon_python_refuses_become_definition_errors() -> None:
    with pytest.raises(DefinitionError, match="marathon-python refused"):
        to_marathon_app({"id": "/a", "container": {"type": "RKT"}})
    with pytest.raises(DefinitionError, match="marathon-python refused"):
        to_marathon_app({"id": "Not Valid", "cmd": "x"})


def test_read_only_fields_are_not_passed_but_are_read_back() -> None:
    obj = to_marathon_app(
        {"id": "/a", "cmd": "x", "tasksRunning": 3, "tasks": [{"id": "t1", "unknownKey": 1}]}
    )
    assert obj.tasks == [] and obj.tasks_running is None
    obj.tasks_running = 2
    obj.tasks = [
        marathon.models.MarathonTask(
            id="a.1", host="h", ports=[31000], started_at="2020-01-02T03:04:05.678Z"
        )
    ]
    back = from_marathon_app(obj)
    assert back["tasksRunning"] == 2
    assert back["tasks"] == [
        {"id": "a.1", "host": "h", "ports": [31000], "startedAt": "2020-01-02T03:04:05.678Z"}
    ]


def test_unreachable_disabled_and_constraint_values() -> None:
    obj = to_marathon_app(
        {
            "id": "/a",
            "cmd": "x",
            "unreachableStrategy": "disabled",
            "constraints": [["rack", "MAX_PER", 2]],
        }
    )
    back = from_marathon_app(obj)
    assert back["unreachableStrategy"] == "disabled"
    assert back["constraints"] == [["rack", "MAX_PER", "2"]]


def test_from_marathon_app_needs_a_model_object() -> None:
    with pytest.raises(TypeError):
        from_marathon_app(42)


@pytest.mark.parametrize(
    ("camel", "snake"),
    [
        ("portDefinitions", "port_definitions"),
        ("ignoreHttp1xx", "ignore_http1xx"),
        ("httpStatusCodesForReady", "http_status_codes_for_ready"),
        ("id", "id"),
    ],
)
def test_case_conversion(camel: str, snake: str) -> None:
    assert to_snake(camel) == snake
    assert to_camel(snake) == camel


@pytest.mark.parametrize(
    "path", sorted((EXAMPLES / "system-test-apps").glob("*.json")), ids=lambda p: p.stem
)
def test_system_test_apps_round_trip(path: Path) -> None:
    app = json.loads(path.read_text())
    lost = unknown_to_marathon_python(app)
    back = from_marathon_app(to_marathon_app(app))
    kept = {k: v for k, v in app.items() if f"/{k}" not in lost}
    if "container" in kept and any(p.startswith("/container/") for p in lost):
        kept["container"] = json.loads(json.dumps(kept["container"]))
        kept["container"]["docker"].pop(
            "requirePorts", None
        )  # pinger-bridge-app: not a Marathon field
    assert is_within(kept, back)


def test_missing_marathon_python_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_marathon(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "marathon" or name.startswith("marathon."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_marathon)
    with pytest.raises(ImportError, match=r"pip install 'marathon-bridge\[marathon-python\]'"):
        to_marathon_app({"id": "/a", "cmd": "x"})


def readme_block(heading: str) -> str:
    """The first python code block after ``heading`` in the README."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index(heading) :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```\n", start)]


def test_the_readme_marathon_python_example_runs() -> None:
    from marathon_bridge.testing import MarathonEmulator

    with MarathonEmulator() as marathon:
        client = MarathonClient(marathon.url)
        client.create_app({"id": "/web", "cmd": "sleep 100", "instances": 2})
        marathon.wait_for(lambda: len(marathon.tasks(states=["TASK_RUNNING"])) == 2)
        scope: dict[str, Any] = {"marathon": marathon}
        exec(readme_block("### marathon-python"), scope)  # noqa: S102 -- our own README
        assert [(s.app_id, len(s.endpoints)) for s in scope["services"]] == [("/web", 2)]
        assert marathon.app("/api") is not None
