"""Marathon load: requests per hour one sidecar makes to Marathon at steady state.

Run: ``python -m bench.bench_marathon_load [--quick] [--window 120] [--apps 10]``.

The sidecar runs as ``python -m sidecar`` with its default resync interval (300 s, jittered);
the emulator counts every request it receives (its request log, server side). The cluster has
``--apps`` apps of 3 echo tasks; during the window a task health flip is published every 2 s, so
the event stream carries traffic the sidecar must follow without asking Marathon again.

Two measured windows, extrapolated to an hour:

1. steady window (``--window`` s, resync 300 s): requests of every kind except full snapshots
   (``GET /v2/apps`` with tasks); this rate x 3600 s. A window shorter than 300 s usually holds no
   resync at all, so resyncs are counted in window 2;
2. resync cost: the same node with ``--resync-interval 2``, over ``--resync-window`` s: requests
   per resync (snapshot requests + anything else it triggers), times 3600 / 300 = 12 resyncs an
   hour (the jitter averages out).

Requests per hour = steady rate x 3600 + 12 x requests per resync. Also printed: the open event
stream connections (one expected) and the request counts by method and path.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections import Counter
from typing import Any, Optional

from testkit.apps import echo_app
from testkit.machine import machine_facts
from testkit.ports import free_ports
from testkit.system import System, SystemOptions
from testkit.waiting import wait_until

DEFAULT_RESYNC = 300.0
TASKS_PER_APP = 3
FLIP_EVERY = 2.0


def is_snapshot(method: str, path: str) -> bool:
    return method == "GET" and path.rstrip("/") == "/v2/apps"


def fewer_healthy(system: System, app_id: str) -> bool:
    return len(system.healthy_ids(app_id)) < TASKS_PER_APP


def request_keys(system: System, start: int) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in system.emu.requests[start:]]


def setup(system: System, apps: int) -> list[str]:
    ports = free_ports(apps)
    app_ids = [f"/bench/load/app-{i}" for i in range(apps)]
    for app_id, port in zip(app_ids, ports):
        system.client.create_app(echo_app(app_id, port, TASKS_PER_APP))
    for app_id, port in zip(app_ids, ports):
        system.wait_scaled(app_id, port, TASKS_PER_APP, 120)
    return app_ids


def observe(system: System, app_ids: list[str], seconds: float) -> list[tuple[str, str]]:
    """Flip one task's health every FLIP_EVERY s for ``seconds``; the requests Marathon got."""
    start = len(system.emu.requests)
    deadline = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < deadline:
        app_id = app_ids[turn % len(app_ids)]
        task_id = sorted(system.healthy_ids(app_id) or {""})[0]
        if task_id:
            system.emu.set_task_health(task_id, False)
            wait_until(functools.partial(fewer_healthy, system, app_id), 10)
            system.emu.set_task_health(task_id, True)
        turn += 1
        time.sleep(max(0.0, min(FLIP_EVERY, deadline - time.monotonic())))
    return request_keys(system, start)


def measure(resync: float, apps: int, window: float) -> dict[str, Any]:
    options = SystemOptions(in_process=False, resync_interval=resync, heartbeat_interval=10.0)
    with System(options) as system:
        app_ids = setup(system, apps)
        time.sleep(2.0)  # let the start-up requests finish before the window opens
        seen = observe(system, app_ids, window)
        return {
            "window_s": window,
            "requests": len(seen),
            "snapshots": sum(1 for m, p in seen if is_snapshot(m, p)),
            "by_path": dict(Counter(f"{m} {p}" for m, p in seen).most_common()),
            "event_streams_open": system.emu.event_stream_count(),
        }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 s + 10 s windows (smoke run)")
    parser.add_argument("--window", type=float, default=120.0, help="steady window, seconds")
    parser.add_argument("--resync-window", type=float, default=30.0, help="resync window, s")
    parser.add_argument("--apps", type=int, default=10)
    args = parser.parse_args(argv)
    window = 30.0 if args.quick else args.window
    resync_window = 10.0 if args.quick else args.resync_window

    steady = measure(DEFAULT_RESYNC, args.apps, window)
    fast = measure(2.0, args.apps, resync_window)
    steady_other = steady["requests"] - steady["snapshots"]
    fast_other = fast["requests"] - fast["snapshots"]
    # requests a resync costs: its snapshot(s), plus what it brought beyond the steady rate
    extra = max(0.0, fast_other - steady_other / window * resync_window)
    per_resync = (fast["snapshots"] + extra) / max(1, fast["snapshots"])
    per_hour = steady_other / window * 3600.0 + 3600.0 / DEFAULT_RESYNC * per_resync
    result = {
        "apps": args.apps,
        "tasks": args.apps * TASKS_PER_APP,
        "health_flips_per_s": 1.0 / FLIP_EVERY,
        "steady_window": steady,
        "resync_window_resync_2s": fast,
        "requests_per_resync": round(per_resync, 2),
        "steady_requests_per_hour_without_resyncs": round(steady_other / window * 3600.0, 1),
        "requests_per_hour": round(per_hour, 1),
        "how": "steady non-snapshot rate x 3600 + (3600 / 300) resyncs x requests per resync",
        "machine": machine_facts(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
