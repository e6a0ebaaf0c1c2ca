"""The fast paths of the render path give what the general rules give, on a messy cluster.

build_model and render_config take shortcuts for the usual case (a label parse shared by apps with
equal labels, an int host port read inline, running tasks of unchecked apps, deployment-group
planning only for apps with group labels, server keywords joined once per render, the collector
paused). Each test below turns one shortcut off, or computes the general rule directly, and
compares the model and the config text on a seeded cluster that exercises every branch.
"""

from __future__ import annotations

import gc
from collections.abc import Mapping
from typing import Any

import pytest

from marathon_bridge.services import network_mode, port_specs
from sidecar.desired import BuildCache, build_model
from sidecar.gc_pause import collector_paused
from sidecar.grammar import ip_literal
from sidecar.haproxy_model import HAProxyModel
from sidecar.render import (
    RenderCache,
    _section,
    backend_lines,
    frontend_lines,
    render_config,
    template_context,
)
from sidecar.render_settings import RenderSettings
from sidecar.sources.marathon import translate
from sidecar.sources.marathon.labels import parse_app_labels, parse_app_labels_memo
from sidecar.sources.marathon.model import MarathonState
from sidecar.sources.marathon.selection import _classify, classify_tasks, has_health_checks
from sidecar.sources.marathon.translate import (
    MarathonTranslator,
    catalog_of,
    host_slots,
    task_address,
)
from testkit.cluster import AGENTS, messy_cluster, previously_in_of

SEEDS = (11, 12, 13)
SETTINGS = {
    "default": RenderSettings(admin_socket="/tmp/a.sock", server_state_file="/tmp/s"),
    "vhost": RenderSettings(
        admin_socket="/tmp/a.sock",
        server_state_file="/tmp/s",
        vhost_port=8080,
        label_bind_addrs=("10.0.0.9", "::1"),
        reserved_ports=(10050, 10077),
    ),
    "groups": RenderSettings(groups=("internal",), vhost_port=80, passive_checks=False),
    "every group": RenderSettings(groups=("*",), bind_addrs=("127.0.0.1", "::1")),
}


def cluster(seed: int) -> tuple[list[dict[str, Any]], MarathonState, frozenset[str]]:
    apps = messy_cluster(400, seed)
    return apps, MarathonState.from_apps(apps), previously_in_of(apps, seed)


def build_and_render(
    state: MarathonState, settings: RenderSettings, prev: frozenset[str]
) -> tuple[HAProxyModel, str]:
    model = build_model(catalog_of(state, prev), settings, AGENTS.get)
    return model, render_config(model, settings)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_cluster_reaches_the_branches_under_test(seed: int) -> None:
    _apps, state, prev = cluster(seed)
    model, text = build_and_render(state, SETTINGS["vhost"], prev)
    reasons = {s.reason for s in model.skipped}
    assert "task has no address for this port" in reasons
    assert "task host does not resolve to an IP address" in reasons
    assert {s.state for b in model.backends for s in b.servers} == {"ready", "drain"}
    assert any(b.name.startswith("be_dg_") for b in model.backends)
    assert any(b.health_check is not None for b in model.backends)
    assert any(f.routes for f in model.frontends)
    assert "weight 0 " in text and "weight 1 " in text


@pytest.mark.parametrize("seed", SEEDS)
def test_shared_label_parses_equal_a_parse_per_app(seed: int) -> None:
    apps, _state, _prev = cluster(seed)
    memo: dict[Any, Any] = {}
    for _round in range(2):  # the second round only hits the memo
        for app in apps:
            assert parse_app_labels_memo(app, memo) == parse_app_labels(app)


