"""Reloads per 100 server changes (goal 0).

Run: ``python -m bench.bench_reload_count [--quick] [--changes 102]``.

Same node and change mix as ``bench_convergence.py`` (scale up, kill + replacement, scale down,
health down + up on an app with 4 echo tasks; each change waits until HAProxy routes
accordingly). Reloads are counted from outside, by the HAProxy master's own counter
(``show proc`` on the master CLI) and the worker pid (``show info``), and from the sidecar's
``marathon_sidecar_haproxy_reloads_total`` and runtime-operation counters on ``/metrics``.
A control step at the end adds an app on a new service port, which must cost exactly one
reload, so a counter that never moves cannot pass for a result.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Optional

from bench.bench_convergence import APP_ID, INSTANCES, ChangeDriver
from testkit.apps import echo_app
from testkit.machine import machine_facts
from testkit.ports import free_ports
from testkit.system import System, SystemOptions


def runtime_ops(system: System) -> float:
    return sum(
        system.metric("marathon_sidecar_haproxy_runtime_ops_total", {"op": op})
        for op in ("server", "delete")
    )


def run(changes: int) -> dict[str, Any]:
    with System(SystemOptions(in_process=False, kill_grace=0.3)) as system:
        port, control_port = free_ports(2)
        system.deploy(echo_app(APP_ID, port, INSTANCES))
        driver = ChangeDriver(system, port)
        driver.settle()
        worker = system.worker_pid()
        master_reloads = system.show_proc().reloads
        sidecar_reloads = system.metric("marathon_sidecar_haproxy_reloads_total")
        ops = runtime_ops(system)
        while driver.count() < changes:
            driver.cycle()
        made = driver.count()
        result: dict[str, Any] = {
            "server_changes": made,
            "haproxy_reloads": system.show_proc().reloads - master_reloads,
            "sidecar_reloads_metric": system.metric("marathon_sidecar_haproxy_reloads_total")
            - sidecar_reloads,
            "runtime_api_operations": runtime_ops(system) - ops,
            "worker_pid_unchanged": system.worker_pid() == worker,
        }
        result["reloads_per_100_changes"] = round(100.0 * result["haproxy_reloads"] / made, 2)
        before = system.show_proc().reloads
        system.deploy(echo_app("/bench/control", control_port, 1))
        result["control_new_service_port_reloads"] = system.show_proc().reloads - before
        return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 12 changes (smoke run)")
    parser.add_argument("--changes", type=int, default=102, help="at least this many changes")
    args = parser.parse_args(argv)
    result = run(12 if args.quick else args.changes)
    result["goal"] = "0 reloads per 100 server changes"
    result["goal_met"] = result["haproxy_reloads"] == 0
    result["machine"] = machine_facts()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
