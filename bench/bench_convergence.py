"""Convergence: from the emulator publishing an event to HAProxy routing accordingly.

Run: ``python -m bench.bench_convergence [--quick] [--changes 204] [--debounce S] [--zookeeper]``.

One node: the Marathon emulator (real echo tasks) in this process, the sidecar as a child process
(``python -m sidecar``, so this process's polling does not share its interpreter) and the HAProxy
it starts. The app has HTTP health checks and 4 instances. Changes cycle through six kinds:

* ``add-scale``: scale +1; the event is the new task's first ``health_status_changed_event``
  (alive) -- a task of an app with health checks takes traffic from then on;
* ``kill``: ``emulator.kill_task`` (``TASK_KILLING``);
* ``add-replacement``: the replacement Marathon launches for the killed task (alive event);
* ``kill-scale``: scale -1 (the ``TASK_KILLING`` of the task Marathon picks);
* ``health-down`` / ``health-up``: ``set_task_health`` false / true.

The event time is taken inside the emulator as it publishes (a hook on its publish function); the
routing time is the first ``show servers state <backend>`` on HAProxy's admin socket (polled every
``--poll-ms``, default 1 ms) that shows the task's server ready (adds, health-up) or not ready
(kills, health-down). Between changes the bench waits until HAProxy's ready servers equal the
app's healthy tasks again, so changes do not overlap. Prints p50/p90/p99/max per kind and overall,
the reloads seen during the run (should be 0) and the machine.

``--zookeeper``: the node is in ZooKeeper mode (``testkit.system``'s ``source="zookeeper"``): the
event goes through a ``marathon-publisher`` process, a ZooKeeper server and the sidecar's watch
before it reaches HAProxy; measured the same way, from the emulator's publish to HAProxy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable, Optional

from sidecar.haproxy.runtime import RuntimeAPI
from sidecar.names import backend_name, server_name
from testkit.apps import echo_app
from testkit.event_clock import EventClock
from testkit.machine import machine_facts, percentile
from testkit.ports import free_ports
from testkit.system import System, SystemOptions
from testkit.waiting import wait_until

APP_ID = "/bench/conv"
INSTANCES = 4
GOAL_P50_MS = 30.0
GOAL_P99_MS = 100.0


class ChangeDriver:
    """Makes one change of each kind to the app and measures the event -> routing delay."""

    def __init__(self, system: System, port: int, poll_s: float = 0.001) -> None:
        self.system = system
        self.port = port
        self.poll_s = poll_s
        self.clock = EventClock()
        system.on_event(self.clock.record)
        self.runtime = RuntimeAPI(system.admin_socket, timeout=5.0)
        self.backend = backend_name(APP_ID, port)
        self.instances = INSTANCES
        self.samples: dict[str, list[float]] = {}

    # -- observation

    def server_ready(self, task_id: str) -> Optional[bool]:
        """True/False for the task's server, None when HAProxy has no such server."""
        name = server_name(task_id)
        for state in self.runtime.show_servers_state(self.backend):
            if state.name == name:
                return state.admin == "ready"
        return None

    def routed_at(self, predicate: Callable[[], bool], timeout: float = 30.0) -> float:
        """Poll HAProxy every ``poll_s``; the monotonic time the predicate first held."""
        return wait_until(
            lambda: time.monotonic() if predicate() else None,
            timeout,
            "HAProxy converged",
            interval=self.poll_s,
        )

    def settle(self) -> None:
        wait_until(
            lambda: (
                len(self.system.healthy_ids(APP_ID)) == self.instances
                and len(self.system.emu.tasks(APP_ID)) == self.instances
                and self.system.converged(APP_ID, self.port)
                and not self.system.client.list_deployments()  # a new scale would get a 409
            ),
            60,
            message="the app settles",
        )

    def _sample(self, kind: str, event_at: float, routed_at: float) -> None:
        self.samples.setdefault(kind, []).append(max(0.0, routed_at - event_at) * 1000.0)

    # -- the changes

    def add_by_scale(self) -> None:
        before = {t["id"] for t in self.system.emu.tasks(APP_ID)}
        self.instances += 1
        self.system.client.scale_app(APP_ID, self.instances)
        new_id = wait_until(
            lambda: next(
                (t["id"] for t in self.system.emu.tasks(APP_ID) if t["id"] not in before), None
            ),
            30,
        )
        self._measure_add("add-scale", new_id)

    def _measure_add(self, kind: str, task_id: str) -> None:
        routed = self.routed_at(lambda: self.server_ready(task_id) is True)
        event_at = wait_until(lambda: self.clock.alive_at(task_id, True), 30)
        self._sample(kind, event_at, routed)

    def kill_one(self) -> None:
        before = {t["id"] for t in self.system.emu.tasks(APP_ID)}
        victim = sorted(self.system.healthy_ids(APP_ID))[0]
        self.system.emu.kill_task(victim)
        routed = self.routed_at(lambda: self.server_ready(victim) is not True)
        event_at = self.clock.killing_at(victim)
        assert event_at is not None
        self._sample("kill", event_at, routed)
        replacement = wait_until(
            lambda: next(
                (t["id"] for t in self.system.emu.tasks(APP_ID) if t["id"] not in before), None
            ),
            30,
        )
        self._measure_add("add-replacement", replacement)

    def kill_by_scale(self) -> None:
        since = time.monotonic()
        running = {t["id"] for t in self.system.emu.tasks(APP_ID)}
        self.instances -= 1
        self.system.client.scale_app(APP_ID, self.instances)
        victim = wait_until(lambda: self.clock.killed_since(since, running), 30)
        routed = self.routed_at(lambda: self.server_ready(victim) is not True)
        event_at = self.clock.killing_at(victim)
        assert event_at is not None
        self._sample("kill-scale", event_at, routed)

    def health_flip(self) -> None:
        task_id = sorted(self.system.healthy_ids(APP_ID))[-1]
        since = time.monotonic()
        self.system.emu.set_task_health(task_id, False)
        routed = self.routed_at(lambda: self.server_ready(task_id) is not True)
        event_at = wait_until(lambda: self.clock.alive_at(task_id, False, since), 30)
        self._sample("health-down", event_at, routed)
        since = time.monotonic()
        self.system.emu.set_task_health(task_id, True)
        routed = self.routed_at(lambda: self.server_ready(task_id) is True)
        event_at = wait_until(lambda: self.clock.alive_at(task_id, True, since), 30)
        self._sample("health-up", event_at, routed)

    def cycle(self) -> None:
        """Six changes: add (scale), kill + replacement, kill (scale), health down + up."""
        for step in (self.add_by_scale, self.kill_one, self.kill_by_scale, self.health_flip):
            step()
            self.settle()

    def count(self) -> int:
        return sum(len(v) for v in self.samples.values())


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p90": round(percentile(values, 90), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
        "mean": round(statistics.fmean(values), 1),
    }


