"""Simulated health: results shape, forced health, counts, events, and leader election blanking."""

from __future__ import annotations

from typing import Any

import requests

from marathon_bridge.testing import MarathonEmulator
from testkit import wait_until
from testkit.examples import example, shape_differences
from testkit.sse import SSEReader

CHECKED = {
    "id": "/web",
    "cmd": "sleep 100",
    "instances": 2,
    "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}],
}


def start_checked(emu: MarathonEmulator) -> list[dict[str, Any]]:
    assert requests.post(emu.url + "/v2/apps", json=CHECKED, timeout=10).status_code == 201
    wait_until(lambda: not emu.deployments(), message="deployment done")
    tasks = emu.tasks("/web")
    assert len(tasks) == 2
    return tasks


def app_counts(emu: MarathonEmulator) -> tuple[int, int, int]:
    app = requests.get(emu.url + "/v2/apps/web", timeout=10).json()["app"]
    return app["tasksRunning"], app["tasksHealthy"], app["tasksUnhealthy"]


def test_simulated_checks_pass_and_have_marathon_shape(emulator: MarathonEmulator) -> None:
    tasks = start_checked(emulator)
    expected = example("derived-from-code/task.running.with-health.v1.10.json")
    for task in tasks:
        assert shape_differences(expected, task) == []
        result = task["healthCheckResults"][0]
        assert result["alive"] is True
        assert task["id"].startswith(result["instanceId"])
    assert app_counts(emulator) == (2, 2, 0)
    alive = emulator.events("health_status_changed_event")
    assert {e["instanceId"] for e in alive if e["alive"]} == {
        t["healthCheckResults"][0]["instanceId"] for t in tasks
    }


def test_forced_health_flips_counts_and_events(emulator: MarathonEmulator) -> None:
    tasks = start_checked(emulator)
    victim = tasks[0]["id"]
    emulator.set_task_health(victim, False)
    assert app_counts(emulator) == (2, 1, 1)
    result = next(t for t in emulator.tasks("/web") if t["id"] == victim)["healthCheckResults"][0]
    assert result["alive"] is False and result["consecutiveFailures"] == 1
    assert "lastFailure" in result and "lastSuccess" in result
    flips = [e for e in emulator.events("health_status_changed_event") if not e["alive"]]
    assert [victim.startswith(e["instanceId"]) for e in flips] == [True]
    unhealthy = [
        e for e in emulator.events("instance_health_changed_event") if e["healthy"] is False
    ]
    assert len(unhealthy) == 1
    emulator.set_task_health(victim, None)
    blank = next(t for t in emulator.tasks("/web") if t["id"] == victim)
    assert blank["healthCheckResults"] == []
    assert app_counts(emulator) == (2, 1, 0)
    emulator.set_task_health(victim, True)
    assert app_counts(emulator) == (2, 2, 0)


def test_apps_without_checks_count_no_health(emulator: MarathonEmulator) -> None:
    requests.post(emulator.url + "/v2/apps", json={"id": "/plain", "cmd": "sleep 9"}, timeout=10)
    wait_until(lambda: not emulator.deployments())
    app = requests.get(emulator.url + "/v2/apps/plain", timeout=10).json()["app"]
    assert (app["tasksRunning"], app["tasksHealthy"], app["tasksUnhealthy"]) == (1, 0, 0)
    assert app["tasks"][0]["healthCheckResults"] == []


def test_unhealthy_new_tasks_keep_the_deployment_open() -> None:
    with MarathonEmulator(health_delay=600.0) as emu:  # results only when the test sets them
        assert requests.post(emu.url + "/v2/apps", json=CHECKED, timeout=10).status_code == 201
        old = {
            t["id"] for t in wait_until(lambda: len(emu.tasks("/web")) == 2 and emu.tasks("/web"))
        }
        for task_id in old:
            emu.set_task_health(task_id, True)
        wait_until(lambda: not emu.deployments())
        response = requests.put(emu.url + "/v2/apps/web", json={"cmd": "sleep 200"}, timeout=10)
        deployment_id = response.json()["deploymentId"]

        def new_tasks() -> list[str]:
            ids = [
                t["id"] for t in emu.tasks("/web", states=["TASK_RUNNING"]) if t["id"] not in old
            ]
            return ids if len(ids) == 2 else []

        fresh = wait_until(new_tasks)
        for task_id in fresh:
            emu.set_task_health(task_id, False)
        assert [d["id"] for d in emu.deployments()] == [deployment_id]
        assert old <= {t["id"] for t in emu.tasks("/web", states=["TASK_RUNNING"])}
        assert app_counts(emu) == (4, 2, 2)
        for task_id in fresh:
            emu.set_task_health(task_id, True)
        wait_until(lambda: not emu.deployments())
        assert {t["id"] for t in emu.tasks("/web")} == set(fresh)


def test_leader_election_blanks_health_and_closes_streams(emulator: MarathonEmulator) -> None:
    start_checked(emulator)
    reader = SSEReader(emulator.url)
    try:
        reader.wait_event("event_stream_attached")
        emulator.leader_election(blank_health_for=30.0)
        assert reader.closed.wait(10)
        tasks = emulator.tasks("/web")
        assert [t["healthCheckResults"] for t in tasks] == [[], []]
        assert [t["state"] for t in tasks] == ["TASK_RUNNING", "TASK_RUNNING"]
        assert app_counts(emulator) == (2, 0, 0)
    finally:
        reader.close()


def test_health_results_come_back_after_the_election() -> None:
    with MarathonEmulator() as emu:
        start_checked(emu)
        before = len(emu.events("health_status_changed_event"))
        emu.leader_election(blank_health_for=0.3)
        wait_until(lambda: app_counts(emu) == (2, 2, 0))
        assert all(t["healthCheckResults"][0]["alive"] for t in emu.tasks("/web"))
        wait_until(lambda: len(emu.events("health_status_changed_event")) == before + 2)
        assert all(e["alive"] for e in emu.events("health_status_changed_event")[before:])


def test_unreachable_task_is_replaced_and_its_return_scales_back(
    emulator: MarathonEmulator,
) -> None:
    requests.post(
        emulator.url + "/v2/apps", json={"id": "/u", "cmd": "sleep 9", "instances": 2}, timeout=10
    )
    wait_until(lambda: not emulator.deployments())
    lost = emulator.tasks("/u")[0]["id"]
    emulator.set_task_reachable(lost, False)
    states = {t["id"]: t["state"] for t in emulator.tasks("/u")}
    assert states[lost] == "TASK_UNREACHABLE"
    wait_until(
        lambda: len(emulator.tasks("/u", states=["TASK_RUNNING"])) == 2, message="replacement"
    )
    event = [e for e in emulator.events("status_update_event") if e["taskId"] == lost][-1]
    assert event["taskStatus"] == "TASK_UNREACHABLE"
    emulator.set_task_reachable(lost, True)
    wait_until(lambda: len(emulator.tasks("/u")) == 2, message="one of three killed")
    assert lost in {t["id"] for t in emulator.tasks("/u")}  # YOUNGEST_FIRST: the replacement goes
