"""REST fidelity of the emulator against Marathon 1.10's example responses (keys, types, codes)."""

from __future__ import annotations

from typing import Any

import requests

from marathon_bridge.testing import MarathonEmulator
from testkit import wait_until
from testkit.examples import example, shape_differences

MINIMAL = {"id": "/foo", "cmd": "sleep 100"}
MARATHON_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-XSS-Protection": "1; mode=block",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "0",
}


def deployed(emu: MarathonEmulator, app: dict[str, Any]) -> dict[str, Any]:
    """POST an app and wait for its deployment to finish; returns GET /v2/apps/{id}."""
    response = requests.post(emu.url + "/v2/apps", json=app, timeout=10)
    assert response.status_code == 201, response.text
    wait_until(lambda: not emu.deployments(), message="deployment finished")
    got = requests.get(emu.url + "/v2/apps" + app["id"], timeout=10)
    assert got.status_code == 200
    body: dict[str, Any] = got.json()["app"]
    return body


def test_post_201_has_the_shape_of_marathon_1_10(emulator: MarathonEmulator) -> None:
    response = requests.post(emulator.url + "/v2/apps", json=MINIMAL, timeout=10)
    assert response.status_code == 201
    body = response.json()
    assert (
        shape_differences(
            example("derived-from-code/POST_v2_apps.201.response.minimal-app.v1.10.json"), body
        )
        == []
    )
    assert body["portDefinitions"][0]["port"] == 0  # assigned only after the response
    assert "versionInfo" not in body
    deployment_id = response.headers["Marathon-Deployment-Id"]
    assert body["deployments"] == [{"id": deployment_id}]
    assert response.headers["Location"] == emulator.url + "/foo"
    expected = example("derived-from-code/POST_v2_apps.201.response.minimal-app.v1.10.json")
    assert list(body) == list(expected)  # Marathon's writer order


def test_get_app_has_the_shape_of_marathon_1_10(emulator: MarathonEmulator) -> None:
    app = deployed(emulator, MINIMAL)
    wait_until(lambda: emulator.tasks("/foo", states=["TASK_RUNNING"]))
    app = requests.get(emulator.url + "/v2/apps/foo", timeout=10).json()["app"]
    expected = example("derived-from-code/GET_v2_apps_id.minimal-app.v1.10.json")["app"]
    assert shape_differences(expected, app) == []
    assert list(app) == list(expected)  # Marathon's writer order
    assert app["portDefinitions"][0]["port"] == 10000
    assert app["cpus"] == 1.0 and isinstance(app["cpus"], float)
    assert app["tasksRunning"] == 1 and app["deployments"] == []


def test_task_json_matches_the_examples(emulator: MarathonEmulator) -> None:
    deployed(emulator, MINIMAL)
    task = wait_until(lambda: emulator.tasks("/foo", states=["TASK_RUNNING"]))[0]
    assert shape_differences(example("derived-from-code/task.running.v1.10.json"), task) == []
    assert task["servicePorts"] == []
    assert task["id"].startswith("foo.instance-") and task["id"].endswith("._app.1")
    assert task["ipAddresses"] == [{"ipAddress": "127.0.0.1", "protocol": "IPv4"}]
    assert 31000 <= task["ports"][0] <= 64999  # the simulated agent's port range
    listed = requests.get(emulator.url + "/v2/tasks", timeout=10).json()["tasks"]
    assert [t["servicePorts"] for t in listed] == [[10000]]
    app_tasks = requests.get(emulator.url + "/v2/apps/foo/tasks", timeout=10).json()["tasks"]
    assert [t["id"] for t in app_tasks] == [task["id"]]
    assert app_tasks[0]["servicePorts"] == []


def test_staging_task_has_no_started_at() -> None:
    with MarathonEmulator(task_start_delay=30.0) as emu:
        requests.post(emu.url + "/v2/apps", json=MINIMAL, timeout=10)
        task = wait_until(lambda: emu.tasks("/foo"))[0]
        expected = example("derived-from-code/task.staging.v1.10.EnrichedTaskWritesTest.json")
        assert task["state"] == "TASK_STAGING"
        assert shape_differences(expected, task) == []
        app = requests.get(emu.url + "/v2/apps/foo", timeout=10).json()["app"]
        assert app["tasksStaged"] == 1 and app["tasksRunning"] == 0


