"""Reconnect storm: the leader of a three-server ensemble restarted under 500 watchers (issue 11).

Run from the repository root: ``python -m bench.bench_zookeeper_storm [--watchers 500]
[--processes 10] [--restarts 3] [--services 5] [--tick-ms 500]``.

The set-up of the fan-out bench (bench_zookeeper_fanout): a three-server ensemble on
127.0.1.1-3, a `Publisher` in this process, `--watchers` real `CatalogWatcher`s (each its own
session, like one node) over `--processes` processes. The servers tick every `--tick-ms` (500:
sessions of 1-10 s, so kazoo's 10 s default is granted as asked; the test kit's 100 ms would clamp
every session to 2 s).

Each restart: the current leader is stopped (SIGTERM), a change is handed to the publisher at
once (it can only be written once a new leader serves), and the old leader is started again. A
sampler asks every running server for `mntr` every `--sample` seconds: reads are the servers'
`zk_cnt_readlatency` (one per read request served), summed over the ensemble. Printed per restart:
reads per second at baseline and at the busiest second, reads in the 20 s after the stop (and per
watcher), how long until every watcher that lost its connection is connected again, how long
until every watcher has the change, how many sessions expired (LOST), and the worker processes'
threads before and at the peak. kazoo's recipes read again after a reconnect on one new thread per
watch (three per service per watcher), so `--services` is kept small: 500 watchers on 2 cores
are 500 nodes' threads on one machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from kazoo.client import KazooClient

from bench.zookeeper_fleet import WatcherFleet, app_service, catalog, version_label
from publisher.plan import ServiceSpec
from publisher.publisher import Publisher
from testkit.machine import load_average
from testkit.zookeeper import ZooKeeperEnsemble, ZooKeeperServer, four_letter_word

ZK_PATH = "/smartstack/services"
TASKS = 3
BASELINE = 5.0
WINDOW = 20.0


def reads_served(server: ZooKeeperServer) -> Optional[int]:
    """The server's count of read requests served since it started (None: not answering)."""
    try:
        answer = four_letter_word(server.host, server.port, "mntr", timeout=1.0)
    except OSError:
        return None
    for line in answer.splitlines():
        name, _, value = line.partition("\t")
        if name == "zk_cnt_readlatency":
            return int(value)
    return None


class ReadSampler:
    """Read requests served by the ensemble, per sampling interval (a restarted server counts
    from zero again: its first sample after the restart is taken whole)."""

    def __init__(self, ensemble: ZooKeeperEnsemble, fleet: WatcherFleet, interval: float) -> None:
        self.ensemble = ensemble
        self.fleet = fleet
        self.threads: list[tuple[float, int]] = []  # (time, threads of the fleet)
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (time, reads since the previous sample)
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        for index, server in enumerate(self.ensemble.servers):  # count from now on
            self._last[index] = reads_served(server) or 0
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = 0
            for index, server in enumerate(self.ensemble.servers):
                count = reads_served(server) if server.running() else None
                if count is None:
                    continue
                previous = self._last.get(index, 0)
                total += count - previous if count >= previous else count
                self._last[index] = count
            now = time.monotonic()
            self.samples.append((now, total))
            self.threads.append((now, self.fleet.threads()))

    def reads_between(self, start: float, end: float) -> int:
        return sum(n for t, n in self.samples if start < t <= end)

    def most_threads(self, start: float, end: float) -> int:
        return max((n for t, n in self.threads if start < t <= end), default=0)

    def busiest_second(self, start: float, end: float) -> int:
        """The most reads in any one-second stretch of samples in [start, end]."""
        inside = [(t, n) for t, n in self.samples if start < t <= end]
        return max((sum(n for u, n in inside if t - 1.0 < u <= t) for t, _ in inside), default=0)


def one_restart(
    ensemble: ZooKeeperEnsemble,
    publisher: Publisher,
    fleet: WatcherFleet,
    sampler: ReadSampler,
    wanted: dict[str, ServiceSpec],
    change: int,
) -> dict[str, float]:
    time.sleep(BASELINE)  # a quiet stretch to compare with
    leader = ensemble.wait_quorum()
    stopped = time.monotonic()
    leader.stop()
    name, spec = app_service(0, [*[(n, 0) for n in range(1, TASKS)], (TASKS + change, change)])
    wanted[name] = spec
    publisher.publish(wanted)
    leader.start()
    ensemble.wait_quorum()
    reconnected = fleet.wait_connected(stopped)
    current = fleet.wait_everywhere(name, version_label(change))
    time.sleep(max(0.0, stopped + WINDOW - time.monotonic()))
    counts = fleet.state_counts(stopped)
    baseline = sampler.reads_between(stopped - BASELINE, stopped) / BASELINE
    storm = sampler.reads_between(stopped, stopped + WINDOW)
    return {
        "baseline_reads_per_s": baseline,
        "busiest_second_reads": sampler.busiest_second(stopped, stopped + WINDOW),
        "reads_in_window": storm,
        "reads_per_watcher": storm / fleet.watchers,
        "extra_reads_per_watcher": (storm - baseline * WINDOW) / fleet.watchers,
        "fleet_threads_before": sampler.most_threads(stopped - BASELINE, stopped),
        "fleet_threads_peak": sampler.most_threads(stopped, stopped + WINDOW),
        "disconnected": counts.get("SUSPENDED", 0),
        "sessions_lost": counts.get("LOST", 0),
        "all_reconnected_s": (max(reconnected) - stopped) if reconnected else 0.0,
        "all_current_s": max(current) - stopped,
    }


def report(results: list[dict[str, float]]) -> None:
    for number, result in enumerate(results, 1):
        shown = "  ".join(f"{k} {v:.2f}" for k, v in result.items())
        print(f"restart {number}: {shown}")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"median {key:<24} {statistics.median(values):10.2f}   max {max(values):10.2f}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--services", type=int, default=5)
    parser.add_argument("--tick-ms", type=int, default=500)
    parser.add_argument("--sample", type=float, default=0.25, help="seconds between mntr samples")
    args = parser.parse_args(argv)
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        ensemble = ZooKeeperEnsemble(Path(tmp), tick_ms=args.tick_ms)
        ensemble.start()
        client = KazooClient(hosts=ensemble.address)
        client.start(timeout=30)
        publisher = Publisher(client, ZK_PATH, "bench")
        fleet = WatcherFleet(ensemble.address, ZK_PATH, args.watchers, args.processes)
        sampler = ReadSampler(ensemble, fleet, args.sample)
        try:
            publisher.start()
            wanted = catalog(args.services, TASKS)
            assert publisher.wait_written(publisher.publish(wanted), 60)
            print(f"{args.watchers} watchers synced in {fleet.start():.1f} s")
            sampler.start()
            results = [
                one_restart(ensemble, publisher, fleet, sampler, wanted, change)
                for change in range(1, args.restarts + 1)
            ]
            print(f"load average at the end: {load_average()}")
            report(results)
        finally:
            sampler.stop()
            fleet.stop()
            publisher.stop()
            client.stop()
            client.close()
            ensemble.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
