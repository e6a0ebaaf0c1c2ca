"""run_tasks=True: real local processes (the echo server), real health checks, kills and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from marathon_bridge.testing import MarathonEmulator, echo_server_cmd
from testkit import wait_until


def echo_app(
    app_id: str = "/echo", instances: int = 2, check_path: str = "/health"
) -> dict[str, Any]:
    return {
        "id": app_id,
        "cmd": echo_server_cmd("--drain", "0.1"),
        "instances": instances,
        "healthChecks": [
            {"protocol": "HTTP", "path": check_path, "portIndex": 0, "gracePeriodSeconds": 1}
        ],
    }


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def runner() -> Iterator[MarathonEmulator]:
    with MarathonEmulator(run_tasks=True, health_grace=0.3) as emu:
        yield emu


def deploy(emu: MarathonEmulator, app: dict[str, Any]) -> list[dict[str, Any]]:
    assert requests.post(emu.url + "/v2/apps", json=app, timeout=10).status_code == 201
    wait_until(lambda: not emu.deployments(), timeout=30, message="deployment done")
    return emu.tasks(app["id"])


def test_tasks_serve_real_traffic_on_their_host_ports(runner: MarathonEmulator) -> None:
    tasks = deploy(runner, echo_app())
    assert len(tasks) == 2
    for task in tasks:
        port = task["ports"][0]
        answer = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert answer.text == task["id"]
        assert task["healthCheckResults"][0]["alive"] is True
    app = requests.get(runner.url + "/v2/apps/echo", timeout=10).json()["app"]
    assert (app["tasksRunning"], app["tasksHealthy"]) == (2, 2)


def test_kill_goes_killing_then_killed_and_the_process_is_gone(runner: MarathonEmulator) -> None:
    tasks = deploy(runner, echo_app(instances=1))
    task_id = tasks[0]["id"]
    pid = runner.task_pids()[task_id]
    assert requests.delete(runner.url + f"/v2/apps/echo/tasks/{task_id}", timeout=10).ok

    def states() -> list[str]:
        return [
            e["taskStatus"] for e in runner.events("status_update_event") if e["taskId"] == task_id
        ]

    wait_until(lambda: "TASK_KILLED" in states(), timeout=30)
    assert states() == ["TASK_STAGING", "TASK_RUNNING", "TASK_KILLING", "TASK_KILLED"]
    wait_until(lambda: not pid_alive(pid), message="task process gone")
    wait_until(lambda: runner.tasks("/echo", states=["TASK_RUNNING"]), timeout=30)  # replaced


def test_killing_task_keeps_serving_during_the_grace_period() -> None:
    with MarathonEmulator(run_tasks=True, kill_grace=60.0) as emu:
        task = deploy(emu, echo_app(instances=1))[0]
        emu.kill_task(task["id"])
        killing = [t for t in emu.tasks("/echo") if t["id"] == task["id"]]
        assert killing[0]["state"] == "TASK_KILLING"
        answer = requests.get(f"http://127.0.0.1:{task['ports'][0]}/", timeout=10)
        assert answer.text == task["id"]


def test_never_healthy_app_keeps_its_deployment_open(runner: MarathonEmulator) -> None:
    response = requests.post(
        runner.url + "/v2/apps", json=echo_app("/sick", 1, "/unhealthy"), timeout=10
    )
    deployment_id = response.headers["Marathon-Deployment-Id"]

    def unhealthy() -> bool:
        tasks = runner.tasks("/sick", states=["TASK_RUNNING"])
        results = tasks[0]["healthCheckResults"] if tasks else []
        return bool(results and results[0].get("lastFailureCause", "").startswith("503"))

    wait_until(unhealthy, timeout=30)
    result = runner.tasks("/sick")[0]["healthCheckResults"][0]
    assert result["alive"] is False and "lastSuccess" not in result
    assert [d["id"] for d in runner.deployments()] == [deployment_id]
    failed = runner.events("failed_health_check_event")
    assert failed and failed[0]["healthCheck"]["path"] == "/unhealthy"
    assert list(failed[0]) == ["appId", "eventType", "healthCheck", "taskId", "timestamp"]


def test_exiting_process_fails_and_is_relaunched(runner: MarathonEmulator) -> None:
    requests.post(runner.url + "/v2/apps", json={"id": "/crash", "cmd": "exit 3"}, timeout=10)

    def failures() -> list[dict[str, Any]]:
        return [e for e in runner.events("status_update_event") if e["taskStatus"] == "TASK_FAILED"]

    wait_until(lambda: len(failures()) >= 2, timeout=30)
    assert failures()[0]["message"] == "Command exited with status 3"
    app = requests.get(runner.url + "/v2/apps/crash", timeout=10).json()["app"]
    assert app["lastTaskFailure"]["state"] == "TASK_FAILED"
    assert app["lastTaskFailure"]["appId"] == "/crash"


def test_task_environment_is_set(runner: MarathonEmulator) -> None:
    cmd = (
        'echo "$PORT0 $PORT $PORTS $HOST $MESOS_TASK_ID $MARATHON_APP_ID" > env.txt && '
        + echo_server_cmd()
    )
    app = {"id": "/env", "cmd": cmd, "portDefinitions": [{"port": 0}, {"port": 0}]}
    task = deploy(runner, app)[0]
    with open(os.path.join(runner.task_sandbox(task["id"]), "env.txt")) as env_file:
        line = env_file.read().split()
    ports = task["ports"]
    assert line == [
        str(ports[0]),
        str(ports[0]),
        f"{ports[0]},{ports[1]}",
        "127.0.0.1",
        task["id"],
        "/env",
    ]


def test_stop_leaves_no_process_behind() -> None:
    emu = MarathonEmulator(run_tasks=True).start()
    try:
        deploy(emu, echo_app(instances=2))
        pids = list(emu.task_pids().values())
        assert len(pids) == 2 and all(pid_alive(p) for p in pids)
    finally:
        emu.stop()
    wait_until(lambda: not any(pid_alive(p) for p in pids), message="processes gone")


def test_echo_server_drains_on_sigterm() -> None:
    env = dict(os.environ, PORT0="0", MESOS_TASK_ID="drain-test")
    proc = subprocess.Popen(
        [sys.executable, "-m", "marathon_bridge.testing.echo_server", "--drain", "1.0"],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        port = int(line.rsplit(":", 1)[1])
        session = requests.Session()
        assert session.get(f"http://127.0.0.1:{port}/", timeout=10).text == "drain-test"
        assert session.get(f"http://127.0.0.1:{port}/unhealthy", timeout=10).status_code == 503
        assert session.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
        slow: list[int] = []
        worker = threading.Thread(
            target=lambda: slow.append(
                requests.get(f"http://127.0.0.1:{port}/sleep/300", timeout=10).status_code
            )
        )
        worker.start()
        proc.send_signal(signal.SIGTERM)
        worker.join(10)
        assert slow == [200]
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_unhealthy_replaces_failing_tasks() -> None:
    with MarathonEmulator(run_tasks=True, health_grace=0.3, kill_unhealthy=True) as emu:
        app = echo_app("/flaky", 1, "/unhealthy")
        app["healthChecks"][0]["maxConsecutiveFailures"] = 2
        requests.post(emu.url + "/v2/apps", json=app, timeout=10)
        kill = wait_until(lambda: emu.events("unhealthy_instance_kill_event"), timeout=30)[0]
        assert list(kill) == [
            "appId",
            "taskId",
            "instanceId",
            "version",
            "reason",
            "host",
            "slaveId",
            "eventType",
            "timestamp",
        ]
        assert kill["reason"]  # "503 Service Unavailable" (or refused while it starts)
        killed = [e for e in emu.events("status_update_event") if e["taskId"] == kill["taskId"]]
        wait_until(
            lambda: (
                "TASK_KILLED"
                in [
                    e["taskStatus"]
                    for e in emu.events("status_update_event")
                    if e["taskId"] == kill["taskId"]
                ]
            ),
            timeout=30,
        )
        assert killed[-1]["taskStatus"] in ("TASK_KILLING", "TASK_KILLED")
        assert emu.request_count >= 1


def test_process_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    with MarathonEmulator(run_tasks=True, kill_grace=0.1, kill_timeout=0.5) as emu:
        cmd = "trap '' TERM; while true; do sleep 0.05; done"
        requests.post(emu.url + "/v2/apps", json={"id": "/stubborn", "cmd": cmd}, timeout=10)
        task = wait_until(lambda: emu.tasks("/stubborn", states=["TASK_RUNNING"]), timeout=30)[0]
        pid = emu.task_pids()[task["id"]]
        emu.kill_task(task["id"])

        def killed() -> bool:
            return any(
                e["taskId"] == task["id"] and e["taskStatus"] == "TASK_KILLED"
                for e in emu.events("status_update_event")
            )

        wait_until(killed, timeout=30)
        wait_until(lambda: not pid_alive(pid), message="stubborn process gone")


def test_command_line_emulator_cleans_up_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "marathon_bridge.testing", "--port", "0", "--run-tasks"],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().strip().rsplit(" ", 1)[1]
        app = {"id": "/cli", "cmd": echo_server_cmd()}
        assert requests.post(url + "/v2/apps", json=app, timeout=10).status_code == 201

        def running_port() -> int:
            tasks = requests.get(url + "/v2/apps/cli/tasks", timeout=10).json()["tasks"]
            live = [t for t in tasks if t["state"] == "TASK_RUNNING"]
            return int(live[0]["ports"][0]) if live else 0

        port = wait_until(running_port, timeout=30)
        wait_until(lambda: _answers(port), timeout=30, message="task serving")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not _answers(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
    except requests.exceptions.RequestException:
        return False