def test_deployments_have_the_shape_of_marathon_1_10() -> None:
    with MarathonEmulator(deployment_delay=30.0) as emu:
        response = requests.post(emu.url + "/v2/apps", json=MINIMAL, timeout=10)
        deployment_id = response.headers["Marathon-Deployment-Id"]

        def second_step() -> list[dict[str, Any]]:
            deps = requests.get(emu.url + "/v2/deployments", timeout=10).json()
            return deps if deps and deps[0]["currentStep"] == 2 else []

        deps = wait_until(second_step)
        expected = example("derived-from-code/GET_v2_deployments.new-app.v1.10.json")
        assert shape_differences(expected, deps) == []
        assert deps[0]["id"] == deployment_id
        assert deps[0]["steps"] == expected[0]["steps"]
        assert deps[0]["affectedApps"] == ["/foo"] and deps[0]["totalSteps"] == 2
        app = requests.get(emu.url + "/v2/apps/foo", timeout=10).json()["app"]
        assert app["deployments"] == [{"id": deployment_id}]


def test_service_ports_are_lowest_free_from_10000_and_reused(emulator: MarathonEmulator) -> None:
    a = deployed(emulator, {"id": "/a", "cmd": "sleep 1", "instances": 0})
    b = deployed(
        emulator,
        {
            "id": "/b",
            "cmd": "sleep 1",
            "instances": 0,
            "portDefinitions": [{"port": 0}, {"port": 0}],
        },
    )
    assert [p["port"] for p in a["portDefinitions"]] == [10000]
    assert [p["port"] for p in b["portDefinitions"]] == [10001, 10002]
    assert requests.delete(emulator.url + "/v2/apps/a", timeout=10).status_code == 200
    c = deployed(emulator, {"id": "/c", "cmd": "sleep 1", "instances": 0})
    assert c["portDefinitions"][0]["port"] == 10000
    # an update that asks for 0 again keeps the app's own port
    requests.put(
        emulator.url + "/v2/apps/c",
        json={"cmd": "sleep 2", "portDefinitions": [{"port": 0}]},
        timeout=10,
    )
    wait_until(lambda: not emulator.deployments())
    again = requests.get(emulator.url + "/v2/apps/c", timeout=10).json()["app"]
    assert again["portDefinitions"][0]["port"] == 10000


def test_bridge_app_gets_service_and_host_ports(emulator: MarathonEmulator) -> None:
    app = deployed(
        emulator,
        {
            "id": "/bridged",
            "container": {
                "type": "DOCKER",
                "docker": {"image": "nginx"},
                "portMappings": [{"containerPort": 80, "hostPort": 0}],
            },
            "networks": [{"mode": "container/bridge"}],
        },
    )
    assert "portDefinitions" not in app
    assert app["container"]["portMappings"][0]["servicePort"] == 10000
    task = wait_until(lambda: emulator.tasks("/bridged", states=["TASK_RUNNING"]))[0]
    assert len(task["ports"]) == 1 and task["ports"][0] >= 31000


def test_every_response_carries_marathon_headers(emulator: MarathonEmulator) -> None:
    for path in ("/v2/apps", "/v2/apps/missing", "/v2/info", "/ping", "/v2/nothing"):
        response = requests.get(emulator.url + path, timeout=10)
        for name, value in MARATHON_HEADERS.items():
            assert response.headers[name] == value, (path, name)
        assert response.headers["X-Marathon-Leader"] == emulator.url


