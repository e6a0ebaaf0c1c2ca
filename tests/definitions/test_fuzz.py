"""Property tests: validation, normalization and diff never raise, whatever JSON they get."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marathon_bridge.definitions import (
    comparable,
    diff_apps,
    human_message,
    normalize_app,
    validate_app,
)
from marathon_bridge.definitions.schema import APP, Obj

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.sampled_from(
        [
            "host",
            "container",
            "container/bridge",
            "BRIDGE",
            "USER",
            "DOCKER",
            "MESOS",
            "HTTP",
            "COMMAND",
            "MESOS_HTTP",
            "IPv6",
            "disabled",
            "UNIQUE",
            "LIKE",
            "MAX_PER",
            "/a",
            "web",
            "[",
            "0",
        ]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


def shaped(spec: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that mostly follow the app schema's shape, with arbitrary leaves."""
    if isinstance(spec, Obj) and spec.fields and depth < 4:
        keys = sorted(spec.fields)
        return st.one_of(
            json_values,
            st.dictionaries(
                st.sampled_from(keys), st.deferred(lambda: json_values), max_size=4
            ).flatmap(
                lambda base: st.fixed_dictionaries(
                    {k: shaped(spec.fields[k].spec, depth + 1) for k in base}
                )
            ),
        )
    item = getattr(spec, "item", None)
    if item is not None and depth < 4:
        return st.one_of(json_values, st.lists(shaped(item, depth + 1), max_size=3))
    return json_values


apps = shaped(APP)


@SETTINGS
@given(json_values)
def test_validate_never_raises_on_any_json(value: Any) -> None:
    issues = validate_app(value)
    assert all(i.path.startswith("/") and i.kind in ("type", "semantic") for i in issues)
    for issue in issues:
        assert human_message(issue)


@SETTINGS
@given(apps)
def test_validate_and_normalize_never_raise_on_app_shaped_json(app: Any) -> None:
    before = copy.deepcopy(app)
    validate_app(app)
    normalized = normalize_app(app)
    assert app == before  # never mutated
    assert isinstance(normalized, dict)
    if isinstance(app, dict):
        assert normalize_app(normalized) == normalized


@SETTINGS
@given(apps, apps)
def test_diff_never_raises(desired: Any, live: Any) -> None:
    if isinstance(desired, dict):
        diff_apps(desired, live if isinstance(live, dict) else None)
        comparable(desired)


@SETTINGS
@given(apps)
def test_an_app_has_no_differences_with_its_normalized_self(app: Any) -> None:
    if isinstance(app, dict):
        assert diff_apps(app, normalize_app(app)) == []


def deep_list(depth: int) -> list:
    root: list = []
    current = root
    for _ in range(depth):
        child: list = []
        current.append(child)
        current = child
    return root


def test_deeply_nested_unknown_values_do_not_break_validation_or_normalization() -> None:
    deep = deep_list(20_000)
    app = {
        "id": "/deep",
        "cmd": "ls",
        "future": deep,
        "labels": {"x": deep},
        "env": {"Y": {"secret": deep}},
    }
    issues = validate_app(app)
    assert {(i.path, i.message) for i in issues} == {
        ("/labels/x", "error.expected.jsstring"),
        ("/env/Y/secret", "error.expected.jsstring"),
    }
    normalized = normalize_app(app)
    assert normalized["future"] is not deep  # a copy, made without recursion
