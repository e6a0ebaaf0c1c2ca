"""MarathonState: snapshots, event application, hostile payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.sources.marathon.model import EventOutcome, MarathonState

IID = "web.instance-3b7f1e2a-6c8e-11eb-9c2c-0242ac110002"
TID = IID + "._app.1"


def app(app_id: str = "/web", port: int = 10000, tasks: Any = (), **extra: Any) -> dict[str, Any]:
    out = {
        "id": app_id,
        "networks": [{"mode": "host"}],
        "portDefinitions": [{"port": port, "protocol": "tcp"}],
        "tasks": list(tasks),
    }
    out.update(extra)
    return out


def running(task_id: str = TID, **extra: Any) -> dict[str, Any]:
    out = {"id": task_id, "appId": "/web", "host": "agent1", "ports": [31000]}
    out.update(state="TASK_RUNNING", healthCheckResults=[])
    out.update(extra)
    return out


def base_state(**app_extra: Any) -> MarathonState:
    return MarathonState.from_apps([app(tasks=[running()], **app_extra)])


def status(task_id: str, status: str, app_id: str = "/web", **extra: Any) -> dict[str, Any]:
    data = {
        "slaveId": "s1",
        "taskId": task_id,
        "taskStatus": status,
        "message": "",
        "appId": app_id,
        "host": "agent2",
        "ipAddresses": [{"ipAddress": "10.0.0.2", "protocol": "IPv4"}],
        "ports": [31001],
        "version": "2021-02-10T11:59:59.000Z",
        "eventType": "status_update_event",
        "timestamp": "2021-02-10T12:00:02.460Z",
    }
    data.update(extra)
    return data


# --- snapshots ---------------------------------------------------------------------------------


def test_from_apps_and_back() -> None:
    apps = [app("/b", tasks=[running("b.1")]), app("/a", tasks=[running("a.2"), running("a.1")])]
    state = MarathonState.from_apps([*apps, "garbage", {"id": 5}, {"no": "id"}])
    assert sorted(state.apps) == ["/a", "/b"]
    assert "tasks" not in state.apps["/a"]
    assert sorted(state.tasks["/a"]) == ["a.1", "a.2"]
    back = state.apps_with_tasks()
    assert [a["id"] for a in back] == ["/a", "/b"]
    assert [t["id"] for t in back[0]["tasks"]] == ["a.1", "a.2"]


def test_with_app_and_without_app() -> None:
    state = base_state()
    grown = state.with_app(app("/other", port=10001, tasks=[running("o.1")]))
    assert sorted(grown.apps) == ["/other", "/web"] and sorted(state.apps) == ["/web"]
    replaced = grown.with_app(app("/web", tasks=[]))
    assert replaced.tasks["/web"] == {}
    assert replaced.without_app("/web").apps.keys() == {"/other"}
    assert replaced.without_app("/missing") is replaced
    assert state.with_app({"no": "id"}) is state


# --- status_update_event ------------------------------------------------------------------------


def test_terminal_status_removes_the_task() -> None:
    for terminal in (
        "TASK_KILLED",
        "TASK_FAILED",
        "TASK_FINISHED",
        "TASK_LOST",
        "TASK_ERROR",
        "TASK_GONE",
        "TASK_DROPPED",
    ):
        out = base_state().apply_event("status_update_event", status(TID, terminal))
        assert out.changed and out.state.tasks["/web"] == {}
        assert not out.resync and not out.fetch_apps


def test_terminal_status_for_unknown_task_changes_nothing() -> None:
    state = base_state()
    out = state.apply_event("status_update_event", status("other", "TASK_KILLED"))
    assert out == EventOutcome(state, False)


def test_killing_and_unreachable_keep_the_task_with_that_state() -> None:
    for state_name in ("TASK_KILLING", "TASK_UNREACHABLE"):
        out = base_state().apply_event("status_update_event", status(TID, state_name))
        assert out.changed and out.state.tasks["/web"][TID]["state"] == state_name


def test_new_running_task_is_added_from_the_event() -> None:
    out = base_state().apply_event("status_update_event", status("web.new._app.1", "TASK_RUNNING"))
    task = out.state.tasks["/web"]["web.new._app.1"]
    assert out.changed
    assert task["host"] == "agent2" and task["ports"] == [31001] and task["slaveId"] == "s1"
    assert task["ipAddresses"] == [{"ipAddress": "10.0.0.2", "protocol": "IPv4"}]
    assert task["state"] == "TASK_RUNNING" and task["startedAt"] == "2021-02-10T12:00:02.460Z"
    assert task["healthCheckResults"] == []


def test_staging_then_running_keeps_health_results() -> None:
    state = base_state().apply_event("status_update_event", status("n", "TASK_STAGING")).state
    assert state.tasks["/web"]["n"]["state"] == "TASK_STAGING"
    state = state.apply_event(
        "health_status_changed_event", {"appId": "/web", "instanceId": "n", "alive": True}
    ).state
    state = state.apply_event("status_update_event", status("n", "TASK_RUNNING")).state
    assert state.tasks["/web"]["n"]["state"] == "TASK_RUNNING"
    assert state.tasks["/web"]["n"]["healthCheckResults"][0]["alive"] is True


def test_an_event_leaves_the_state_it_was_applied_to_as_it_was() -> None:
    apps = [app(f"/a{n}", 10000 + n, [running(f"a{n}.1", appId=f"/a{n}")]) for n in range(400)]
    state = MarathonState.from_apps(apps)
    killed = state.apply_event("status_update_event", status("a7.1", "TASK_KILLED", "/a7")).state
    added = killed.apply_event("status_update_event", status("a9.2", "TASK_RUNNING", "/a9")).state
    assert list(state.tasks["/a7"]) == ["a7.1"] and list(state.tasks["/a9"]) == ["a9.1"]
    assert killed.tasks["/a7"] == {} and list(killed.tasks["/a9"]) == ["a9.1"]
    assert sorted(added.tasks["/a9"]) == ["a9.1", "a9.2"] and added.tasks["/a7"] == {}
    assert len(state.tasks) == len(added.tasks) == 400
    untouched = [f"/a{n}" for n in range(400) if n not in (7, 9)]
    assert all(added.tasks[a] is state.tasks[a] for a in untouched)


def test_repeated_status_is_not_a_change() -> None:
    state = base_state().apply_event("status_update_event", status("n", "TASK_RUNNING")).state
    out = state.apply_event("status_update_event", status("n", "TASK_RUNNING"))
    assert not out.changed and out.state is state


def test_killing_for_unknown_task_is_ignored() -> None:
    out = base_state().apply_event("status_update_event", status("n", "TASK_KILLING"))
    assert not out.changed


def test_status_for_unknown_app_asks_for_a_fetch() -> None:
    out = base_state().apply_event(
        "status_update_event", status("x.1", "TASK_RUNNING", app_id="/new")
    )
    assert not out.changed and out.fetch_apps == frozenset({"/new"})
    out = base_state().apply_event(
        "status_update_event", status("x.1", "TASK_KILLED", app_id="/new")
    )
    assert not out.changed and not out.fetch_apps


def test_real_and_derived_status_payloads_apply(examples_dir: Path) -> None:
    for name in (
        "derived-from-code/event.status_update_event.v1.8plus.json",
        "real-captures/event.status_update_event.marathon-1.4.async-worker.json",
        "event-bus-doc/status_update_event.json",
    ):
        data = json.loads((examples_dir / name).read_text())
        out = MarathonState().apply_event("status_update_event", data)
        assert not out.resync
        state = MarathonState.from_apps([app(data["appId"])])
        out = state.apply_event("status_update_event", data)
        assert not out.resync and not out.fetch_apps


# --- health events --------------------------------------------------------------------------


def test_health_status_changed_sets_the_result_by_instance_id() -> None:
    out = base_state(healthChecks=[{"protocol": "HTTP"}]).apply_event(
        "health_status_changed_event", {"appId": "/web", "instanceId": IID, "alive": False}
    )
    assert out.changed and not out.fetch_apps
    assert out.state.tasks["/web"][TID]["healthCheckResults"] == [
        {"alive": False, "instanceId": IID}
    ]


def test_health_status_changed_legacy_task_id_field() -> None:
    state = MarathonState.from_apps([app(tasks=[running("web.legacy-1")])])
    out = state.apply_event(
        "health_status_changed_event", {"appId": "/web", "taskId": "web.legacy-1", "alive": True}
    )
    assert (
        out.changed
        and out.state.tasks["/web"]["web.legacy-1"]["healthCheckResults"][0]["alive"] is True
    )


def test_instance_id_prefix_does_not_match_other_instances() -> None:
    state = MarathonState.from_apps(
        [app(tasks=[running("web.instance-12._app.1"), running("web.instance-1._app.1")])]
    )
    out = state.apply_event(
        "health_status_changed_event",
        {"appId": "/web", "instanceId": "web.instance-1", "alive": True},
    )
    assert out.state.tasks["/web"]["web.instance-1._app.1"]["healthCheckResults"]
    assert out.state.tasks["/web"]["web.instance-12._app.1"]["healthCheckResults"] == []


def test_several_health_checks_ask_for_a_fetch() -> None:
    state = base_state(healthChecks=[{"protocol": "HTTP"}, {"protocol": "TCP"}])
    out = state.apply_event(
        "health_status_changed_event", {"appId": "/web", "instanceId": IID, "alive": True}
    )
    assert out.changed and out.fetch_apps == frozenset({"/web"})


def test_instance_health_changed_including_null() -> None:
    state = base_state()
    out = state.apply_event(
        "instance_health_changed_event", {"instanceId": IID, "runSpecId": "/web", "healthy": True}
    )
    assert out.state.tasks["/web"][TID]["healthCheckResults"][0]["alive"] is True
    out = out.state.apply_event(
        "instance_health_changed_event", {"instanceId": IID, "runSpecId": "/web", "healthy": None}
    )
    assert out.changed and out.state.tasks["/web"][TID]["healthCheckResults"] == []


def test_health_event_for_unknown_task_or_app_asks_for_a_fetch() -> None:
    out = base_state().apply_event(
        "health_status_changed_event", {"appId": "/web", "instanceId": "nope", "alive": True}
    )
    assert out.fetch_apps == frozenset({"/web"}) and not out.changed
    out = base_state().apply_event(
        "health_status_changed_event", {"appId": "/x", "instanceId": IID, "alive": True}
    )
    assert out.fetch_apps == frozenset({"/x"})
    out = base_state().apply_event(
        "health_status_changed_event", {"appId": "/web", "instanceId": IID, "alive": "yes"}
    )
    assert out.fetch_apps == frozenset({"/web"}) and not out.changed


def test_derived_health_payloads_apply(examples_dir: Path) -> None:
    for name, event in (
        ("event.health_status_changed_event.json", "health_status_changed_event"),
        ("event.instance_health_changed_event.json", "instance_health_changed_event"),
    ):
        data = json.loads((examples_dir / "derived-from-code" / name).read_text())
        state = MarathonState.from_apps(
            [app("/foo", tasks=[running(data["instanceId"] + "._app.1")])]
        )
        out = state.apply_event(event, data)
        assert out.changed and not out.resync


# --- app events ---------------------------------------------------------------------------------


def test_api_post_replaces_the_definition_and_keeps_tasks() -> None:
    new_def = app(labels={"HAPROXY_0_MODE": "http"})
    del new_def["tasks"]
    out = base_state().apply_event(
        "api_post_event", {"appDefinition": new_def, "uri": "/v2/apps/web"}
    )
    assert out.changed and not out.fetch_apps
    assert out.state.apps["/web"]["labels"] == {"HAPROXY_0_MODE": "http"}
    assert TID in out.state.tasks["/web"]


def test_api_post_with_unassigned_service_port_asks_for_a_fetch(examples_dir: Path) -> None:
    out = MarathonState().apply_event("api_post_event", {"appDefinition": app("/new", port=0)})
    assert out.changed and out.fetch_apps == frozenset({"/new"}) and "/new" in out.state.apps
    data = json.loads(
        (examples_dir / "derived-from-code/event.api_post_event.v1.10.json").read_text()
    )
    out = MarathonState().apply_event("api_post_event", data)
    assert out.changed and not out.fetch_apps and out.state.tasks["/foo"] == {}


def test_app_terminated_removes_the_app() -> None:
    out = base_state().apply_event("app_terminated_event", {"appId": "/web"})
    assert out.changed and out.state.apps == {}
    assert not base_state().apply_event("app_terminated_event", {"appId": "/zzz"}).changed


def test_deployment_events_fetch_the_apps_of_the_plan(examples_dir: Path) -> None:
    for name in ("event.deployment_success.light.json", "event.deployment_failed.light.json"):
        data = json.loads((examples_dir / "derived-from-code" / name).read_text())
        out = base_state().apply_event(data["eventType"], data)
        assert out.fetch_apps == frozenset({"/foo"}) and not out.changed and not out.resync
    plan = {"steps": [[{"action": "StartApplication", "app": "/a"}], {"actions": [{"pod": "/p"}]}]}
    out = base_state().apply_event("deployment_success", {"id": "d", "plan": plan})
    assert out.fetch_apps == frozenset({"/a"})


def test_deployment_without_plan_resyncs_and_group_change_is_a_no_op(examples_dir: Path) -> None:
    doc = json.loads((examples_dir / "event-bus-doc/deployment_success.json").read_text())
    assert base_state().apply_event("deployment_success", doc).resync
    group = json.loads(
        (examples_dir / "derived-from-code/event.group_change_success.json").read_text()
    )
    assert base_state().apply_event("group_change_success", group) == EventOutcome(
        base_state(), False
    )


def test_unknown_event_types_change_nothing() -> None:
    state = base_state()
    assert state.apply_event("event_stream_attached", {"remoteAddress": "x"}) == EventOutcome(
        state, False
    )
    assert state.apply_event("failed_health_check_event", {}) == EventOutcome(state, False)


def test_unparseable_payloads_resync() -> None:
    state = base_state()
    for event, data in (
        ("status_update_event", "garbage"),
        ("status_update_event", {"taskId": "x"}),
        ("api_post_event", {"appDefinition": "x"}),
        ("app_terminated_event", {"appId": 3}),
        ("deployment_success", {"plan": "x"}),
        ("health_status_changed_event", {"instanceId": IID}),
    ):
        out = state.apply_event(event, data)
        assert out.resync and not out.changed and out.state is state


# --- hostile payloads -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
event_keys = st.sampled_from(
    [
        "appId",
        "taskId",
        "taskStatus",
        "instanceId",
        "alive",
        "healthy",
        "runSpecId",
        "host",
        "ports",
        "ipAddresses",
        "appDefinition",
        "plan",
        "version",
        "slaveId",
        "timestamp",
        "groupId",
        "eventType",
    ]
)
payloads = st.dictionaries(
    event_keys,
    json_values | st.sampled_from(["/web", TID, IID, "TASK_RUNNING", "TASK_KILLED"]),
    max_size=8,
)
event_types = st.sampled_from(
    [
        "status_update_event",
        "health_status_changed_event",
        "instance_health_changed_event",
        "api_post_event",
        "app_terminated_event",
        "deployment_success",
        "deployment_failed",
        "group_change_success",
        "whatever",
    ]
)


@settings(max_examples=400, deadline=None)
@given(event_types, payloads | json_values)
def test_hostile_payloads_never_raise(event_type: str, data: Any) -> None:
    state = base_state(healthChecks=[{"protocol": "HTTP"}])
    out = state.apply_event(event_type, data)
    assert isinstance(out, EventOutcome)
    assert all(isinstance(a, str) for a in out.fetch_apps)
    # the result is still a usable state
    out.state.apps_with_tasks()


def test_same_health_as_the_snapshot_is_not_a_change() -> None:
    full = {"alive": True, "consecutiveFailures": 0, "instanceId": IID, "lastSuccess": "t"}
    state = MarathonState.from_apps([app(tasks=[running(healthCheckResults=[full])])])
    out = state.apply_event(
        "health_status_changed_event", {"appId": "/web", "instanceId": IID, "alive": True}
    )
    assert not out.changed and out.state is state
