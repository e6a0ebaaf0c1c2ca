"""The Marathon translation: apps and tasks as catalog services, verdicts and copy-on-write."""

from __future__ import annotations

from typing import Any

from sidecar.catalog import DRAIN, OUT, READY, Catalog, HealthCheck, Problem, Skipped
from sidecar.sources.marathon.model import MarathonState
from sidecar.sources.marathon.translate import MarathonTranslator, catalog_from_apps


def task(task_id: str, state: str = "TASK_RUNNING", **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "host": "agent1", "ports": [31000], "state": state, **extra}


def app(app_id: str, *tasks: dict[str, Any], port: int = 10000, **extra: Any) -> dict[str, Any]:
    return {
        "id": app_id,
        "portDefinitions": [{"port": port, "protocol": "tcp"}],
        "tasks": list(tasks),
        **extra,
    }


def states(catalog: Catalog, key: str = "/web:0") -> dict[str, str]:
    return {i.id: i.state for i in catalog.services[key].instances}


def event(state: MarathonState, task_id: str, status: str, app_id: str = "/web") -> MarathonState:
    data = {"appId": app_id, "taskId": task_id, "taskStatus": status}
    return state.apply_event("status_update_event", data).state


def test_one_service_per_served_port_with_its_options_and_instances() -> None:
    web = app(
        "/web",
        task("web.1", version="v1", healthCheckResults=[{"alive": True}]),
        labels={"HAPROXY_0_MODE": "http", "HAPROXY_GROUP": "internal", "HAPROXY_1_ENABLED": "x"},
        healthChecks=[{"protocol": "HTTP", "path": "/h"}],
    )
    web["portDefinitions"].append({"port": 10001, "protocol": "udp"})
    catalog = catalog_from_apps([web])
    (service,) = catalog
    assert (service.key, service.app_id, service.port_index) == ("/web:0", "/web", 0)
    assert service.options.mode == "http" and service.options.groups == ("internal",)
    assert (service.options.service_port, service.options.bind_port) == (10000, 10000)
    (instance,) = service.instances
    assert instance == (
        "web.1", "agent1", 31000, READY, "running and healthy", 1, "/web", "v1", "TASK_RUNNING",
        True,
    )  # fmt: skip
    assert catalog.skipped == (Skipped("/web", "only tcp ports are proxied", 1),)
    assert catalog.problems == (Problem("/web", "HAPROXY_1_ENABLED", "not true or false"),)


def test_marathon_health_checks_become_neutral_checks_when_asked_for() -> None:
    check = {"protocol": "MESOS_HTTP", "path": "/ok", "intervalSeconds": 2, "timeoutSeconds": 1}
    web = app("/web", healthChecks=[check], labels={"HAPROXY_0_HEALTHCHECK": "true"})
    (service,) = catalog_from_apps([web])
    assert service.options.health_check == HealthCheck("http", "/ok", 2000, 1000, 3)


def test_unchanged_apps_keep_the_very_same_service_objects() -> None:
    translator = MarathonTranslator()
    state = MarathonState.from_apps([app("/web", task("web.1")), app("/db", port=10001)])
    first = translator.translate(state)
    assert translator.translate(state) is first  # nothing changed: the same catalog
    second = translator.translate(event(state, "web.2", "TASK_RUNNING"))
    assert second is not first
    assert second.services["/db:0"] is first.services["/db:0"]
    assert set(states(second)) == {"web.1", "web.2"}


def test_a_killing_task_that_was_in_rotation_drains_then_is_out() -> None:
    """As before the catalog existed: drained by the change that makes it leave; the next
    translation has it out (HAProxy keeps draining it on its own)."""
    translator = MarathonTranslator()
    state = MarathonState.from_apps([app("/web", task("web.1"), task("web.2"))])
    assert states(translator.translate(state)) == {"web.1": READY, "web.2": READY}
    state = event(state, "web.1", "TASK_KILLING")
    assert states(translator.translate(state))["web.1"] == DRAIN
    state = event(state, "web.3", "TASK_RUNNING")  # another event
    assert states(translator.translate(state))["web.1"] == OUT
    state = event(state, "web.1", "TASK_KILLED")
    assert states(translator.translate(state)) == {"web.2": READY, "web.3": READY}


def test_a_killing_task_that_was_never_in_rotation_is_just_out() -> None:
    catalog = catalog_from_apps([app("/web", task("web.1", "TASK_KILLING"))])
    assert states(catalog) == {"web.1": OUT}


def test_blank_health_results_keep_only_tasks_that_were_in_rotation() -> None:
    checked = app(
        "/web",
        task("web.1", healthCheckResults=[]),
        task("web.2", healthCheckResults=[]),
        healthChecks=[{"protocol": "HTTP"}],
    )
    assert states(catalog_from_apps([checked])) == {"web.1": OUT, "web.2": OUT}
    kept = catalog_from_apps([checked], previously_in=frozenset({"web.1"}))
    assert states(kept) == {"web.1": READY, "web.2": OUT}
    assert kept.services["/web:0"].instances[0].reason.startswith("no health result")


def test_a_seeded_catalog_counts_as_in_rotation_before() -> None:
    """After a restart with the state on disk, a leader election's blank results keep servers."""
    results = [{"alive": True}]
    healthy = app("/web", task("web.1", healthCheckResults=results), healthChecks=[{}])
    blank = app("/web", task("web.1", healthCheckResults=[]), healthChecks=[{}])
    translator = MarathonTranslator()
    translator.seed(catalog_from_apps([healthy]))
    assert states(translator.translate(MarathonState.from_apps([blank]))) == {"web.1": READY}
    assert states(MarathonTranslator().translate(MarathonState.from_apps([blank]))) == {
        "web.1": OUT
    }


def test_undo_forgets_a_translation_that_was_not_accepted() -> None:
    translator = MarathonTranslator()
    checked = app("/web", task("web.1", healthCheckResults=[]), healthChecks=[{}])
    translator.seed(catalog_from_apps([checked], previously_in=frozenset({"web.1"})))
    before = translator.translate(MarathonState.from_apps([checked]))
    assert not len(translator.translate(MarathonState.from_apps([])))  # e.g. a suspicious empty
    translator.undo()
    again = translator.translate(MarathonState.from_apps([checked]))
    assert states(again) == states(before) == {"web.1": READY}


def test_tasks_without_an_address_for_a_port_have_none() -> None:
    web = app("/web", task("web.1", ports=[]))
    (instance,) = catalog_from_apps([web]).services["/web:0"].instances
    assert (instance.host, instance.port, instance.state) == ("", None, READY)
