"""Memory on big clusters: the sidecar's and HAProxy's resident memory at 1k, 5k and 10k apps.

Run: ``python -m bench.bench_big_memory [--sizes 1000,5000,10000]``.

For each size a new :class:`~testkit.big_cluster.BigCluster` (apps x 3 tasks and a probe app);
the sidecar is started and waited for until the probe app is served and HAProxy runs every
server (the sidecar's ``servers{state="ready"}`` gauge holds every task), then the node stays
quiet for ``QUIET_SECONDS``. Read from /proc:

* the sidecar: ``VmRSS`` now and ``VmHWM`` (its peak so far: the start's snapshot and first
  build);
* HAProxy: ``VmRSS`` of the master and of each worker (shared pages count in each).

The emulator's (this process's) RSS is printed too, for reference only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Optional

from testkit.big_cluster import BigCluster, BigClusterOptions, add_cluster_arguments
from testkit.machine import load_average, machine_facts
from testkit.proc_usage import memory_kib
from testkit.waiting import wait_until

QUIET_SECONDS = 5.0


def mib(kib: int) -> float:
    return round(kib / 1024.0, 1)


def measure(apps: int, sidecar_args: list[str]) -> dict[str, Any]:
    options = BigClusterOptions(apps=apps, sidecar_args=tuple(sidecar_args))
    tasks = apps * options.tasks_per_app + options.probe_instances
    with BigCluster(options) as cluster:
        cluster.start_sidecar()
        cluster.wait_served(120.0 + apps * 0.05)
        wait_until(
            lambda: cluster.metric("marathon_sidecar_servers", {"state": "ready"}) >= tasks,
            120,
            f"{tasks} servers ready",
        )
        threading.Event().wait(QUIET_SECONDS)
        pid = cluster.sidecar_pid
        master = cluster.haproxy_master_pid()
        workers = [mib(memory_kib(p)) for p in cluster.haproxy_pids() if p != master]
        return {
            "apps": apps,
            "tasks": tasks,
            "sidecar_rss_mib": mib(memory_kib(pid)),
            "sidecar_peak_rss_mib": mib(memory_kib(pid, "VmHWM")),
            "haproxy_master_rss_mib": mib(memory_kib(master)),
            "haproxy_worker_rss_mib": workers,
            "emulator_rss_mib": mib(memory_kib(os.getpid())),
            "loadavg": load_average(),
        }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="apps of 3 tasks each")
    add_cluster_arguments(parser, apps=False)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {"sizes": [measure(n, args.sidecar_arg) for n in sizes], "machine": machine_facts()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
