"""A task whose command fails is visible as in Marathon: a ``TASK_FAILED`` status with the
executor's message, the app's ``lastTaskFailure`` (RAML ``TaskFailure``), the queue's launch
delay (backoff) -- and, from the emulator, a log line that says where the task's output is."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import requests

from marathon_bridge.testing import MarathonEmulator
from testkit import wait_until

TASK_FAILURE_KEYS = [
    "appId",
    "host",
    "message",
    "state",
    "taskId",
    "timestamp",
    "version",
    "slaveId",
]


def test_a_failing_command_fills_last_task_failure_and_the_queue_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="marathon_bridge.testing")
    app = {"id": "/crash", "cmd": "echo cannot start >&2; exit 3", "backoffSeconds": 60}
    with MarathonEmulator(run_tasks=True, backoff_scale=1.0) as marathon:
        assert requests.post(marathon.url + "/v2/apps", json=app, timeout=10).status_code == 201

        def failed() -> Any:
            body = requests.get(marathon.url + "/v2/apps/crash", timeout=10).json()["app"]
            return body if "lastTaskFailure" in body else None

        got = wait_until(failed, timeout=30, message="a failed task")
        failure = got["lastTaskFailure"]
        assert list(failure) == TASK_FAILURE_KEYS
        assert (failure["appId"], failure["state"], failure["host"]) == (
            "/crash",
            "TASK_FAILED",
            "127.0.0.1",
        )
        assert failure["message"] == "Command exited with status 3"
        assert failure["version"] == got["version"]
        [entry] = requests.get(marathon.url + "/v2/queue", timeout=10).json()["queue"]
        assert entry["app"]["id"] == "/crash" and entry["count"] == 1
        assert entry["delay"]["overdue"] is False and 50 <= entry["delay"]["timeLeftSeconds"] <= 60
        [record] = [r for r in caplog.records if r.getMessage() == "task failed"]
        assert (record.task_id, record.app_id) == (failure["taskId"], "/crash")  # type: ignore[attr-defined]
        assert record.reason == "Command exited with status 3"  # type: ignore[attr-defined]
        stderr = Path(record.sandbox) / "stderr"  # type: ignore[attr-defined]
        assert stderr.read_text() == "cannot start\n"
