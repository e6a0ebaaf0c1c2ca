"""The emulator reads an app as Marathon does: only the fields Marathon declares, at every depth.

Marathon's readers are generated from its RAML types, so a key they do not declare is dropped
wherever it sits (``instnaces`` at the top, ``pathh`` in a health check, ``imagee`` in
``container.docker``). Checked on the shapes of Marathon's own example apps.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import pytest
import requests

from marathon_bridge.definitions import unknown_fields
from marathon_bridge.definitions.schema import APP, Arr, MapOf, Obj, OneOf, Spec
from marathon_bridge.testing import MarathonEmulator
from testkit.examples import EXAMPLES

STRAY = "x-stray"


def example_apps() -> list[tuple[str, dict[str, Any]]]:
    files = [
        *sorted(EXAMPLES.glob("system-test-apps/*.json")),
        EXAMPLES / "api-docs-head/app-definition.with-check.json",
    ]
    return [(f.name, json.loads(f.read_text())) for f in files]


def with_stray_keys(spec: Spec, value: Any) -> int:
    """Add ``STRAY`` to every object of ``value`` that the schema describes field by field;
    returns how many were added."""
    if isinstance(spec, OneOf):
        options = [o for o in spec.options if isinstance(o, Obj) and isinstance(value, Mapping)]
        return with_stray_keys(options[0], value) if options else 0
    if isinstance(spec, Arr) and isinstance(value, list):
        return sum(with_stray_keys(spec.item, item) for item in value)
    if isinstance(spec, MapOf) and isinstance(value, dict):
        return sum(with_stray_keys(spec.value, item) for item in value.values())
    if isinstance(spec, Obj) and spec.fields and isinstance(value, dict):
        added = 1 + sum(
            with_stray_keys(spec.fields[key].spec, item)
            for key, item in value.items()
            if key in spec.fields
        )
        value[STRAY] = "dropped by Marathon"
        return added
    return 0


@pytest.mark.parametrize(("name", "app"), example_apps(), ids=[n for n, _ in example_apps()])
def test_fields_marathon_does_not_declare_are_dropped_at_every_depth(
    emulator: MarathonEmulator, name: str, app: dict[str, Any]
) -> None:
    sent = copy.deepcopy(app)
    sent["id"] = "/examples/app"
    added = with_stray_keys(APP, sent)
    assert added >= 1
    response = requests.post(emulator.url + "/v2/apps", json=sent, timeout=10)
    assert response.status_code == 201, response.text
    assert STRAY not in response.text  # the POST answer already reads as Marathon read it
    got = requests.get(emulator.url + "/v2/apps/examples/app", timeout=10).json()["app"]
    assert STRAY not in json.dumps(got)
    assert unknown_fields(got) == []
    # what Marathon does declare survived, nested values included
    for key, value in app.items():
        if key not in ("id", "ports", "uris", "ipAddress") and isinstance(value, dict):
            assert set(value) - {"portMappings", "network"} <= set(got.get(key, {})), key
    [post] = [r for r in emulator.requests if r.method == "POST"]
    assert post.body == sent  # the request itself is recorded as sent


def test_keep_unknown_fields_keeps_them_at_every_depth() -> None:
    app = {
        "id": "/web",
        "cmd": "sleep 100",
        "healthChecks": [{"protocol": "TCP", "pathh": "/health"}],
        "instnaces": 3,
    }
    with MarathonEmulator(keep_unknown_fields=True) as emulator:
        assert requests.post(emulator.url + "/v2/apps", json=app, timeout=10).status_code == 201
        got = requests.get(emulator.url + "/v2/apps/web", timeout=10).json()["app"]
    assert got["instnaces"] == 3 and got["healthChecks"][0]["pathh"] == "/health"


def test_a_typo_deploys_with_marathons_defaults(emulator: MarathonEmulator) -> None:
    app = {
        "id": "/web",
        "cmd": "sleep 100",
        "instnaces": 3,
        "cpu": 0.5,
        "healthChecks": [{"protocol": "HTTP", "pathh": "/health"}],
    }
    assert requests.post(emulator.url + "/v2/apps", json=app, timeout=10).status_code == 201
    got = requests.get(emulator.url + "/v2/apps/web", timeout=10).json()["app"]
    assert (got["instances"], got["cpus"]) == (1, 1.0)  # Marathon's defaults
    assert "instnaces" not in got and "cpu" not in got
    assert "pathh" not in got["healthChecks"][0] and "path" not in got["healthChecks"][0]
