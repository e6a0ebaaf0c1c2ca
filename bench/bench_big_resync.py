"""Resync with no change on a big cluster: what a full snapshot that finds nothing new costs.

Run: ``python -m bench.bench_big_resync [--apps 10000] [--runs 5]``.

The node is :class:`~testkit.big_cluster.BigCluster` (``--apps`` apps x 3 tasks, a probe app),
served and quiet. Each run sends the sidecar SIGHUP (a fresh snapshot of Marathon) with nothing
changed in Marathon, and reads from outside:

* ``wall_s``: from SIGHUP to the sidecar's "Marathon snapshot" log line (fetched, parsed,
  translated and compared), or to its "applied" line if the snapshot led to an apply;
* ``cpu_s``: the sidecar's CPU (every thread, /proc) from SIGHUP until ``SETTLE_SECONDS`` after
  that line, and the same net of its idle rate (measured for 10 s before the runs);
* ``runtime_commands`` and ``reloads``: the sidecar's ``haproxy_runtime_ops_total{op="server"}``
  and ``haproxy_reloads_total``, and HAProxy's own reload counter (master CLI ``show proc``).
  The goal is 0 for each.

How long Marathon (the emulator, in this process) takes to answer the snapshot's
``GET /v2/apps?embed=apps.tasks`` is measured alone before the runs: it is part of ``wall_s``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from typing import Any, Optional

import requests

from testkit.big_cluster import BigCluster, BigClusterOptions, add_cluster_arguments, log_time
from testkit.machine import load_average, machine_facts
from testkit.proc_usage import cpu_seconds
from testkit.waiting import wait_until

IDLE_SECONDS = 10.0
SETTLE_SECONDS = 2.0
RUNTIME_OPS = ("marathon_sidecar_haproxy_runtime_ops_total", {"op": "server"})


def marathon_answer_s(cluster: BigCluster) -> float:
    """How long the emulator takes to answer the snapshot request, asked from here."""
    started = time.monotonic()
    response = requests.get(
        cluster.emu.url + "/v2/apps", params={"embed": "apps.tasks"}, timeout=300
    )
    response.raise_for_status()
    return time.monotonic() - started


def counters(cluster: BigCluster) -> tuple[float, float, int]:
    """(runtime commands, sidecar reloads, HAProxy reloads) so far."""
    return (
        cluster.metric(*RUNTIME_OPS),
        cluster.metric("marathon_sidecar_haproxy_reloads_total"),
        cluster.show_proc().reloads,
    )


def one_resync(cluster: BigCluster, idle_rate: float) -> dict[str, Any]:
    """SIGHUP, wait for the snapshot's log line, let it settle; the figures."""
    before = counters(cluster)
    seen = len(cluster.log_records("Marathon snapshot"))
    applied = len(cluster.log_records("applied"))
    load = load_average()
    cpu, started, wall = cpu_seconds(cluster.sidecar_pid), time.monotonic(), time.time()
    cluster.request_resync()
    wait_until(lambda: len(cluster.log_records("Marathon snapshot")) > seen, 300, "a snapshot")
    threading.Event().wait(SETTLE_SECONDS)  # a change, if any, is applied in this time
    used = cpu_seconds(cluster.sidecar_pid) - cpu
    window = time.monotonic() - started
    last = cluster.log_records("Marathon snapshot")[-1]
    applies = cluster.log_records("applied")[applied:]
    end = log_time(applies[-1]) if applies else log_time(last)
    threading.Event().wait(1.2)  # the applier's counters reach /metrics on the next tick
    after = counters(cluster)
    return {
        "wall_s": round(end - wall, 2),
        "cpu_s": round(used, 2),
        "cpu_net_of_idle_s": round(used - idle_rate * window, 2),
        "applies": len(applies),
        "runtime_commands": int(after[0] - before[0]),
        "reloads": int(after[1] - before[1]),
        "haproxy_reloads": after[2] - before[2],
        "loadavg": load,
    }


def run(apps: int, runs: int, sidecar_args: list[str]) -> dict[str, Any]:
    options = BigClusterOptions(apps=apps, sidecar_args=tuple(sidecar_args))
    with BigCluster(options) as cluster:
        cluster.start_sidecar()
        cluster.wait_served(120.0 + apps * 0.05)
        answer = [marathon_answer_s(cluster) for _ in range(3)]
        start_cpu, start = cpu_seconds(cluster.sidecar_pid), time.monotonic()
        threading.Event().wait(IDLE_SECONDS)
        idle_rate = (cpu_seconds(cluster.sidecar_pid) - start_cpu) / (time.monotonic() - start)
        results = [one_resync(cluster, idle_rate) for _ in range(runs)]
    return {
        "apps": apps,
        "tasks": apps * options.tasks_per_app,
        "marathon_answer_s_median": round(statistics.median(answer), 2),
        "sidecar_idle_cpu_per_s": round(idle_rate, 4),
        "runs": results,
        "median": {
            key: round(statistics.median(r[key] for r in results), 2)
            for key in ("wall_s", "cpu_s", "cpu_net_of_idle_s")
        },
        "total": {
            key: sum(r[key] for r in results)
            for key in ("runtime_commands", "reloads", "haproxy_reloads", "applies")
        },
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cluster_arguments(parser)
    parser.add_argument("--runs", type=int, default=5, help="resyncs, one after another")
    args = parser.parse_args(argv)
    result = run(args.apps, args.runs, args.sidecar_arg)
    totals = result["total"]
    result["goal"] = "0 runtime commands and 0 reloads"
    result["goal_met"] = totals["runtime_commands"] == 0 and totals["haproxy_reloads"] == 0
    result["machine"] = machine_facts()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
