"""Fields Marathon ignores (found, with the known name they misspell) and where each issue sits
in its file (line and column, JSON and YAML)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from marathon_bridge.definitions import (
    drop_unknown_fields,
    field_warnings,
    human_message,
    load_definitions,
    unknown_fields,
    validate_apps,
)
from marathon_bridge.definitions.positions import json_positions, marathon_path_parts
from marathon_bridge.definitions.schema import (
    APP,
    Arr,
    Bool,
    Enum,
    Int,
    MapOf,
    Num,
    Obj,
    OneOf,
    Spec,
    Str,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "marathon-api" / "examples"

TYPOS = {
    "id": "/web",
    "cmd": "sleep 100",
    "instnaces": 3,
    "cpu": 0.5,
    "healthChecks": [{"protocol": "HTTP", "pathh": "/health"}],
}


def test_each_typo_is_found_with_its_path_and_the_name_it_misspells() -> None:
    found = [(i.path, i.message, i.kind) for i in unknown_fields(TYPOS)]
    assert found == [
        ("/instnaces", "unknown field: Marathon ignores it; did you mean `instances`?", "unknown"),
        ("/cpu", "unknown field: Marathon ignores it; did you mean `cpus`?", "unknown"),
        (
            "/healthChecks(0)/pathh",
            "unknown field: Marathon ignores it; did you mean `path`?",
            "unknown",
        ),
    ]


def test_what_the_schema_leaves_open_is_never_reported() -> None:
    app = {
        "id": "/web",
        "cmd": "x",
        "labels": {"ANY_LABEL": "x"},
        "env": {"ANY_VAR": "x", "DB": {"secret": "db"}},
        "secrets": {"db": {"source": "/db"}},
        "container": {"type": "MESOS", "volumes": [{"anything": 1}], "linuxInfo": {"seccomp": {}}},
        "tasks": [],  # read-only fields Marathon writes: known, not a typo
        "tasksRunning": 2,
        "nothingLikeAnyField": 1,
    }
    assert [i.path for i in unknown_fields(app)] == ["/nothingLikeAnyField"]
    assert unknown_fields(app)[0].message == "unknown field: Marathon ignores it"


def test_case_mistakes_suggest_the_right_case() -> None:
    [issue] = unknown_fields({"id": "/a", "cmd": "x", "Instances": 2})
    assert issue.message.endswith("did you mean `instances`?")


def marathon_examples() -> list[tuple[str, Any]]:
    files = sorted(EXAMPLES.glob("system-test-apps/*.json")) + sorted(
        EXAMPLES.glob("api-docs-*/app-definition*.json")
    )
    return [(str(f.relative_to(EXAMPLES)), json.loads(f.read_text())) for f in files]


@pytest.mark.parametrize(("name", "app"), marathon_examples(), ids=lambda v: str(v)[:40])
def test_marathons_own_examples_use_known_fields(name: str, app: Any) -> None:
    expected = ["/container/docker/requirePorts"] if name.endswith("pinger-bridge-app.json") else []
    assert [i.path for i in unknown_fields(app)] == expected  # Marathon's test app has a stray key
    assert drop_unknown_fields(app) == {
        **app,
        **(
            {"container": {**app["container"], "docker": _without(app, "requirePorts")}}
            if expected
            else {}
        ),
    }


def _without(app: Any, key: str) -> Any:
    return {k: v for k, v in app["container"]["docker"].items() if k != key}


def test_drop_unknown_fields_keeps_everything_marathon_reads() -> None:
    kept = drop_unknown_fields(TYPOS)
    assert kept == {"id": "/web", "cmd": "sleep 100", "healthChecks": [{"protocol": "HTTP"}]}


# ---------------------------------------------------------------- positions


def test_json_positions_of_keys_and_items() -> None:
    text = '{\n  "id": "/a",\n  "list": [1, {"k": "v,}"}],\n  "e": {}\n}'
    positions = json_positions(text)
    assert positions[()] == (1, 1)
    assert positions[("id",)] == (2, 3)
    assert positions[("list", 0)] == (3, 12)
    assert positions[("list", 1)] == (3, 15)
    assert positions[("list", 1, "k")] == (3, 16)
    assert positions[("e",)] == (4, 3)


def test_marathon_paths_become_document_paths() -> None:
    assert marathon_path_parts("/healthChecks(0)/protocol") == ("healthChecks", 0, "protocol")
    assert marathon_path_parts("/") == ()
    assert marathon_path_parts("/env/DB/secret") == ("env", "DB", "secret")


BAD = {
    "id": "/web",
    "cmd": "sleep 100",
    "instances": -1,
    "mem": "lots",
    "healthChecks": [{"protocol": "HTTPX", "portIndex": 70000}],
    "container": {"type": "DOCKER", "docker": {"imagee": "nginx"}},
    "instnaces": 3,
}


def write_json(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "apps.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def write_yaml(tmp_path: Path, data: Any) -> Path:
    import yaml

    path = tmp_path / "apps.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def line_of(path: Path, needle: str) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if needle in line)


@pytest.mark.parametrize("write", [write_json, write_yaml])
@pytest.mark.parametrize("shape", ["app", "list", "group"])
def test_every_issue_and_warning_has_its_line_and_column(
    tmp_path: Path, write: Any, shape: str
) -> None:
    data: Any = {
        "app": BAD,
        "list": [{"id": "/ok", "cmd": "x y"}, BAD],
        "group": {"id": "/", "groups": [{"id": "team", "apps": [{**BAD, "id": "web"}]}]},
    }[shape]
    path = write(tmp_path, data)
    apps = load_definitions(path)
    issues = validate_apps(apps)
    warnings = field_warnings(apps)
    assert issues and warnings
    for issue in issues + warnings:
        assert issue.line > 0 and issue.column > 0, issue
        assert issue.location.startswith(f"{path}:{issue.line}:")
    where = {i.path: i.line for i in issues + warnings}
    assert where["/instances"] == line_of(
        path, "instances:" if write is write_yaml else '"instances"'
    )
    assert where["/instnaces"] == line_of(path, "instnaces")
    assert where["/mem"] == line_of(path, "lots")
    assert where["/healthChecks(0)/protocol"] == line_of(path, "HTTPX")
    assert where["/healthChecks(0)/portIndex"] == line_of(path, "70000")
    assert where["/container/docker/imagee"] == line_of(path, "imagee")
    # a missing field points at the object that lacks it
    assert where["/container/docker/image"] == line_of(path, "docker")


# ---------------------------------------------------------------- every error says what is allowed


def wrong_values(spec: Spec) -> list[Any]:
    if isinstance(spec, (Int, Num)):
        return ["x", -(10**12), 10**12, 0.5]
    if isinstance(spec, Str):
        return [7, "", "x" * 2000, "Not A Valid Value!"]
    if isinstance(spec, (Enum, Bool)):
        return [7, "NOT-ONE-OF-THEM"]
    if isinstance(spec, Arr):
        return ["x", [], [None]]
    if isinstance(spec, (Obj, MapOf, OneOf)):
        return ["x", 7, {}]
    return []


def fields_of(spec: Spec, path: str = "") -> list[tuple[str, Spec]]:
    """Every field of the schema with a Marathon path (first list item), objects included."""
    out: list[tuple[str, Spec]] = []
    if isinstance(spec, Obj):
        for name, fld in spec.fields.items():
            out.append((f"{path}/{name}", fld.spec))
            out.extend(fields_of(fld.spec, f"{path}/{name}"))
    elif isinstance(spec, Arr):
        out.extend(fields_of(spec.item, f"{path}(0)"))
    return out


def nested(path: str, value: Any) -> dict[str, Any]:
    """An app with ``value`` at ``path`` (lists of one item on the way)."""
    app: dict[str, Any] = {"id": "/web", "cmd": "sleep 100"}
    target: Any = app
    parts = list(marathon_path_parts(path))
    for part, following in zip(parts, [*parts[1:], None]):
        if following is None:
            break
        if isinstance(part, int):
            continue
        child: Any = [{}] if isinstance(following, int) else {}
        target[part] = child
        target = child[0] if isinstance(following, int) else child
    last = parts[-1]
    target[last] = value
    return app


@pytest.mark.parametrize(("path", "spec"), fields_of(APP), ids=[p for p, _ in fields_of(APP)])
def test_every_schema_error_says_what_the_field_allows(path: str, spec: Spec) -> None:
    from marathon_bridge.definitions import validate_app

    for value in wrong_values(spec):
        for issue in validate_app(nested(path, value)):
            if issue.kind != "type":
                continue
            text = human_message(issue)
            key, _, explanation = text.partition(": ")
            assert key == issue.message and explanation, (issue, text)
            assert explanation not in ("too small", "too big", "bad format"), (issue, text)


def test_rule_messages_get_the_allowed_values_marathon_does_not_give() -> None:
    from marathon_bridge.definitions import validate_app

    app = {
        "id": "/a",
        "cmd": "sleep 1",
        "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0, "name": "admin"}],
        "healthChecks": [{"protocol": "HTTP", "portIndex": 3}],
        "readinessChecks": [{"portName": "web"}],
        "env": {"DB": {"secret": "db"}},
        "secrets": {"token": {"source": "/t"}},
    }
    texts = {i.path: human_message(i) for i in validate_app(app)}
    assert texts["/healthChecks(0)"].endswith("(portIndex 0..1, got 3)")
    assert texts["/readinessChecks(0)/portName"] == (
        "No port definition reference for portName web (port names: http, admin)"
    )
    assert texts["/env/DB/secret"] == "references an undefined secret (secrets: token)"
    # Marathon's own message is untouched (the emulator answers with it)
    [check] = [i for i in validate_app(app) if i.path == "/healthChecks(0)"]
    assert check.message.endswith("or container port mappings.")
