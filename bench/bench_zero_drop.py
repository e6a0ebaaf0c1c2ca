"""Zero-drop: a loopback load through the sidecar's HAProxy while Marathon churns.

Run: ``python -m bench.bench_zero_drop [--quick] [--seconds 60] [--every 2.0]``.

One node: the Marathon emulator (real echo tasks, 0.5 s from ``TASK_KILLING`` to SIGTERM; the echo
server then serves 0.5 s more and exits once its in-flight requests are done), the sidecar as
``python -m sidecar`` and its HAProxy. Two apps take the load from the start (``/zd/a``, 4 tasks;
``/zd/b``, 3 tasks; HTTP health checks; ``HAPROXY_0_MODE`` from ``--mode``, default http).

Load, for ``--seconds``:

* ``wrk`` keep-alive (``-c 4``) on each of the two ports;
* ``wrk`` with ``Connection: close`` (a new connection per request, ``-c 4``) on each port;
* Python clients (2 keep-alive ``requests.Session``, 1 new-connection) over every routed port,
  new apps' ports included once they route, recording which task answered.

Churn, one action every ``--every`` seconds, in turn: scale ``/zd/a`` up, kill a task (it is
replaced), scale ``/zd/a`` down, flip a ``/zd/b`` task unhealthy (and healthy again on the next
turn), and every sixth turn a new app on a new service port (a reload).

Reported: requests (wrk + Python), failures of every kind (socket errors, timeouts, non-2xx:
must be 0), requests per second, HAProxy reloads (the master's counter), runtime API
operations (the sidecar's counter), the churn actions done, and the machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any, Optional

from testkit.apps import echo_app
from testkit.load import LoadGenerator, Wrk, WrkResult
from testkit.machine import machine_facts
from testkit.ports import free_ports
from testkit.system import System, SystemOptions
from testkit.waiting import wait_until

APP_A, APP_B = "/zd/a", "/zd/b"
MIN_A, MAX_A = 2, 6


class Churn:
    """The Marathon-side changes, one per :meth:`step`."""

    def __init__(
        self, system: System, load: LoadGenerator, port_a: int, port_b: int, mode: str = "http"
    ) -> None:
        self.system = system
        self.mode = mode
        self.load = load
        self.ports = {APP_A: port_a, APP_B: port_b}
        self.instances = {APP_A: 4, APP_B: 3}
        self.turn = 0
        self.done: dict[str, int] = {}
        self.sick: Optional[str] = None
        self.new_apps: list[tuple[str, int]] = []
        self.rng = random.Random(4)

    def _count(self, kind: str) -> None:
        self.done[kind] = self.done.get(kind, 0) + 1

    def step(self) -> None:
        actions = (
            self.scale_up,
            self.kill,
            self.scale_down,
            self.health_flip,
            self.kill,
            self.new_app,
        )
        actions[self.turn % len(actions)]()
        self.turn += 1

    def scale_up(self) -> None:
        if self.instances[APP_A] < MAX_A:
            self.instances[APP_A] += 1
            self.system.client.scale_app(APP_A, self.instances[APP_A], force=True)
            self._count("scale-up")

    def scale_down(self) -> None:
        if self.instances[APP_A] > MIN_A:
            self.instances[APP_A] -= 1
            self.system.client.scale_app(APP_A, self.instances[APP_A], force=True)
            self._count("scale-down")

    def kill(self) -> None:
        app_id = self.rng.choice((APP_A, APP_B))
        running = sorted(self.system.healthy_ids(app_id) - {self.sick or ""})
        if len(running) > 1:
            self.system.emu.kill_task(self.rng.choice(running))
            self._count("kill")

    def health_flip(self) -> None:
        if self.sick is not None:
            self.system.emu.set_task_health(self.sick, True)
            self.sick = None
            self._count("health-up")
            return
        healthy = sorted(self.system.healthy_ids(APP_B))
        if len(healthy) > 1:
            self.sick = healthy[0]
            self.system.emu.set_task_health(self.sick, False)
            self._count("health-down")

    def new_app(self) -> None:
        (port,) = free_ports(1)
        app_id = f"/zd/new-{len(self.new_apps)}"
        self.system.client.create_app(echo_app(app_id, port, 2, mode=self.mode))
        self.new_apps.append((app_id, port))
        self._count("new-app")

    def route_new_apps(self) -> None:
        """Put new apps' ports under the Python load once HAProxy routes them."""
        for app_id, port in self.new_apps:
            if port not in self.load.ports() and self.system.converged(app_id, port):
                self.load.add_port(port)

    def heal(self) -> None:
        if self.sick is not None:
            self.system.emu.set_task_health(self.sick, True)
            self.sick = None


def _same_master(now: Any, before: Any) -> bool:
    return bool(now.master and before.master and now.master.pid == before.master.pid)