def run(changes: int, debounce: float, poll_ms: float, source: str = "marathon") -> dict[str, Any]:
    options = SystemOptions(in_process=False, kill_grace=0.3, debounce=debounce, source=source)
    with System(options) as system:
        (port,) = free_ports(1)
        system.deploy(echo_app(APP_ID, port, INSTANCES))
        driver = ChangeDriver(system, port, poll_ms / 1000.0)
        driver.settle()
        worker, reloads = system.worker_pid(), system.show_proc().reloads
        started = time.monotonic()
        while driver.count() < changes:
            driver.cycle()
        elapsed = time.monotonic() - started
        status = system.show_proc()
        everything = [v for values in driver.samples.values() for v in values]
        return {
            "source": source,
            "changes": len(everything),
            "seconds": round(elapsed, 1),
            "debounce_s": debounce,
            "poll_ms": poll_ms,
            "overall_ms": summarize(everything),
            "by_kind_ms": {k: summarize(v) for k, v in sorted(driver.samples.items())},
            "reloads_during_run": status.reloads - reloads,
            "worker_pid_unchanged": system.worker_pid() == worker,
        }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 changes (smoke run)")
    parser.add_argument("--changes", type=int, default=204, help="at least this many changes")
    parser.add_argument(
        "--debounce", type=float, default=None, help="sidecar --debounce (default: its default)"
    )
    parser.add_argument("--poll-ms", type=float, default=1.0, help="admin socket poll period")
    parser.add_argument(
        "--zookeeper", action="store_true", help="the node in ZooKeeper mode (via the publisher)"
    )
    args = parser.parse_args(argv)
    changes = 30 if args.quick else args.changes
    debounce = args.debounce if args.debounce is not None else SystemOptions().debounce
    result = run(changes, debounce, args.poll_ms, "zookeeper" if args.zookeeper else "marathon")
    overall = result["overall_ms"]
    result["goal"] = f"p50 <= {GOAL_P50_MS} ms, p99 <= {GOAL_P99_MS} ms"
    result["goal_met"] = overall["p50"] <= GOAL_P50_MS and overall["p99"] <= GOAL_P99_MS
    result["machine"] = machine_facts()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
