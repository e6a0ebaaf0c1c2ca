"""Start-up time and memory of the test kit's ZooKeeper (testkit/zookeeper.py).

Run from the repository root: ``python -m bench.bench_zookeeper_harness [--runs 5]``.
Prints the median and worst seconds from launch until the server serves (a `Mode:` line), for one
standalone server and for a three-server ensemble (until a leader is elected), a restart of a
standalone server on its old data dir, a leader kill until the next leader serves, and the resident
memory of one server JVM.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from testkit.zookeeper import ZooKeeperEnsemble, ZooKeeperServer


def standalone_run(workdir: Path) -> tuple[float, float, int]:
    """Seconds to serve, seconds to serve again after a restart, RSS KiB."""
    server = ZooKeeperServer(workdir)
    try:
        first = server.start()
        rss = server.resident_kib() or 0
        again = server.restart()
    finally:
        server.kill()
    return first, again, rss


def ensemble_run(workdir: Path) -> tuple[float, float]:
    """Seconds until all three serve with a leader, seconds to a new leader after a leader kill."""
    ensemble = ZooKeeperEnsemble(workdir)
    try:
        start = ensemble.start()
        leader = ensemble.wait_quorum()
        killed = time.monotonic()
        leader.kill()
        survivors = [s for s in ensemble.servers if s is not leader]
        while not any(s.mode() == "leader" for s in survivors):
            time.sleep(0.01)
        failover = time.monotonic() - killed
    finally:
        for server in ensemble.servers:
            server.kill()
    return start, failover


def describe(name: str, values: list[float]) -> str:
    return f"{name:<34} median {statistics.median(values):6.2f} s   max {max(values):6.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    firsts, restarts, rss, starts, failovers = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            first, again, kib = standalone_run(Path(tmp) / f"s{i}")
            firsts.append(first)
            restarts.append(again)
            rss.append(kib)
            start, failover = ensemble_run(Path(tmp) / f"e{i}")
            starts.append(start)
            failovers.append(failover)
    print(f"runs: {runs}")
    print(describe("standalone: launch to serving", firsts))
    print(describe("standalone: restart to serving", restarts))
    print(describe("ensemble of 3: launch to leader", starts))
    print(describe("ensemble: leader kill to new leader", failovers))
    print(f"{'one server JVM resident memory':<34} median {statistics.median(rss) / 1024:6.1f} MiB")


if __name__ == "__main__":
    main()
