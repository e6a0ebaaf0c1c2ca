"""Marathon's load against the number of nodes, direct and in ZooKeeper mode (issue 11).

Run from the repository root: ``python -m bench.bench_marathon_load_nodes [--nodes 1 10 50]
[--window 60] [--resync 20] [--apps 10] [--modes marathon zookeeper]``.

For each mode and node count: the Marathon emulator (``--apps`` apps x 3 tasks with HTTP health
checks, no task processes) and N real sidecar processes (``python -m sidecar``), each with its
own real HAProxy binding the service ports on its own loopback address (127.0.0.2, 127.0.0.3...).
Direct mode: every sidecar follows the emulator. ZooKeeper mode: one ZooKeeper server, one
``marathon-publisher`` process following the emulator, and the sidecars watching ZooKeeper.

Once every sidecar serves every app, a window of ``--window`` seconds in which one task's health
flips every 2 s (events to follow), with ``--resync`` seconds between full snapshots (sidecars in
direct mode, the publisher in ZooKeeper mode) so that resyncs happen inside the window. The
emulator counts what it receives (its own request log, server side): requests, full snapshots
(``GET /v2/apps``) and open event streams. Requests per hour at the default resync interval
(300 s): snapshots in the window x (resync / 300) x (3600 / window) + other requests x
(3600 / window). Also printed: the requests it took until every node served (start-up).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from marathon_bridge.testing.tasks import echo_health_check
from testkit.apps import idle_app
from testkit.machine import find_haproxy, machine_facts
from testkit.ports import free_port
from testkit.process import SidecarProcess
from testkit.publisher import PublisherProcess
from testkit.waiting import wait_until
from testkit.zookeeper import ZooKeeperServer

ZK_PATH = "/smartstack/services"
TASKS = 3
FLIP_EVERY = 2.0
DEFAULT_RESYNC = 300.0


def app_definition(index: int) -> dict[str, Any]:
    app = idle_app(f"/load/app-{index:02d}", TASKS, HAPROXY_0_MODE="http")
    app["healthChecks"] = [echo_health_check()]  # the bench sets each task's health itself
    return app


def is_snapshot(method: str, path: str) -> bool:
    return method == "GET" and path.rstrip("/") == "/v2/apps"


class Nodes:
    """N sidecar processes (and, in ZooKeeper mode, the server and the publisher)."""

    def __init__(self, mode: str, count: int, marathon_url: str, resync: float) -> None:
        self.mode = mode
        self.work = Path(tempfile.mkdtemp(prefix="ld-", dir="/tmp"))  # short: socket paths
        self.zookeeper: Optional[ZooKeeperServer] = None
        self.publisher: Optional[PublisherProcess] = None
        common = ["--resync-interval", f"{resync:g}", "--empty-confirm", "30",
                  "--log-level", "WARNING", "--log-format", "json"]  # fmt: skip
        if mode == "zookeeper":
            self.zookeeper = ZooKeeperServer(self.work / "zk", tick_ms=500)
            self.zookeeper.start()
            self.publisher = PublisherProcess(
                self.work, "publisher", marathon_url, self.zookeeper.address, ZK_PATH, *common
            )
            source = ["--source", "zookeeper", "--zookeeper", self.zookeeper.address,
                      "--zk-path", ZK_PATH]  # fmt: skip
        else:
            source = ["--marathon", marathon_url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARATHON_")}
        haproxy = find_haproxy()
        self.sidecars = []
        for i in range(count):
            args = [*source, *common, "--bind", f"127.0.0.{i + 2}"]
            state = str(self.work / f"n{i}")
            self.sidecars.append(SidecarProcess(args, state, free_port(), haproxy, env=env))

    def start(self, apps: int) -> None:
        for sidecar in self.sidecars:
            Path(sidecar.state_dir).mkdir(parents=True)
            sidecar.start()
        for sidecar in self.sidecars:
            wait_until(functools.partial(self.serves, sidecar, apps), 600, "every node to serve")

    @staticmethod
    def serves(sidecar: SidecarProcess, apps: int) -> bool:
        if sidecar.exited():
            raise RuntimeError(f"a sidecar exited: {sidecar.log_tail()}")
        code, body = sidecar.status("/services")
        return code == 200 and len(json.loads(body).get("services", [])) == apps

    def stop(self) -> None:
        for sidecar in self.sidecars:
            sidecar.stop()
        if self.publisher is not None:
            self.publisher.stop()
        if self.zookeeper is not None:
            self.zookeeper.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def flip_health(emulator: MarathonEmulator, app_ids: list[str], seconds: float) -> None:
    """One task's health goes down, then up on the next turn, every FLIP_EVERY seconds."""
    deadline = time.monotonic() + seconds
    turn = 0
    down: Optional[str] = None
    while time.monotonic() < deadline:
        if down is not None:
            emulator.set_task_health(down, True)
            down = None
        else:
            tasks = emulator.tasks(app_ids[turn % len(app_ids)], ("TASK_RUNNING",))
            down = str(tasks[0]["id"])
            emulator.set_task_health(down, False)
        turn += 1
        time.sleep(max(0.0, min(FLIP_EVERY, deadline - time.monotonic())))
    if down is not None:
        emulator.set_task_health(down, True)


def measure(mode: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    with MarathonEmulator(heartbeat_interval=10.0) as emulator:
        client = MarathonClient(emulator.url, timeout=(3.0, 10.0))
        app_ids = []
        for index in range(args.apps):
            app_ids.append(client.create_app(app_definition(index))[0]["id"])
        nodes = Nodes(mode, count, emulator.url, args.resync)
        try:
            began, started = len(emulator.requests), time.monotonic()
            nodes.start(args.apps)
            startup_s, opened = time.monotonic() - started, len(emulator.requests)
            flip_health(emulator, app_ids, args.window)
            seen = [(r.method, r.path) for r in emulator.requests[opened:]]
            streams = emulator.event_stream_count()
        finally:
            nodes.stop()
            client.close()
    snapshots = sum(1 for m, p in seen if is_snapshot(m, p))
    others = len(seen) - snapshots
    per_hour = (snapshots * args.resync / DEFAULT_RESYNC + others) * 3600.0 / args.window
    return {
        "mode": mode,
        "nodes": count,
        "event_streams": streams,
        "startup_requests": opened - began,
        "startup_s": round(startup_s, 1),
        "window_requests": len(seen),
        "window_snapshots": snapshots,
        "requests_per_hour_at_300s": round(per_hour, 1),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--modes", nargs="+", default=["marathon", "zookeeper"])
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--resync", type=float, default=20.0)
    parser.add_argument("--apps", type=int, default=10)
    args = parser.parse_args(argv)
    print(json.dumps({"machine_at_start": machine_facts()}))
    for mode in args.modes:
        for count in args.nodes:
            print(json.dumps(measure(mode, count, args)), flush=True)
    print(json.dumps({"machine_at_end": machine_facts()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
