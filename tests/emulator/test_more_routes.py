"""Other routes and facade features: multi-app updates, filters, suspend/resume, the CLI."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from marathon_bridge.testing import MarathonEmulator, run_emulator
from testkit import wait_until
from testkit.examples import example


def settle(emu: MarathonEmulator) -> None:
    wait_until(lambda: not emu.deployments(), message="deployments done")


def test_multi_app_put_and_patch_make_one_deployment(emulator: MarathonEmulator) -> None:
    apps = [{"id": "/m/a", "cmd": "sleep 1"}, {"id": "/m/b", "cmd": "sleep 2", "instances": 2}]
    created = requests.put(emulator.url + "/v2/apps", json=apps, timeout=10)
    assert created.status_code == 200 and set(created.json()) == {"version", "deploymentId"}
    deps = emulator.deployments()
    assert len(deps) <= 1
    settle(emulator)
    assert sorted(a["id"] for a in emulator.apps()) == ["/m/a", "/m/b"]
    assert not [e for e in emulator.events("api_post_event") if e["uri"] == "/v2/apps"]
    patched = requests.patch(
        emulator.url + "/v2/apps", json=[{"id": "/m/a", "instances": 3}], timeout=10
    )
    assert patched.status_code == 200
    settle(emulator)
    assert len(emulator.tasks("/m/a", states=["TASK_RUNNING"])) == 3
    unknown = requests.patch(
        emulator.url + "/v2/apps", json=[{"id": "/m/zz", "instances": 1}], timeout=10
    )
    assert unknown.status_code == 404


def test_task_status_filter_and_invalid_ids() -> None:
    with MarathonEmulator(task_start_delay=60.0) as emu:
        requests.post(emu.url + "/v2/apps", json={"id": "/s", "cmd": "sleep 1"}, timeout=10)
        wait_until(lambda: emu.tasks("/s"))

        def count(params: Any) -> int:
            return len(
                requests.get(emu.url + "/v2/tasks", params=params, timeout=10).json()["tasks"]
            )

        assert count({"status": "staging"}) == 1
        assert count({"status": "running"}) == 0
        assert count({"status": "killed"}) == 1  # unknown values are dropped: no filter
        bad = requests.post(emu.url + "/v2/tasks/delete", json={"ids": ["nodots"]}, timeout=10)
        assert bad.status_code == 400 and bad.json()["message"].startswith(
            "Invalid task id 'nodots'."
        )
        ignored = requests.post(
            emu.url + "/v2/tasks/delete", json={"ids": ["s.instance-unknown._app.1"]}, timeout=10
        )
        assert ignored.json() == {"tasks": []}
        text = requests.get(
            emu.url + "/v2/apps/s/tasks", headers={"Accept": "text/plain"}, timeout=10
        )
        assert text.status_code == 406


def test_last_task_failure_and_readiness_embeds(emulator: MarathonEmulator) -> None:
    requests.post(emulator.url + "/v2/apps", json={"id": "/f", "cmd": "sleep 1"}, timeout=10)
    settle(emulator)
    emulator.fail_task(emulator.tasks("/f")[0]["id"], "boom")
    listed = requests.get(
        emulator.url + "/v2/apps",
        params=[("embed", "apps.lastTaskFailure"), ("embed", "apps.readiness")],
        timeout=10,
    ).json()["apps"][0]
    failure = listed["lastTaskFailure"]
    assert set(failure) == {
        "appId",
        "host",
        "message",
        "state",
        "taskId",
        "timestamp",
        "version",
        "slaveId",
    }
    assert failure["message"] == "boom" and listed["readinessCheckResults"] == []
    wait_until(lambda: emulator.tasks("/f", states=["TASK_RUNNING"]), message="relaunch")


def test_queue_lists_apps_waiting_for_tasks() -> None:
    with MarathonEmulator(backoff_scale=1000.0) as emu:  # a failed task is relaunched much later
        requests.post(emu.url + "/v2/apps", json={"id": "/q", "cmd": "sleep 1"}, timeout=10)
        settle(emu)
        emu.fail_task(emu.tasks("/q")[0]["id"])
        queue = requests.get(emu.url + "/v2/queue", timeout=10).json()["queue"]
        assert [q["app"]["id"] for q in queue] == ["/q"]
        assert queue[0]["count"] == 1 and queue[0]["delay"]["overdue"] is False
        documented = example("api-docs-head/GET_v2_queue.response.json")["queue"][0]
        assert set(queue[0]) == set(documented)
        assert set(queue[0]["delay"]) == set(documented["delay"])
        assert requests.delete(emu.url + "/v2/queue/q/delay", timeout=10).status_code == 204
        wait_until(lambda: emu.tasks("/q", states=["TASK_RUNNING"]), message="relaunch after reset")
        missing = requests.delete(emu.url + "/v2/queue/none/delay", timeout=10)
        assert missing.json() == {"message": "Application /none not found in tasks queue."}


def test_head_is_answered_like_get(emulator: MarathonEmulator) -> None:
    response = requests.head(emulator.url + "/v2/info", timeout=10)
    assert response.status_code == 200 and response.content == b""


def test_fault_duration_expires(emulator: MarathonEmulator) -> None:
    emulator.faults.respond_json("/v2/apps", {"apps": []}, duration=0.2)
    assert requests.get(emulator.url + "/v2/apps", timeout=10).json() == {"apps": []}
    wait_until(lambda: not emulator.faults.take("GET", "/nothing") and not emulator.faults.active())


def test_suspend_and_resume_keep_state_and_port(emulator: MarathonEmulator) -> None:
    requests.post(emulator.url + "/v2/apps", json={"id": "/keep", "cmd": "sleep 1"}, timeout=10)
    settle(emulator)
    url = emulator.url
    emulator.suspend()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/v2/apps", timeout=10)
    assert emulator.tasks("/keep", states=["TASK_RUNNING"])
    emulator.resume()
    assert emulator.url == url
    apps = requests.get(url + "/v2/apps", timeout=10).json()["apps"]
    assert [a["id"] for a in apps] == ["/keep"]


def test_client_auth_classes_are_accepted() -> None:
    client = pytest.importorskip("marathon_bridge.client")
    with MarathonEmulator(auth=client.BasicAuth("u", "p")) as basic:
        assert requests.get(basic.url + "/v2/apps", auth=("u", "p"), timeout=10).ok
    with MarathonEmulator(auth=client.TokenAuth("tok")) as token:
        headers = {"Authorization": "token=tok"}
        assert requests.get(token.url + "/v2/apps", headers=headers, timeout=10).ok


def test_run_emulator_serves_until_stopped() -> None:
    ready: list[MarathonEmulator] = []
    stop = threading.Event()
    codes: list[int] = []
    thread = threading.Thread(
        target=lambda: codes.append(
            run_emulator("127.0.0.1", 0, False, ready=ready.append, stop_event=stop)
        )
    )
    thread.start()
    try:
        wait_until(lambda: ready)
        assert requests.get(ready[0].url + "/ping", timeout=10).text == "pong"
    finally:
        stop.set()
        thread.join(30)
    assert codes == [0]
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(ready[0].url + "/ping", timeout=10)


def test_fixtures_from_the_plugin(
    marathon_emulator: MarathonEmulator, marathon_emulator_factory: Any
) -> None:
    other = marathon_emulator_factory(deployment_delay=1.0)
    assert requests.get(marathon_emulator.url + "/ping", timeout=10).ok
    assert requests.get(other.url + "/ping", timeout=10).ok


def test_tasks_spread_over_named_agents() -> None:
    with MarathonEmulator(agents=["agent-a.example", "10.1.2.3"]) as emu:
        requests.post(
            emu.url + "/v2/apps",
            json={"id": "/spread", "cmd": "sleep 1", "instances": 4},
            timeout=10,
        )
        settle(emu)
        tasks = emu.tasks("/spread")
        assert sorted(t["host"] for t in tasks) == ["10.1.2.3"] * 2 + ["agent-a.example"] * 2
        by_host = {t["host"]: t for t in tasks}
        assert by_host["10.1.2.3"]["ipAddresses"][0]["ipAddress"] == "10.1.2.3"
        assert by_host["agent-a.example"]["slaveId"] != by_host["10.1.2.3"]["slaveId"]
        killed = requests.delete(emu.url + "/v2/apps/spread/tasks?host=10.1.2.3", timeout=10)
        assert {t["host"] for t in killed.json()["tasks"]} == {"10.1.2.3"}
        assert len(killed.json()["tasks"]) == 2


def test_chunked_request_bodies_are_read(emulator: MarathonEmulator) -> None:
    def body() -> Any:
        yield b'{"id": "/chunked",'
        yield b' "cmd": "sleep 1"}'

    response = requests.post(
        emulator.url + "/v2/apps",
        data=body(),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.json()["id"] == "/chunked"


def test_on_event_listener_sees_each_event(emulator: MarathonEmulator) -> None:
    seen: list[str] = []
    emulator.on_event(lambda kind, payload: seen.append(kind))
    requests.post(emulator.url + "/v2/apps", json={"id": "/l", "cmd": "sleep 1"}, timeout=10)
    settle(emulator)
    assert seen == [e["eventType"] for e in emulator.events()]
    assert "api_post_event" in seen and "deployment_success" in seen
