"""The in-process Marathon emulator (real HTTP and SSE on loopback) for tests and demos.

``MarathonEmulator`` answers as Marathon 1.10 does (shapes from ``REFERENCE.md`` and the shared
examples): app CRUD with Marathon's validation (``marathon_bridge.definitions``) and 400/404/409/
422 bodies, service ports from 10000 (lowest free, reused), deployments, tasks that stage, run,
pass health checks and die (``TASK_KILLING`` then ``TASK_KILLED``), versions and rollback,
``/v2/events`` with Jetty's exact framing, filters and heartbeats, a standby that proxies to the
leader (302 for the event stream), basic and token auth, and injectable faults.

Quick use::

    from marathon_bridge.testing import MarathonEmulator, echo_server_cmd

    with MarathonEmulator(run_tasks=True) as marathon:          # port 0: a free port
        requests.post(marathon.url + "/v2/apps", json={"id": "/web", "cmd": echo_server_cmd()})
        marathon.wait_for(lambda: marathon.tasks("/web", states=["TASK_RUNNING"]))

Constructor knobs (seconds unless said): ``deployment_delay`` (a deployment lasts at least this),
``task_start_delay`` (staging -> running), ``health_delay`` (simulated checks pass after this),
``health_interval`` / ``health_grace`` (real probes with ``run_tasks``), ``kill_grace`` (killing
-> SIGTERM / killed), ``kill_timeout`` (SIGTERM -> SIGKILL), ``heartbeat_interval``,
``max_outstanding`` (per-stream queue; overflow closes the stream), ``agents`` (host names tasks
are spread over), ``host_port_range``, ``auth`` (``BasicAuth``/``(user, password)`` -> Jetty 401
page; ``TokenAuth``/``"token"`` -> JSON 401 without a header, 403 with a wrong one),
``keep_unknown_fields`` (Marathon reads only the fields it declares and drops the rest, at every
depth; so does the emulator unless this is set -- every request body is kept in ``requests``).

Test hooks: ``set_task_health(task_id, True|False|None)``, ``fail_task``, ``kill_task``,
``set_task_reachable(task_id, False|True)`` (TASK_UNREACHABLE and a replacement, then back),
``leader_election(blank_health_for=s)``, ``close_event_streams()``, ``suspend()``/``resume()``
(Marathon away, tasks keep running), ``faults`` (:class:`FaultInjector`: ``add(path_glob,
status=|body=|delay=|drop=|truncate=, times=, duration=)``, ``respond_json(path, body)``),
``standby()``, ``wait_for(predicate)``, ``on_event(listener)``; snapshots ``apps()``, ``app(id)``,
``tasks(app_id, states)``, ``deployments()``, ``events(type)``, ``requests``, ``task_pids()``.

``main(argv)`` runs one from the command line (``marathon-bridge emulator`` calls
:func:`run_emulator`); ``python -m marathon_bridge.testing.echo_server`` is the task program.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Optional

from marathon_bridge.testing.emulator import MarathonEmulator, run_emulator
from marathon_bridge.testing.faults import Fault, FaultInjector
from marathon_bridge.testing.server import RecordedRequest
from marathon_bridge.testing.tasks import echo_server_cmd

__all__ = [
    "Fault",
    "FaultInjector",
    "MarathonEmulator",
    "RecordedRequest",
    "echo_server_cmd",
    "main",
    "run_emulator",
]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m marathon_bridge.testing [--host H] [--port P] [--run-tasks]``."""
    parser = argparse.ArgumentParser(
        prog="marathon-bridge emulator", description="Run the Marathon 1.10 emulator."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port to bind (default 8080; 0 = any)"
    )
    parser.add_argument(
        "--run-tasks", action="store_true", help="run each task's cmd as a real local process"
    )
    parser.add_argument(
        "--heartbeat-interval", type=float, default=10.0, help="seconds between SSE heartbeats"
    )
    args = parser.parse_args(argv)
    return run_emulator(
        args.host, args.port, args.run_tasks, heartbeat_interval=args.heartbeat_interval
    )