def test_unhashable_label_values_are_parsed_without_the_memo() -> None:
    app = {"id": "/a", "labels": {"HAPROXY_0_MODE": ["http"], "HAPROXY_0_BALANCE": "first"}}
    memo: dict[Any, Any] = {}
    assert parse_app_labels_memo(app, memo) == parse_app_labels(app)
    assert memo == {}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_build_without_the_label_memo_is_identical(
    seed: int, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _apps, state, prev = cluster(seed)
    fast = build_and_render(state, SETTINGS[name], prev)
    monkeypatch.setattr(
        translate, "parse_app_labels_memo", lambda app, _memo: parse_app_labels(app)
    )
    assert build_and_render(state, SETTINGS[name], prev) == fast


@pytest.mark.parametrize("seed", SEEDS)
def test_planning_groups_for_every_app_is_identical(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _apps, state, prev = cluster(seed)
    fast = build_and_render(state, SETTINGS["default"], prev)
    monkeypatch.setattr(translate, "names_deployment_group", lambda _labels: True)
    assert build_and_render(state, SETTINGS["default"], prev) == fast


def _resolved(host: str) -> Any:
    return ip_literal(host) or AGENTS.get(host)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_server_is_where_task_address_says(seed: int) -> None:
    _apps, state, prev = cluster(seed)
    model = build_model(catalog_of(state, prev), SETTINGS["vhost"], AGENTS.get)
    checked = 0
    for backend in model.backends:
        app = state.apps[backend.app_id]
        specs = port_specs(app)
        slot = host_slots(network_mode(app), specs)[backend.port_index]
        container_port = specs[backend.port_index].container_port
        tasks = state.tasks[backend.app_id]
        for server in backend.servers:
            if server.task_id not in tasks:
                continue  # a deployment-group member's server: checked with its own app
            where = task_address(tasks[server.task_id], slot, container_port)
            assert where is not None
            assert (_resolved(where[0]), where[1]) == (server.address, server.port)
            checked += 1
    assert checked > 500
    unaddressed = [s for s in model.skipped if s.reason == "task has no address for this port"]
    for skip in unaddressed:
        app = state.apps[skip.app_id]
        specs = port_specs(app)
        assert skip.port_index is not None
        slot = host_slots(network_mode(app), specs)[skip.port_index]
        task = state.tasks[skip.app_id][skip.task_id]
        assert task_address(task, slot, specs[skip.port_index].container_port) is None


@pytest.mark.parametrize("seed", SEEDS)
def test_task_classification_follows_the_general_rule(seed: int) -> None:
    apps, _state, prev = cluster(seed)
    for app in apps:
        tasks = app["tasks"]
        checked = has_health_checks(app)
        expected = sorted(
            _classify(app, t, t["id"], checked, prev)
            for t in tasks
            if isinstance(t, Mapping) and isinstance(t.get("id"), str) and t["id"]
        )
        assert classify_tasks(app, tasks, prev) == expected
        assert network_mode(app)  # every shape of the generator is readable


@pytest.mark.parametrize("seed", SEEDS)
def test_section_shortcuts_equal_the_line_helpers(seed: int) -> None:
    _apps, state, prev = cluster(seed)
    for settings in SETTINGS.values():
        model = build_model(catalog_of(state, prev), settings, AGENTS.get)
        context = template_context(model, settings)
        backends = "".join(_section(b.name, backend_lines(b)) for b in model.backends)
        frontends = "".join(_section(f.name, frontend_lines(f)) for f in model.frontends)
        assert context["backend_sections"] == backends
        assert context["frontend_sections"] == frontends


@pytest.mark.parametrize("seed", SEEDS)
def test_cached_builds_equal_cold_builds_through_events(seed: int) -> None:
    _apps, state, prev = cluster(seed)
    settings = SETTINGS["vhost"]
    translator, cache, text_cache = MarathonTranslator(), BuildCache(), RenderCache()
    translator.seed(catalog_of(state, prev))
    ids = sorted(state.apps)
    previous = None
    for step in range(6):
        catalog = translator.translate(state)
        if previous is not None:  # copy-on-write equals a translation from scratch
            fresh = MarathonTranslator()
            fresh.seed(previous)
            assert fresh.translate(state) == catalog
        model = build_model(catalog, settings, AGENTS.get, cache)
        assert model == build_model(catalog, settings, AGENTS.get)
        assert render_config(model, settings, cache=text_cache) == render_config(model, settings)
        app_id = ids[(step * 67) % len(ids)]
        task_ids = sorted(state.tasks[app_id])
        if task_ids:
            event = {"appId": app_id, "taskId": task_ids[0], "taskStatus": "TASK_KILLING"}
            state = state.apply_event("status_update_event", event).state
        previous = catalog


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_pause_leaves_the_collector_as_it_found_it(enabled: bool) -> None:
    _apps, state, prev = cluster(SEEDS[0])
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with collector_paused():
            assert not gc.isenabled()
            build_model(catalog_of(state, prev), SETTINGS["default"], AGENTS.get)
        assert gc.isenabled() is enabled
        assert gc.get_freeze_count() == 0
    finally:
        (gc.enable if was else gc.disable)()


def test_objects_the_process_froze_stay_frozen() -> None:
    _apps, state, prev = cluster(SEEDS[0])
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            build_model(catalog_of(state, prev), SETTINGS["default"], AGENTS.get)
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
