"""Publisher failover: the leading marathon-publisher killed, until the standby writes (issue 11).

Run from the repository root: ``python -m bench.bench_publisher_failover [--runs 3] [--apps 10]
[--session-timeout 10]``.

Two real `marathon-publisher` processes (the test kit's `PublisherProcess`) follow the Marathon
emulator (`--apps` apps x 3 tasks, no task processes) and write into one ZooKeeper server (tick
500 ms, so the publishers get the `--session-timeout` they ask for; 10 s is their default). Each
run stops the leader, either with SIGKILL (a crash: the standby waits for the dead leader's
session to expire) or SIGTERM (a planned stop: the leader leaves the election at once), and at
the same moment scales one app up by one task, a change only a leader can write. Measured from
the signal: until the standby's /health says `leader`, and until ZooKeeper holds the new task.
Then every instance node that existed before is compared (creation and modification zxids): the
goal is that none was deleted or recreated. A new standby is started for the next run.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Optional

from kazoo.client import KazooClient

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from sidecar.sources.zookeeper import mapping
from testkit.apps import idle_app
from testkit.machine import load_average
from testkit.publisher import PublisherProcess, children_stats, instances
from testkit.waiting import wait_until
from testkit.zookeeper import ZooKeeperServer

ZK_PATH = "/smartstack/services"
TASKS = 3
POLL = 0.02


class Cluster:
    """The emulator, one ZooKeeper server, a reader and the publishers started so far."""

    def __init__(self, work: Path, marathon: MarathonEmulator, zookeeper: ZooKeeperServer,
                 apps: int, session_timeout: float) -> None:  # fmt: skip
        self.work = work
        self.marathon = marathon
        self.zookeeper = zookeeper
        self.client = MarathonClient(marathon.url, timeout=(3.0, 10.0))
        self.reader = KazooClient(hosts=zookeeper.address)
        self.reader.start(timeout=30)
        self.app_ids = [f"/bench/app-{i:03d}" for i in range(apps)]
        self.session_timeout = session_timeout
        self.started: list[PublisherProcess] = []

    def publisher(self) -> PublisherProcess:
        name = f"p{len(self.started)}"
        extra = ("--zk-session-timeout", f"{self.session_timeout:g}", "--log-level", "WARNING")
        process = PublisherProcess(self.work, name, self.marathon.url, self.zookeeper.address,
                                   ZK_PATH, *extra)  # fmt: skip
        self.started.append(process)
        return process

    def running_tasks(self, app_id: str) -> set[str]:
        return {t["id"] for t in self.marathon.tasks(app_id, ("TASK_RUNNING",))}

    def published_tasks(self, app_id: str) -> set[str]:
        service = mapping.service_name(app_id, 0)
        return {i.label("task_id") or "" for i in instances(self.reader, ZK_PATH, service)}

    def in_sync(self) -> bool:
        return all(self.published_tasks(a) == self.running_tasks(a) for a in self.app_ids)

    def stats(self) -> dict[tuple[str, str], tuple[int, int]]:
        found = {}
        for app_id in self.app_ids:
            service = mapping.service_name(app_id, 0)
            for name, stat in children_stats(self.reader, ZK_PATH, service).items():
                found[(service, name)] = stat
        return found

    def stop(self) -> None:
        for process in self.started:
            process.stop()
        self.reader.stop()
        self.reader.close()
        self.client.close()


def roles(processes: list[PublisherProcess]) -> Optional[tuple[PublisherProcess, PublisherProcess]]:
    found = {p.role(): p for p in processes}
    if set(found) != {"leader", "standby"}:
        return None
    return found["leader"], found["standby"]


def one_failover(
    cluster: Cluster, pair: list[PublisherProcess], sig: signal.Signals
) -> dict[str, float]:
    leader, standby = wait_until(lambda: roles(pair), 60, "one leader and one standby")
    wait_until(cluster.in_sync, 60, "ZooKeeper to hold every task")
    before = cluster.stats()
    target = cluster.app_ids[0]
    count = len(cluster.running_tasks(target)) + 1
    killed = time.monotonic()
    leader.signal(sig)
    cluster.client.scale_app(target, count)
    seen: dict[str, float] = {}  # when the standby led, when the scale-up was written

    def written() -> bool:
        now = time.monotonic()
        if "led" not in seen and standby.role() == "leader":
            seen["led"] = now
        if len(cluster.published_tasks(target)) == count:
            seen["wrote"] = now
        return "wrote" in seen

    wait_until(written, 120, f"a write after the leader's {sig.name}", interval=POLL)
    wrote = seen["wrote"]
    led = seen.get("led", 0.0)
    after = cluster.stats()
    changed = sum(1 for key, stat in before.items() if after.get(key) != stat)
    pair.remove(leader)
    leader.stop()
    return {
        "standby_leads_s": (led or wrote) - killed,
        "standby_writes_s": wrote - killed,
        "nodes_before": float(len(before)),
        "unchanged_nodes_recreated": float(changed),
        "created_by_new_leader": standby.metric("marathon_publisher_zk_nodes_created_total"),
        "deleted_by_new_leader": standby.metric("marathon_publisher_zk_nodes_deleted_total"),
    }


def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"SIGKILL": [], "SIGTERM": []}
    with tempfile.TemporaryDirectory() as tmp, MarathonEmulator(heartbeat_interval=0.5) as emu:
        zookeeper = ZooKeeperServer(Path(tmp) / "zk", tick_ms=500)
        zookeeper.start()
        cluster = Cluster(Path(tmp), emu, zookeeper, args.apps, args.session_timeout)
        try:
            for app_id in cluster.app_ids:
                cluster.client.create_app(idle_app(app_id, TASKS))
            pair = [cluster.publisher()]
            wait_until(lambda: pair[0].role() == "leader", 60, "the first publisher to lead")
            for _ in range(args.runs):
                for sig in (signal.SIGKILL, signal.SIGTERM):
                    pair.append(cluster.publisher())
                    results[sig.name].append(one_failover(cluster, pair, sig))
        finally:
            cluster.stop()
            zookeeper.stop()
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="failovers of each kind")
    parser.add_argument("--apps", type=int, default=10)
    parser.add_argument("--session-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    print(f"load average at start: {load_average()}")
    results = run(args)
    print(f"load average at the end: {load_average()}")
    for kind, runs in results.items():
        for number, result in enumerate(runs, 1):
            shown = "  ".join(f"{k} {v:g}" for k, v in result.items())
            print(f"{kind} run {number}: {shown}")
        for key in ("standby_leads_s", "standby_writes_s", "unchanged_nodes_recreated"):
            values = [r[key] for r in runs]
            median, worst = statistics.median(values), max(values)
            print(f"{kind} median {key:<26} {median:8.2f}  max {worst:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
