"""Per-event work follows the change: one app's event re-derives that app, its services and its
backend only; an unchanged snapshot changes nothing (plain data, no I/O)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from sidecar.catalog import Catalog, Instance, changed_services, updated_catalog
from sidecar.changes import KEYS_LIMIT, changed_between, first_version, next_version
from sidecar.desired import BuildCache, build_model
from sidecar.fd_budget import BudgetFacts, FitCache, fit_model
from sidecar.haproxy_model import (
    HAProxyModel,
    changed_backends,
    listener_signature,
    model_counts,
)
from sidecar.render_settings import RenderSettings
from sidecar.sources.base import CatalogKeeper
from sidecar.sources.marathon.model import MarathonState
from sidecar.sources.marathon.translate import MarathonTranslator
from testkit.cluster import AGENTS, generated_cluster

SETTINGS = RenderSettings()
SETTINGS_CHECKED = RenderSettings(passive_checks=True)
APPS = 50


def cluster() -> tuple[MarathonState, MarathonTranslator, Catalog]:
    state = MarathonState.from_apps(generated_cluster(APPS))
    translator = MarathonTranslator()
    return state, translator, translator.translate(state)


def kill_first_task(state: MarathonState, app_id: str) -> Any:
    task_id = sorted(state.app_tasks(app_id))[0]
    event = {"appId": app_id, "taskId": task_id, "taskStatus": "TASK_KILLED"}
    return state.apply_event("status_update_event", event)


def app_of(state: MarathonState, n: int) -> str:
    return sorted(state.apps)[n]


# --- the tags ---------------------------------------------------------------------------------


def test_tags_tell_the_keys_changed_since_any_version_after_the_anchor() -> None:
    v0 = first_version()
    v1 = next_version(v0, ["a"])
    v2 = next_version(v1, ["b"])
    assert changed_between(v0, v2) == {"a", "b"}  # v1 skipped (a coalesced burst)
    assert changed_between(v1, v2) == {"a", "b"}  # a superset: "a" is checked again
    assert changed_between(v2, v2) == frozenset()
    assert changed_between(v2, v1) is None  # backwards: cannot tell
    assert changed_between(first_version(), v2) is None  # another history


def test_past_the_keys_limit_the_version_before_becomes_the_anchor() -> None:
    versions = [first_version()]
    for n in range(KEYS_LIMIT + 1):
        versions.append(next_version(versions[-1], [f"k{n}"]))
    last = versions[-1]
    assert changed_between(versions[-2], last) == {f"k{KEYS_LIMIT}"}
    assert changed_between(versions[0], last) is None  # older than the anchor: walk them all


def test_changed_services_walks_when_the_catalogs_are_not_tagged() -> None:
    _state, _translator, catalog = cluster()
    services = dict(catalog.services)
    key = sorted(services)[3]
    gone = sorted(services)[4]
    services[key] = services[key]._replace(instances=())
    del services[gone]
    assert set(changed_services(catalog, Catalog(services))) == {key, gone}
    assert changed_services(catalog, catalog) == ()


# --- the source ---------------------------------------------------------------------------------


def test_an_event_translates_only_its_app_and_tags_the_catalog_with_its_services() -> None:
    state, translator, before = cluster()
    app_id = app_of(state, 7)
    outcome = kill_first_task(state, app_id)
    assert outcome.changed and outcome.apps == {app_id}
    entries = dict(translator._entries)
    after = translator.translate(outcome.state, outcome.apps)
    changed = set(changed_services(before, after))
    assert changed == {s.key for s in after if s.app_id == app_id}
    for other, entry in translator._entries.items():  # no other app was translated again
        assert (entry is entries[other]) == (other != app_id)
    for service in before:
        assert (after.services[service.key] is service) == (service.app_id != app_id)
    assert len(after.services[f"{app_id}:0"].instances) == 2


def test_touched_apps_translate_as_a_full_translation_does() -> None:
    state, translator, _before = cluster()
    removed, scaled = app_of(state, 1), app_of(state, 2)
    state = kill_first_task(state, scaled).state
    state = state.without_app(removed)
    incremental = translator.translate(state, {removed, scaled})
    assert incremental == MarathonTranslator().translate(state)
    assert not any(s.app_id == removed for s in incremental)


def test_an_unchanged_snapshot_is_the_same_catalog_and_reaches_nobody() -> None:
    state, translator, catalog = cluster()
    published: list[Catalog] = []

    class Listener:
        def catalog_changed(self, catalog: Catalog, reason: str) -> None:
            published.append(catalog)

        def source_problem(self, problem: Any) -> None:
            pass

        def source_contact(self) -> None:
            pass

    keeper = CatalogKeeper("test")
    keeper.attach(Listener())
    assert keeper.offer_snapshot(catalog, "start") is None and published == [catalog]
    again = translator.translate(MarathonState.from_apps(state.apps_with_tasks()))
    assert again is catalog  # every app read anew, nothing changed: the very same catalog
    keeper.offer_snapshot(again, "resync interval")
    assert published == [catalog]


# --- the builder --------------------------------------------------------------------------------


def build(
    catalog: Catalog, settings: RenderSettings = SETTINGS, cache: Optional[BuildCache] = None
) -> HAProxyModel:
    return build_model(catalog, settings, AGENTS.get, cache)


def test_an_event_rebuilds_one_backend_and_reuses_the_others() -> None:
    state, translator, catalog = cluster()
    cache = BuildCache()
    first = build(catalog, cache=cache)
    app_id = app_of(state, 9)
    outcome = kill_first_task(state, app_id)
    after = translator.translate(outcome.state, outcome.apps)
    patched_before = cache.patched
    model = build(after, cache=cache)
    assert cache.patched == patched_before + 1 and cache.rebuilt == (f"{app_id}:0",)
    changed = [b.name for b in model.backends if b.app_id == app_id]
    assert set(changed_backends(first, model) or ()) == set(changed)
    for old, new in zip(first.backends, model.backends):
        assert (old is new) == (new.app_id != app_id)
    assert model.frontends is first.frontends
    shared = zip(listener_signature(model)[:2], listener_signature(first)[:2])
    assert all(mine is theirs for mine, theirs in shared)  # worked out once, not per event
    assert model == build_model(after, SETTINGS, AGENTS.get)  # what a full build gives


def test_coalesced_events_patch_every_backend_they_touched() -> None:
    state, translator, catalog = cluster()
    cache = BuildCache()
    first = build(catalog, cache=cache)
    touched = {app_of(state, n) for n in (3, 11, 30)}
    for app_id in sorted(touched):  # three catalogs; the builder sees the last one only
        outcome = kill_first_task(state, app_id)
        state = outcome.state
        catalog = translator.translate(state, outcome.apps)
    model = build(catalog, cache=cache)
    assert set(cache.rebuilt) == {f"{a}:0" for a in touched}
    assert {b.app_id for b in model.backends if b not in first.backends} == touched
    assert model == build_model(catalog, SETTINGS, AGENTS.get)


def test_a_new_service_takes_the_full_build() -> None:
    state, translator, catalog = cluster()
    cache = BuildCache()
    first = build(catalog, cache=cache)
    extra = generated_cluster(APPS + 1)[-1]
    state = state.with_app(extra)
    grown = translator.translate(state, {extra["id"]})
    patched_before = cache.patched
    model = build(grown, cache=cache)
    assert cache.patched == patched_before and cache.rebuilt == (f"{extra['id']}:0",)
    assert len(model.backends) == len(first.backends) + 1
    added = {b.name for b in model.backends if b.app_id == extra["id"]}
    assert set(changed_backends(first, model) or ()) == added
    assert model == build_model(grown, SETTINGS, AGENTS.get)


def test_an_unchanged_catalog_gives_the_very_same_model() -> None:
    _state, _translator, catalog = cluster()
    cache = BuildCache()
    first = build(catalog, cache=cache)
    copy = Catalog(dict(catalog.services), catalog.problems, catalog.skipped)  # untagged
    assert build(copy, cache=cache) is first
    assert changed_backends(first, first) == ()


def test_a_server_left_out_takes_the_full_build_and_matches_it() -> None:
    _state, _translator, catalog = cluster()
    cache = BuildCache()
    build(catalog, cache=cache)
    key = sorted(catalog.services)[5]
    service = catalog.services[key]
    homeless = Instance("new.task", "", None, "ready", "running", app_id=service.app_id)
    after = updated_catalog(catalog, {key: service._replace(instances=(homeless,))})
    patched_before = cache.patched
    model = build(after, cache=cache)
    assert cache.patched == patched_before  # the skipped list changes: full build
    assert any(s.task_id == "new.task" for s in model.skipped)
    assert model == build_model(after, SETTINGS, AGENTS.get)


def test_undo_of_an_incremental_translation_restores_the_touched_apps() -> None:
    state, translator, before = cluster()
    entries = dict(translator._entries)
    app_id = app_of(state, 4)
    outcome = kill_first_task(state, app_id)
    assert translator.translate(outcome.state, outcome.apps) is not before
    translator.undo()
    assert translator._entries == entries and translator._entries[app_id] is entries[app_id]
    assert translator.translate(state, {app_id}) is before  # nothing differs from it again


def test_a_patched_model_counts_its_checked_servers_from_the_change() -> None:
    state, translator, catalog = cluster()
    cache = BuildCache()
    first = build(catalog, SETTINGS_CHECKED, cache=cache)
    assert model_counts(first) == (APPS, APPS * 3)
    app_id = app_of(state, 12)
    outcome = kill_first_task(state, app_id)
    model = build(translator.translate(outcome.state, outcome.apps), SETTINGS_CHECKED, cache=cache)
    assert model_counts(model) == (APPS, APPS * 3 - 1)
    assert model_counts(replace(model)) == model_counts(model)  # counted anew: the same


def test_a_fit_that_gives_up_checks_patches_the_last_fit_as_a_full_fit_would_do() -> None:
    state, translator, catalog = cluster()
    cache, fits = BuildCache(), FitCache()
    limit = BudgetFacts(limit=600, wanted=4096, threads=2)  # the floor fits only without checks
    first, budget = fit_model(build(catalog, SETTINGS_CHECKED, cache=cache), limit, None, fits)
    assert budget.left_out and all(not b.passive_check for b in first.backends)
    app_id = app_of(state, 21)
    outcome = kill_first_task(state, app_id)
    model = build(translator.translate(outcome.state, outcome.apps), SETTINGS_CHECKED, cache=cache)
    fitted, again = fit_model(model, limit, budget, fits)
    assert (fitted, again) == fit_model(model, limit, budget)  # what a fit from scratch gives
    for old, new in zip(first.backends, fitted.backends):  # the others were not stripped again
        assert (old is new) == (new.app_id != app_id)
    assert set(changed_backends(first, fitted) or ()) == {
        b.name for b in fitted.backends if b.app_id == app_id
    }
