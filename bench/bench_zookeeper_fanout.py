"""Fan-out: one publisher write until every one of 500 sidecar watchers has it (issue 11).

Run from the repository root: ``python -m bench.bench_zookeeper_fanout [--watchers 500]
[--processes 10] [--changes 100] [--services 20] [--standalone] [--tick-ms 500] [--probe]``.

A three-server ensemble on 127.0.1.1-3 (the test kit's; ``--standalone``: one server), a
`Publisher` in this process writing the catalog (`--services` apps x 3 tasks, as
`marathon-publisher` writes them), and a `WatcherFleet`: `--watchers` real `CatalogWatcher`s, each
on its own ZooKeeper session, spread over `--processes` processes. Each change replaces one task of
one service (a delete plus a create in one transaction, with a new `version` label); the clock
starts when the catalog is handed to the publisher (`publish()`, so the publisher's own
transaction is included) and stops at each watcher's delivery of the new version. The next change
starts once every watcher has the last one. Prints, in milliseconds, p50/p90/p99/max of the time
until the *last* watcher has a change, and of every single delivery.

``--probe``: the question a 2-core machine cannot answer otherwise, what one node sees when it
has its CPU to itself. The fleet runs at niceness 10; the ZooKeeper servers, this process (the
publisher) and one extra watcher, the probe, alone in its own process, run at niceness -5 (so run
it as root). The probe's delays are then the ensemble's fan-out to 500 sessions plus one node's
own work, printed apart. The servers tick every
`--tick-ms` (500: sessions of 1-10 s, so kazoo's 10 s default is granted; the test kit's 100 ms
clamps sessions to 2 s, and 500 sessions' pings at that rate are load of their own).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from kazoo.client import KazooClient

from bench.zookeeper_fleet import WatcherFleet, app_service, catalog, version_label
from publisher.publisher import Publisher
from testkit.machine import load_average, percentile
from testkit.zookeeper import ZooKeeperEnsemble, ZooKeeperServer

ZK_PATH = "/smartstack/services"
TASKS = 3
PROBE_NICENESS = -5


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"n {len(ms):6d}  p50 {percentile(ms, 50):7.1f}  p90 {percentile(ms, 90):7.1f}  "
        f"p99 {percentile(ms, 99):7.1f}  max {max(ms):7.1f}  mean {statistics.fmean(ms):7.1f}"
    )


def start_zookeeper(workdir: Path, standalone: bool, tick_ms: int) -> Any:
    zookeeper: Any = (
        ZooKeeperServer(workdir, tick_ms=tick_ms)
        if standalone
        else ZooKeeperEnsemble(workdir, tick_ms=tick_ms)
    )
    zookeeper.start()
    return zookeeper


def renice(pid: int, niceness: int) -> None:
    """Every thread of process `pid` (a JVM's threads exist already) to `niceness`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), niceness)


def run_changes(
    publisher: Publisher, fleet: WatcherFleet, wanted: dict[str, Any], services: int, changes: int
) -> tuple[list[float], list[float], list[float]]:
    """(time until the last watcher has it, per change; every delivery's time; the probe's)."""
    last: list[float] = []
    every: list[float] = []
    probe: list[float] = []
    tasks = {i: [(n, 0) for n in range(TASKS)] for i in range(services)}
    for change in range(1, changes + 1):
        index = change % services
        # a new task (at a new version) replaces the app's oldest: one delete and one create
        tasks[index] = [*tasks[index][1:], (TASKS + change, change)]
        name, spec = app_service(index, tasks[index])
        wanted[name] = spec
        started = time.monotonic()
        publisher.publish(wanted)
        times = fleet.wait_everywhere(name, version_label(change))
        delays = [t - started for t in times]
        last.append(max(delays))
        every.extend(delays)
        probe_at = fleet.probe_time(name, version_label(change))
        if probe_at is not None:
            probe.append(probe_at - started)
    return last, every, probe


def run(args: argparse.Namespace) -> None:
    watchers, processes = args.watchers, args.processes
    with tempfile.TemporaryDirectory() as tmp:
        zookeeper = start_zookeeper(Path(tmp), args.standalone, args.tick_ms)
        if args.probe:
            for server in getattr(zookeeper, "servers", [zookeeper]):
                renice(server.process.pid, PROBE_NICENESS)
        client = KazooClient(hosts=zookeeper.address)
        client.start(timeout=30)
        publisher = Publisher(client, ZK_PATH, "bench")
        probe = PROBE_NICENESS if args.probe else None
        fleet = WatcherFleet(zookeeper.address, ZK_PATH, watchers, processes, probe_niceness=probe)
        try:
            publisher.start()
            wanted = catalog(args.services, TASKS)
            assert publisher.wait_written(publisher.publish(wanted), 60)
            synced = fleet.start()
            print(f"{watchers} watchers in {processes} processes synced in {synced:.1f} s")
            load_before, started, cpu = load_average(), time.monotonic(), fleet.cpu_seconds()
            last, every, probe_delays = run_changes(
                publisher, fleet, wanted, args.services, args.changes
            )
            cpu = fleet.cpu_seconds() - cpu
            print(f"load average before / after: {load_before} / {load_average()}")
            print(f"until every watcher has it (ms): {summary(last)}")
            print(f"each delivery (ms):              {summary(every)}")
            if probe_delays:
                print(f"the probe (a node with its own CPU) (ms): {summary(probe_delays)}")
            print(f"deliveries in all: {fleet.log.deliveries}")
            print(f"watchers' CPU: {cpu * 1000 / len(every):.2f} ms per delivery, "
                  f"{cpu * 1000 / args.changes:.0f} ms per change for all {watchers}")  # fmt: skip
            lost = fleet.state_counts(started)
            print(f"watchers disconnected during the changes: {lost.get('SUSPENDED', 0)}, "
                  f"sessions lost: {lost.get('LOST', 0)}")  # fmt: skip
        finally:
            fleet.stop()
            publisher.stop()
            client.stop()
            client.close()
            zookeeper.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--standalone", action="store_true", help="one server, not three")
    parser.add_argument(
        "--tick-ms", type=int, default=500, help="ZooKeeper's tickTime (sessions of 2-20 ticks)"
    )
    parser.add_argument(
        "--probe", action="store_true", help="one more watcher with the CPU to itself (as root)"
    )
    args = parser.parse_args(argv)
    if args.probe:
        os.nice(PROBE_NICENESS)  # this process: the publisher; threads started from now inherit
    print(f"load average at start: {load_average()}")
    run(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
