"""A failed deploy says why (Marathon's lastTaskFailure and the queue's launch delay), progress
counts only the new version's tasks, and waiting takes what the client returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from marathon_bridge.client import DeploymentRef, MarathonClient
from marathon_bridge.deploy import WaitTarget, compute_progress, wait_for_deployments
from marathon_bridge.errors import DeploymentTimeout
from marathon_bridge.progress import launch_delay
from marathon_bridge.testing import MarathonEmulator

NEW = "2024-05-02T10:00:00.000Z"
OLD = "2024-05-01T10:00:00.000Z"


def task(version: str, state: str = "TASK_RUNNING", alive: Any = True) -> dict[str, Any]:
    results = [] if alive is None else [{"alive": alive}]
    return {"id": f"t-{version}-{state}", "version": version, "state": state,
            "healthCheckResults": results}  # fmt: skip


def app_with(tasks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "/web",
        "instances": 3,
        "version": NEW,
        "versionInfo": {"lastConfigChangeAt": NEW, "lastScalingAt": NEW},
        "healthChecks": [{"protocol": "HTTP"}],
        "tasksRunning": len(tasks),
        "tasksHealthy": len(tasks),
        "tasks": tasks,
        **extra,
    }


def test_progress_counts_only_the_new_versions_tasks() -> None:
    app = app_with(
        [task(OLD), task(OLD), task(NEW), task(NEW, alive=None), task(NEW, "TASK_STAGING")]
    )
    progress = compute_progress(WaitTarget("d", "/web"), {"id": "d"}, app)
    assert (progress.running, progress.healthy, progress.wanted) == (2, 1, 3)
    assert str(progress) == "/web: deploying, 2/3 running, 1/3 healthy"


def test_progress_shows_the_new_versions_last_failure_and_the_launch_delay() -> None:
    failure = {
        "appId": "/web",
        "host": "agent-1",
        "message": "Command exited with status 3",
        "state": "TASK_FAILED",
        "taskId": "t",
        "timestamp": NEW,
        "version": NEW,
    }
    app = app_with([task(OLD)], lastTaskFailure=failure)
    queue = [
        {"app": {"id": "/web"}, "count": 3, "delay": {"timeLeftSeconds": 12, "overdue": False}}
    ]
    progress = compute_progress(
        WaitTarget("d", "/web"), {"id": "d"}, app, launch_delay(queue, "/web")
    )
    assert str(progress) == (
        "/web: deploying, 0/3 running, 0/3 healthy; last task failure: TASK_FAILED on agent-1: "
        "Command exited with status 3; Marathon delays the next launch by 12 s (backoff)"
    )
    older = app_with([task(OLD)], lastTaskFailure={**failure, "version": OLD})
    assert compute_progress(WaitTarget("d", "/web"), None, older).failure == ""
    assert launch_delay(queue, "/other") is None


@pytest.fixture
def crashing(tmp_path: Path) -> str:
    path = tmp_path / "crash.json"
    path.write_text('{"id": "/crash", "cmd": "exit 3", "backoffSeconds": 60}')
    return str(path)


def test_a_failed_deploy_says_why(run_cli: Callable, crashing: str) -> None:
    with MarathonEmulator(run_tasks=True, backoff_scale=1.0) as marathon:
        result = run_cli("deploy", crashing, "-m", marathon.url, "--timeout", "3", "-o", "json")
    assert result.code == 1
    error = result.json()["error"]
    assert error["kind"] == "deployment" and error["app_ids"] == ["/crash"]
    assert (
        "last task failure: TASK_FAILED on 127.0.0.1: Command exited with status 3"
        in (error["message"])
    )
    assert "Marathon delays the next launch by" in error["message"]
    progress = [line for line in result.err.splitlines() if line.startswith("/crash: deploying")]
    assert any("last task failure: TASK_FAILED" in line for line in progress)


def test_wait_for_deployments_takes_the_clients_deployment_refs() -> None:
    with MarathonEmulator() as marathon, MarathonClient(marathon.url) as client:
        _app, created = client.create_app({"id": "/web", "cmd": "sleep 100", "instances": 2})
        assert isinstance(created, DeploymentRef)
        seen: list[str] = []
        wait_for_deployments(client, [created], timeout=30, progress=lambda p: seen.append(str(p)))
        assert seen[-1] == "/web: done, 2/2 running"
        scaled = client.scale_app("/web", 3)
        wait_for_deployments(client, [scaled.deployment_id], timeout=30)  # an id works too
        assert client.get_app("/web")["tasksRunning"] == 3
        gone = client.delete_app("/web")
        wait_for_deployments(client, [gone], timeout=30)  # expected gone: the plan stops the app


def test_waiting_for_a_ref_that_does_not_finish_names_its_app() -> None:
    with (
        MarathonEmulator(deployment_delay=30.0) as marathon,
        MarathonClient(marathon.url) as client,
    ):
        _app, ref = client.create_app({"id": "/slow", "cmd": "sleep 100"})
        with pytest.raises(DeploymentTimeout) as timed_out:
            wait_for_deployments(client, [ref], timeout=0.3, poll_interval=0.05)
    assert timed_out.value.app_ids == ["/slow"]
    assert f"{ref.deployment_id} of /slow" in str(timed_out.value)