def wrk_summary(results: dict[str, WrkResult]) -> dict[str, Any]:
    return {
        name: {
            "requests": r.requests,
            "failures": r.failures,
            "connect": r.connect_errors,
            "read": r.read_errors,
            "write": r.write_errors,
            "timeout": r.timeouts,
            "non_2xx": r.non_2xx,
        }
        for name, r in results.items()
    }


# the load is GET only; a real template would add "http-request disable-l7-retry if
# !METH_GET !METH_HEAD" per HTTP backend (2.6 refuses http-request in an anonymous defaults)
RETRY_ON = ("retry-on conn-failure empty-response response-timeout",)


def run(
    seconds: float,
    every: float,
    mode: str = "http",
    log_errors: bool = False,
    retry_on: bool = False,
) -> dict[str, Any]:
    options = SystemOptions(
        in_process=False,
        kill_grace=0.5,
        drain_timeout=10.0,
        log_level="INFO",
        log_errors=log_errors,
        extra_defaults=RETRY_ON if retry_on else (),
    )
    with System(options) as system:
        port_a, port_b = free_ports(2)
        system.deploy(echo_app(APP_A, port_a, 4, mode=mode))
        system.deploy(echo_app(APP_B, port_b, 3, mode=mode))
        proc_before = system.show_proc()
        reloads_before = proc_before.reloads
        restarts_metric = "marathon_sidecar_haproxy_restarts_total"
        restarts_before = system.metric(restarts_metric)
        ops_metric = "marathon_sidecar_haproxy_runtime_ops_total"
        ops_before = system.metric(ops_metric, {"op": "server"})
        load = LoadGenerator([port_a, port_b], keepalive=2, fresh=1)
        churn = Churn(system, load, port_a, port_b, mode)
        wrks: dict[str, Wrk] = {}
        try:
            load.start()
            for name, port in (("a", port_a), ("b", port_b)):
                wrks[f"{name}-keepalive"] = Wrk(port, seconds + 2, connections=4)
                wrks[f"{name}-new-conn"] = Wrk(port, seconds + 2, connections=4, close=True)
            started = time.monotonic()
            next_step = started + every
            while time.monotonic() < started + seconds - every:
                churn.route_new_apps()
                if time.monotonic() >= next_step:
                    churn.step()
                    next_step += every
                time.sleep(0.05)
            churn.heal()
            results = {name: w.result(timeout=seconds + 60) for name, w in wrks.items()}
            churn.route_new_apps()
        finally:
            for w in wrks.values():
                w.kill()
            load.stop()
        elapsed = load.stopped_at - load.started_at
        python = load.totals()
        wrk_requests = sum(r.requests for r in results.values())
        wrk_failures = sum(r.failures for r in results.values())
        wrk_seconds = max(r.seconds for r in results.values())
        wait_until(
            lambda: system.metric(ops_metric, {"op": "server"}) >= ops_before, 5
        )  # the sidecar exports its counters on its next tick
        return {
            "mode": mode,
            "seconds": round(elapsed, 1),
            "requests": wrk_requests + python.sent,
            "failures": wrk_failures + python.failures,
            "requests_per_s": round(wrk_requests / wrk_seconds + python.sent / elapsed, 1),
            "wrk": wrk_summary(results),
            "python_clients": {
                "requests": python.sent,
                "failures": python.failures,
                "errors": python.errors[:10],
                "tasks_seen": len(python.by_task),
                "ports": len(load.ports()),
            },
            # the master's counter restarts from 0 when HAProxy itself is restarted
            "haproxy_reloads": system.show_proc().reloads - reloads_before,
            "haproxy_master_pid_unchanged": _same_master(system.show_proc(), proc_before),
            "haproxy_restarts": system.metric(restarts_metric) - restarts_before,
            "runtime_api_operations": system.metric(ops_metric, {"op": "server"}) - ops_before,
            "churn": churn.done,
            "old_workers_now": len(system.show_proc().old_workers),
        }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="15 s (smoke run)")
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between churn actions")
    parser.add_argument(
        "--mode", choices=("http", "tcp"), default="http", help="the apps' HAPROXY_0_MODE"
    )
    parser.add_argument(
        "--log-errors",
        action="store_true",
        help="HAProxy logs abnormal requests (kept in /tmp/zero-drop-last-logs/sidecar.log)",
    )
    parser.add_argument(
        "--retry-on",
        action="store_true",
        help="experiment: L7 retries for GET/HEAD in the template's defaults (" + RETRY_ON[0] + ")",
    )
    args = parser.parse_args(argv)
    seconds = 15.0 if args.quick else args.seconds
    result = run(seconds, args.every, args.mode, args.log_errors, args.retry_on)
    result["retry_on_experiment"] = args.retry_on
    result["goal"] = "0 failed requests, >= 1000 req/s"
    result["goal_met"] = result["failures"] == 0 and result["requests_per_s"] >= 1000
    result["machine"] = machine_facts()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