def test_error_bodies_match_marathon(emulator: MarathonEmulator) -> None:
    url = emulator.url
    missing = requests.get(url + "/v2/apps/not_existent", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == example("error-bodies/error.404.app-does-not-exist.json")
    assert missing.headers["Content-Type"].startswith("application/json")

    deployed(emulator, {"id": "/existing-app", "cmd": "sleep 1", "instances": 0})
    again = requests.post(
        url + "/v2/apps", json={"id": "/existing-app", "cmd": "sleep 1"}, timeout=10
    )
    assert again.status_code == 409
    expected = example("error-bodies/error.409.app-already-exists.json")
    assert again.json() == {"message": expected["message"].replace("_", "-")}

    deployment = requests.delete(url + "/v2/deployments/unknown_deployment", timeout=10)
    assert deployment.status_code == 404
    assert deployment.json() == example("error-bodies/error.404.deployment-does-not-exist.json")

    task = requests.delete(url + "/v2/apps/existing-app/tasks/not-existing", timeout=10)
    assert task.status_code == 404
    assert task.json() == example("error-bodies/error.404.task-does-not-exist.json")

    unknown = requests.get(url + "/v2/nothing/here", timeout=10)
    assert (unknown.status_code, unknown.json()) == (500, {"message": "URI not found"})


def test_malformed_and_empty_bodies_are_400(emulator: MarathonEmulator) -> None:
    url = emulator.url + "/v2/apps"
    broken = requests.post(
        url, data=b'{"id": ', headers={"Content-Type": "application/json"}, timeout=10
    )
    assert broken.status_code == 400
    body = broken.json()
    assert body["message"] == "Invalid JSON" and isinstance(body["details"], str)
    empty = requests.post(url, data=b"", timeout=10)
    assert empty.status_code == 400
    assert empty.json()["message"] == "Please specify data in JSON format"


def test_invalid_apps_are_422_with_paths(emulator: MarathonEmulator) -> None:
    semantic = requests.post(
        emulator.url + "/v2/apps",
        json={
            "id": "/foo",
            "cmd": "sleep 1",
            "upgradeStrategy": {"minimumHealthCapacity": 1.0, "maximumOverCapacity": 1.0},
            "args": ["also"],
        },
        timeout=10,
    )
    assert semantic.status_code == 422
    body = semantic.json()
    assert body["message"] in ("Object is not valid", "Invalid JSON")
    assert all(set(d) == {"path", "errors"} for d in body["details"])
    typed = requests.post(
        emulator.url + "/v2/apps", json={"id": "/foo", "cmd": "x", "instances": "a"}, timeout=10
    )
    assert typed.status_code == 422
    assert typed.json()["message"] == "Invalid JSON"
    assert any(d["path"] == "/instances" for d in typed.json()["details"])
    assert emulator.apps() == []


def test_lock_409_and_force(emulator_slow: MarathonEmulator) -> None:
    emu = emulator_slow
    first = requests.post(emu.url + "/v2/apps", json=MINIMAL, timeout=10)
    deployment_id = first.headers["Marathon-Deployment-Id"]
    locked = requests.put(emu.url + "/v2/apps/foo", json={"instances": 2}, timeout=10)
    assert locked.status_code == 409
    expected = example("error-bodies/error.409.app-locked-by-deployment.json")
    assert locked.json() == {"message": expected["message"], "deployments": [{"id": deployment_id}]}
    forced = requests.put(emu.url + "/v2/apps/foo?force=true", json={"instances": 2}, timeout=10)
    assert forced.status_code == 200
    assert forced.json()["deploymentId"] != deployment_id
    failed = emu.events("deployment_failed")
    assert [e["id"] for e in failed] == [deployment_id]
    assert [d["id"] for d in emu.deployments()] == [forced.json()["deploymentId"]]


def test_put_creates_updates_scales_and_patch_needs_the_app(emulator: MarathonEmulator) -> None:
    url = emulator.url + "/v2/apps/web"
    patch_missing = requests.patch(url, json={"instances": 2}, timeout=10)
    assert patch_missing.status_code == 404
    created = requests.put(url, json={"cmd": "sleep 100", "instances": 1}, timeout=10)
    assert created.status_code == 201
    assert set(created.json()) == {"version", "deploymentId"}
    assert created.headers["Marathon-Deployment-Id"] == created.json()["deploymentId"]
    assert created.headers["Location"].endswith("/web")
    wait_until(lambda: not emulator.deployments())
    scaled = requests.patch(url, json={"instances": 3}, timeout=10)
    assert scaled.status_code == 200
    deps = emulator.deployments()
    assert deps == [] or deps[0]["steps"] == [
        {"actions": [{"action": "ScaleApplication", "app": "/web"}]}
    ]
    wait_until(lambda: len(emulator.tasks("/web", states=["TASK_RUNNING"])) == 3)
    app = requests.get(url, timeout=10).json()["app"]
    assert app["versionInfo"]["lastScalingAt"] == app["version"]
    assert app["versionInfo"]["lastConfigChangeAt"] != app["version"]


def test_config_change_replaces_tasks(emulator: MarathonEmulator) -> None:
    deployed(emulator, {"id": "/web", "cmd": "sleep 100", "instances": 2})
    before = {t["id"] for t in emulator.tasks("/web")}
    response = requests.put(emulator.url + "/v2/apps/web", json={"cmd": "sleep 200"}, timeout=10)
    version = response.json()["version"]
    wait_until(lambda: not emulator.deployments())
    after = emulator.tasks("/web")
    assert len(after) == 2
    assert not before & {t["id"] for t in after}
    assert {t["version"] for t in after} == {version}
    killed = [
        e["taskId"]
        for e in emulator.events("status_update_event")
        if e["taskStatus"] == "TASK_KILLED"
    ]
    assert set(killed) == before


def test_restart_versions_and_rollback(emulator: MarathonEmulator) -> None:
    deployed(emulator, {"id": "/web", "cmd": "sleep 100"})
    first = requests.get(emulator.url + "/v2/apps/web/versions", timeout=10).json()["versions"]
    requests.put(emulator.url + "/v2/apps/web", json={"cmd": "sleep 200"}, timeout=10)
    wait_until(lambda: not emulator.deployments())
    versions = requests.get(emulator.url + "/v2/apps/web/versions", timeout=10).json()["versions"]
    assert len(versions) == 2 and versions[-1] == first[0]
    old = requests.get(emulator.url + f"/v2/apps/web/versions/{first[0]}", timeout=10).json()
    assert old["cmd"] == "sleep 100" and "tasks" not in old
    mixed = requests.put(
        emulator.url + "/v2/apps/web", json={"version": first[0], "cmd": "x"}, timeout=10
    )
    assert mixed.status_code == 422
    assert "may only be combined with the 'id' field" in str(mixed.json())
    rollback = requests.put(emulator.url + "/v2/apps/web", json={"version": first[0]}, timeout=10)
    assert rollback.status_code == 200
    wait_until(lambda: not emulator.deployments())
    assert (
        requests.get(emulator.url + "/v2/apps/web", timeout=10).json()["app"]["cmd"] == "sleep 100"
    )
    unknown = requests.get(
        emulator.url + "/v2/apps/web/versions/2000-01-01T00:00:00.000Z", timeout=10
    )
    assert unknown.json() == {
        "message": "App '/web' does not exist in version 2000-01-01T00:00:00.000Z"
    }
    restart = requests.post(emulator.url + "/v2/apps/web/restart", timeout=10)
    assert restart.status_code == 200 and set(restart.json()) == {"version", "deploymentId"}


def test_delete_defaults_to_force_and_emits_app_terminated() -> None:
    with MarathonEmulator(task_start_delay=60.0) as emu:  # the POST deployment stays open
        posted = requests.post(emu.url + "/v2/apps", json=MINIMAL, timeout=10)
        wait_until(lambda: emu.tasks("/foo"))
        response = requests.delete(emu.url + "/v2/apps/foo", timeout=10)
        assert response.status_code == 200
        assert set(response.json()) == {"version", "deploymentId"}
        assert requests.get(emu.url + "/v2/apps/foo", timeout=10).status_code == 404
        cancelled = [e["id"] for e in emu.events("deployment_failed")]
        assert cancelled == [posted.headers["Marathon-Deployment-Id"]]
        wait_until(lambda: emu.events("app_terminated_event"))
        assert emu.tasks() == [] and emu.deployments() == []


def test_kill_tasks_scale_wipe_and_task_delete(emulator: MarathonEmulator) -> None:
    deployed(emulator, {"id": "/web", "cmd": "sleep 100", "instances": 2})
    task_ids = [t["id"] for t in emulator.tasks("/web")]
    both = requests.delete(emulator.url + "/v2/apps/web/tasks?scale=true&wipe=true", timeout=10)
    assert both.status_code == 400
    assert both.json() == {"message": "You cannot use scale and wipe at the same time."}
    one = requests.delete(emulator.url + f"/v2/apps/web/tasks/{task_ids[0]}", timeout=10)
    assert one.status_code == 200 and one.json()["task"]["id"] == task_ids[0]
    wait_until(lambda: task_ids[0] not in {t["id"] for t in emulator.tasks("/web")})
    wait_until(lambda: len(emulator.tasks("/web", states=["TASK_RUNNING"])) == 2)  # replaced
    scaled = requests.post(
        emulator.url + "/v2/tasks/delete?scale=true", json={"ids": [task_ids[1]]}, timeout=10
    )
    assert scaled.status_code == 200 and "deploymentId" in scaled.json()
    wait_until(lambda: not emulator.deployments())
    assert requests.get(emulator.url + "/v2/apps/web", timeout=10).json()["app"]["instances"] == 1
    states = [
        e["taskStatus"]
        for e in emulator.events("status_update_event")
        if e["taskId"] == task_ids[0]
    ]
    assert states == ["TASK_STAGING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]


def test_list_filters_and_embeds(emulator: MarathonEmulator) -> None:
    deployed(emulator, {"id": "/team/api", "cmd": "run api", "labels": {"tier": "backend"}})
    deployed(emulator, {"id": "/team/web", "cmd": "run web", "labels": {"tier": "frontend"}})
    url = emulator.url + "/v2/apps"

    def ids(**params: str) -> list[str]:
        return sorted(a["id"] for a in requests.get(url, params=params, timeout=10).json()["apps"])

    assert ids() == ["/team/api", "/team/web"]
    assert ids(label="tier") == ["/team/api", "/team/web"]
    assert ids(label="tier==backend") == ["/team/api"]
    assert ids(label="tier!=backend") == ["/team/web"]
    assert ids(id="WEB") == ["/team/web"]
    assert ids(cmd="api") == ["/team/api"]
    plain = requests.get(url, timeout=10).json()["apps"][0]
    assert "tasks" not in plain and {"tasksRunning", "deployments"} <= set(plain)
    embedded = requests.get(
        url, params=[("embed", "apps.tasks"), ("embed", "apps.taskStats")], timeout=10
    ).json()["apps"][0]
    assert len(embedded["tasks"]) == 1 and "tasksStats" in embedded
    group = requests.get(url + "/team/*", timeout=10)
    assert sorted(a["id"] for a in group.json()["*"]) == ["/team/api", "/team/web"]
    group_tasks = requests.get(url + "/team/*/tasks", timeout=10).json()["tasks"]
    assert sorted(t["appId"] for t in group_tasks) == ["/team/api", "/team/web"]
    assert requests.get(url + "/nogroup/*", timeout=10).status_code == 404


def test_unknown_fields_are_dropped_but_recorded(emulator: MarathonEmulator) -> None:
    deployed(emulator, {**MINIMAL, "x-team-note": "hello", "killSelection": "OLDEST_FIRST"})
    app = requests.get(emulator.url + "/v2/apps/foo", timeout=10).json()["app"]
    assert "x-team-note" not in app and app["killSelection"] == "OLDEST_FIRST"
    posts = [r for r in emulator.requests if r.method == "POST" and r.path == "/v2/apps"]
    assert posts[0].body["x-team-note"] == "hello"
    assert all(k.lower() != "authorization" for r in emulator.requests for k in r.headers)


def test_info_leader_ping_queue_groups(emulator: MarathonEmulator) -> None:
    url = emulator.url
    info = requests.get(url + "/v2/info", timeout=10).json()
    expected = example("api-docs-head/GET_v2_info.response.json")
    assert set(info) == set(expected)
    assert set(info["marathon_config"]) == set(expected["marathon_config"])
    assert set(info["zookeeper_config"]) == set(expected["zookeeper_config"])
    hostport = url.split("://")[1]
    assert info["elected"] is True and info["leader"] == hostport
    assert requests.get(url + "/v2/leader", timeout=10).json() == {"leader": hostport}
    ping = requests.get(url + "/ping", timeout=10)
    assert (ping.text, ping.headers["Content-Type"].split(";")[0]) == ("pong", "text/plain")
    ping_json = requests.get(url + "/ping", headers={"Accept": "application/json"}, timeout=10)
    assert ping_json.json() == "pong"
    assert requests.get(url + "/v2/queue", timeout=10).json() == {"queue": []}
    deployed(emulator, {"id": "/g/web", "cmd": "sleep 1", "instances": 0})
    assert requests.delete(url + "/v2/queue/g/web/delay", timeout=10).status_code == 204
    root = requests.get(url + "/v2/groups", timeout=10).json()
    assert set(root) == {"id", "apps", "groups", "pods", "dependencies", "version", "enforceRole"}
    assert root["groups"][0]["id"] == "/g" and root["groups"][0]["apps"][0]["id"] == "/g/web"
    assert "tasksRunning" not in root["groups"][0]["apps"][0]
    assert requests.get(url + "/v2/groups/nope", timeout=10).status_code == 404
    abdicated = requests.delete(url + "/v2/leader", timeout=10)
    assert abdicated.json() == example("error-bodies/DELETE_v2_leader.response.json")


def test_deployment_cancel_and_rollback(emulator_slow: MarathonEmulator) -> None:
    emu = emulator_slow
    first = requests.post(emu.url + "/v2/apps", json=MINIMAL, timeout=10)
    dep_id = first.headers["Marathon-Deployment-Id"]
    rollback = requests.delete(emu.url + f"/v2/deployments/{dep_id}", timeout=10)
    assert rollback.status_code == 200
    assert rollback.headers["Marathon-Deployment-Id"] == rollback.json()["deploymentId"]
    assert requests.get(emu.url + "/v2/apps/foo", timeout=10).status_code == 404  # new app undone
    second = requests.post(emu.url + "/v2/apps?force=true", json=MINIMAL, timeout=10)
    cancel = requests.delete(
        emu.url + f"/v2/deployments/{second.headers['Marathon-Deployment-Id']}?force=true",
        timeout=10,
    )
    assert (cancel.status_code, cancel.content) == (202, b"")
