"""Start on a big cluster: from the sidecar's process start to the first request routed.

Run: ``python -m bench.bench_big_start [--apps 10000] [--runs 3]``.

The cluster (:class:`~testkit.big_cluster.BigCluster`: ``--apps`` apps x 3 tasks and a probe
app of real echo tasks) is in the emulator before the sidecar starts. Each run starts
``python -m sidecar`` on a new state directory (no saved catalog) and times, from just before
the process is spawned:

* ``snapshot_s``: the sidecar logs its first Marathon snapshot (the time in its JSON log);
* ``haproxy_started_s``: it logs that HAProxy started;
* ``first_routed_s``: a new connection to the probe app's service port is answered by one of its
  tasks through HAProxy (tried every 10 ms).

Also the CPU the sidecar and HAProxy used until then. The sidecar is stopped between runs.
Prints every run and the medians, with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Optional

from testkit.big_cluster import BigCluster, BigClusterOptions, add_cluster_arguments, log_time
from testkit.machine import load_average, machine_facts
from testkit.proc_usage import cpu_seconds, total_cpu_seconds


def one_start(cluster: BigCluster, timeout: float) -> dict[str, Any]:
    """Start the sidecar, wait for the first routed request, stop it; the times."""
    load = load_average()
    wall, started = time.time(), time.monotonic()
    cluster.start_sidecar()
    try:
        cluster.wait_served(timeout)
        routed = time.monotonic() - started
        figures = {
            "first_routed_s": round(routed, 2),
            "snapshot_s": _logged_after(cluster, "Marathon snapshot", wall),
            "haproxy_started_s": _logged_after(cluster, "haproxy started", wall),
            "sidecar_cpu_s": round(cpu_seconds(cluster.sidecar_pid), 2),
            "haproxy_cpu_s": round(total_cpu_seconds(cluster.haproxy_pids()), 2),
            "loadavg": load,
        }
    finally:
        cluster.stop_sidecar()
    return figures


def _logged_after(cluster: BigCluster, message: str, wall: float) -> Optional[float]:
    records = cluster.log_records(message)
    return round(log_time(records[0]) - wall, 2) if records else None


def run(apps: int, runs: int, sidecar_args: list[str]) -> dict[str, Any]:
    options = BigClusterOptions(apps=apps, sidecar_args=tuple(sidecar_args))
    with BigCluster(options) as cluster:
        timeout = 120.0 + apps * 0.05
        results = [one_start(cluster, timeout) for _ in range(runs)]
    medians = {
        key: round(statistics.median(r[key] for r in results if r[key] is not None), 2)
        for key in ("first_routed_s", "snapshot_s", "haproxy_started_s", "sidecar_cpu_s")
        if any(r[key] is not None for r in results)
    }
    return {
        "apps": apps,
        "tasks": apps * options.tasks_per_app,
        "runs": results,
        "median": medians,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cluster_arguments(parser)
    parser.add_argument("--runs", type=int, default=3, help="sidecar starts, one after another")
    args = parser.parse_args(argv)
    result = run(args.apps, args.runs, args.sidecar_arg)
    result["machine"] = machine_facts()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
