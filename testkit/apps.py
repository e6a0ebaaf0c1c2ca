"""Marathon app definitions for tests that run real tasks, and how those tasks are doing.

:func:`echo_app` is an app of echo tasks (``marathon_bridge.testing.echo_server``: each answers
``GET /`` with its own task id and ``GET /health`` with 200) on one service port;
:func:`idle_app` one of tasks that only sleep, on a port Marathon picks.
"""

from __future__ import annotations

from typing import Any, Optional

from marathon_bridge.testing import MarathonEmulator
from marathon_bridge.testing.tasks import echo_health_check, echo_server_cmd
from testkit.http import ask


def echo_app(
    app_id: str,
    service_port: int,
    instances: int = 1,
    *,
    mode: Optional[str] = "http",
    group: Optional[str] = None,
    health: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Echo tasks on one service port; ``mode`` is ``HAPROXY_0_MODE`` (``None``: no label,
    the sidecar's default), ``group`` its ``HAPROXY_GROUP`` (served only by the sidecar of
    that group), ``health`` adds :func:`~marathon_bridge.testing.tasks.echo_health_check`;
    ``extra`` fields are set last (``labels`` replaces the labels above)."""
    app: dict[str, Any] = {
        "id": app_id,
        "cmd": echo_server_cmd(),
        "instances": instances,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": service_port, "protocol": "tcp", "name": "http"}],
    }
    labels = {"HAPROXY_0_MODE": mode} if mode is not None else {}
    if group is not None:
        labels["HAPROXY_GROUP"] = group
    if labels:
        app["labels"] = labels
    if health:
        app["healthChecks"] = [echo_health_check()]
    app.update(extra)
    return app


def idle_app(app_id: str, instances: int, **labels: str) -> dict[str, Any]:
    """Tasks that sleep (``sleep 1000``) on one port Marathon picks, with these labels."""
    app: dict[str, Any] = {
        "id": app_id,
        "cmd": "sleep 1000",
        "instances": instances,
        "cpus": 0.01,
        "mem": 16,
        "portDefinitions": [{"port": 0}],
    }
    if labels:
        app["labels"] = labels
    return app


def healthy_task_ids(emulator: MarathonEmulator, app_id: str) -> set[str]:
    """Ids of the app's running tasks whose every health check passes (none: not healthy)."""
    out = set()
    for task in emulator.tasks(app_id, states=["TASK_RUNNING"]):
        results = task.get("healthCheckResults") or []
        if results and all(r.get("alive") for r in results):
            out.add(task["id"])
    return out


def served_by_healthy(emulator: MarathonEmulator, app_id: str, port: int, tries: int = 8) -> bool:
    """``tries`` new connections to 127.0.0.1:``port`` are answered by exactly the app's
    healthy tasks (each echo task answers with its task id)."""
    answers = {ask(port) for _ in range(tries)}
    return answers == healthy_task_ids(emulator, app_id)
