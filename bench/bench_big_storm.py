"""Event storm on a big cluster: the sidecar's CPU per event and a probe app's event-to-routing
latency, measured from outside.

Run: ``python -m bench.bench_big_storm [--apps 10000] [--rate 100] [--seconds 60]
[--kinds health,kill] [--probe-every 1.5] [--profile] [--zookeeper [--profile-publisher]]``.

The node is :class:`~testkit.big_cluster.BigCluster`: the emulator with ``--apps`` apps x 3
simulated tasks and a probe app of 4 real echo tasks, the sidecar (``python -m sidecar``) and its
HAProxy. For ``--seconds`` the storm makes ``--rate`` changes per second, in turn, to random
tasks of random apps through the emulator, which publishes them on the real event stream:

* ``health-down`` / ``health-up``: a task's health check fails (it leaves rotation) / the
  oldest failed one passes again;
* ``kill``: ``TASK_KILLING``, then ``TASK_KILLED`` and Marathon's replacement (staging, running,
  healthy): one kill brings several events.

Meanwhile one client process (:mod:`testkit.probe_traffic`) asks the probe app's port as fast as
it answers, and every ``--probe-every`` seconds one probe task that HAProxy routes to changes,
in turn: its health fails (latency: from the event to the start of the last request it
answered), passes again (to the first request it answers), it is killed (to the last request it
answered) and its replacement turns healthy (to the first request it answers). Event times are
taken inside the emulator as it publishes. A change that did not reach HAProxy in time (the
unhealthy task still answered when its health came back, the killed one when it got SIGTERM
``kill_grace`` later, the new one before the traffic stopped) has no latency: it is counted
apart, and the goal needs none.

CPU: user + system time of the sidecar process (every thread) from /proc, from the storm's start
until the sidecar has handled every event the emulator sent it (its ``marathon_events_total``
catches up with the count of published events of the types it subscribes to; how long that
took after the storm is printed: a sidecar slower than the storm falls behind), divided by
those events; also net of its idle rate, measured for 10 s before. ``--profile`` samples the
sidecar with ``py-spy`` (``pip install py-spy``) over the same window and prints the top
functions.

``--zookeeper``: the same storm in ZooKeeper mode. A ``marathon-publisher`` follows the emulator
and writes the catalog into a real ZooKeeper (500 ms tick, 512 MiB heap); the sidecar runs
``--source zookeeper``; the storm starts once the sidecar serves every app. The publisher is then
the one that must handle every Marathon event (its ``marathon_events_total``); the sidecar has
caught up when, after that, its count of service updates read from ZooKeeper stays the same for
``QUIET_SECONDS``. CPU per event is given for
both processes, each over the same window and the same Marathon events. ``--profile-publisher``
samples the publisher with ``py-spy`` over the storm's window (printed as ``publisher_profile``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sidecar.sources.marathon.follower import EVENT_TYPES
from testkit.apps import served_by_healthy
from testkit.big_cluster import PROBE_APP, BigCluster, BigClusterOptions, add_cluster_arguments
from testkit.event_clock import EventClock
from testkit.http import histogram_buckets, metric_sample, metric_sum
from testkit.machine import load_average, machine_facts, percentile
from testkit.probe_traffic import Answer, ProbeTraffic, first_reached, last_reached
from testkit.proc_usage import cpu_seconds, total_cpu_seconds
from testkit.py_spy import PySpy
from testkit.waiting import wait_until

GOAL_CPU_MS = 2.0
GOAL_P99_MS = 100.0
IDLE_SECONDS = 10.0
DRAIN_TIMEOUT = 900.0  # a sidecar that fell behind handles its backlog in this time
PROBE_INSTANCES = 4
STILL_ROUTED = 0.05  # a task that answered this close to the end of its window never left
STORM_KINDS = ("health-down", "health-up", "kill")
PREFIX = "marathon_sidecar_"
# the sidecar's own timings: change to HAProxy, build (model + render), apply
TIMINGS = ("change_to_haproxy_seconds", "render_duration_seconds", "apply_duration_seconds")
SLOW_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0)
QUIET_SECONDS = 2.0  # ZooKeeper mode: the sidecar read no update for this long: it caught up


class TaskPool:
    """The running tasks of the big apps (not the probe's), kept from the emulator's events;
    a storm picks its victims here."""

    def __init__(self, task_ids: list[str]) -> None:
        self._ids = list(task_ids)
        self._index = {t: i for i, t in enumerate(self._ids)}
        self._lock = threading.Lock()

    def record(self, event_type: str, payload: dict[str, Any]) -> None:
        if event_type != "status_update_event" or payload.get("appId") == PROBE_APP:
            return
        if payload.get("taskStatus") == "TASK_RUNNING":
            self.add(str(payload["taskId"]))
        else:
            self.discard(str(payload["taskId"]))

    def add(self, task_id: str) -> None:
        with self._lock:
            if task_id not in self._index:
                self._index[task_id] = len(self._ids)
                self._ids.append(task_id)

    def discard(self, task_id: str) -> None:
        with self._lock:
            index = self._index.pop(task_id, None)
            if index is None:
                return
            last = self._ids.pop()
            if index < len(self._ids):
                self._ids[index] = last
                self._index[last] = index

    def pick(self, rng: random.Random) -> str:
        with self._lock:
            return self._ids[rng.randrange(len(self._ids))]


class Storm(threading.Thread):
    """``rate`` changes per second for ``seconds``, cycling over ``kinds`` (module doc)."""

    def __init__(
        self, cluster: BigCluster, pool: TaskPool, rate: float, seconds: float, kinds: list[str]
    ) -> None:
        super().__init__(name="storm", daemon=True)
        self.cluster = cluster
        self.pool = pool
        self.rate = rate
        self.seconds = seconds
        self.kinds = kinds
        self.rng = random.Random(12)
        self.unhealthy: deque[str] = deque()
        self.done: dict[str, int] = {k: 0 for k in kinds}
        self.missed = 0  # victims gone before the change reached them
        self.started_at = 0.0
        self.ended_at = 0.0
        self.late = 0.0  # how far behind its schedule the storm fell, at most

    def run(self) -> None:
        emu = self.cluster.emu
        self.started_at = time.monotonic()
        count = int(self.rate * self.seconds)
        for n in range(count):
            due = self.started_at + n / self.rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # the schedule itself: a storm paced in time
            self.late = max(self.late, -pause)
            kind = self.kinds[n % len(self.kinds)]
            try:
                self._change(emu, kind)
                self.done[kind] += 1
            except KeyError:
                self.missed += 1
        self.ended_at = time.monotonic()

    def _change(self, emu: Any, kind: str) -> None:
        if kind == "health-down" or (kind == "health-up" and not self.unhealthy):
            task_id = self.pool.pick(self.rng)
            emu.set_task_health(task_id, False)
            self.unhealthy.append(task_id)
        elif kind == "health-up":
            emu.set_task_health(self.unhealthy.popleft(), True)
        else:
            emu.kill_task(self.pool.pick(self.rng))


@dataclass
class ProbeChange:
    kind: str  # health-down, health-up, kill, new
    task_id: str
    event_at: float  # monotonic, in the emulator


class ProbeDriver:
    """Changes one probe task at a time (module doc) and remembers when each event went out."""

    def __init__(self, cluster: BigCluster, clock: EventClock) -> None:
        self.cluster = cluster
        self.clock = clock
        self.initial = cluster.probe_tasks()
        self.prefix = next(iter(self.initial)).split(".instance-")[0] + ".instance-"
        self.changes: list[ProbeChange] = []
        self.turn = 0
        self.skipped = 0  # turns with no routed task to change
        self.down: Optional[str] = None

    def step(self) -> None:
        """The next change, to a task HAProxy routes to (none routed: the turn is skipped)."""
        kind = ("health-down", "health-up", "kill")[self.turn % 3]
        self.turn += 1
        emu = self.cluster.emu
        routed = sorted(self.cluster.probe_routed())
        since = time.monotonic()
        if kind == "health-up" and self.down is not None:
            emu.set_task_health(self.down, True)
            self._note(kind, self.down, self.clock.alive_at(self.down, True, since))
            self.down = None
        elif kind == "health-down" and routed:
            self.down = routed[0]
            emu.set_task_health(self.down, False)
            self._note(kind, self.down, self.clock.alive_at(self.down, False, since))
        elif kind == "kill" and routed:
            emu.kill_task(routed[-1])
            self._note(kind, routed[-1], self.clock.killing_at(routed[-1]))
        else:
            self.skipped += 1

    def _note(self, kind: str, task_id: str, at: Optional[float]) -> None:
        assert at is not None, f"no event for {kind} of {task_id}"
        self.changes.append(ProbeChange(kind, task_id, at))

    def replacements(self, since: float) -> list[ProbeChange]:
        """The probe's new tasks, each at its first alive event after ``since``."""
        first: dict[str, float] = {}
        for task_id, at in self.clock.running_since(since, self.prefix):
            if task_id not in self.initial:
                first.setdefault(task_id, at)
        return [ProbeChange("new", task_id, at) for task_id, at in first.items()]


def latencies_ms(
    changes: list[ProbeChange], answers: list[Answer], kill_grace: float
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Event -> routing delay per kind, from what the probe traffic saw (module doc); and per
    kind the changes that did not reach HAProxy in time: a task that turned unhealthy still
    answered when its health came back (its health-up then measures nothing and counts here
    too), a killed one when it got SIGTERM, a new or restored one answered nothing before the
    traffic stopped."""
    out: dict[str, list[float]] = {}
    late: dict[str, int] = {}
    never_left: set[str] = set()
    for change in sorted(changes, key=lambda c: c.event_at):
        routed = _routed_at(change, changes, answers, kill_grace)
        if change.kind == "health-down" and routed is None:
            never_left.add(change.task_id)
        elif change.kind == "health-up" and change.task_id in never_left:
            never_left.discard(change.task_id)
            routed = None
        if routed is None:
            late[change.kind] = late.get(change.kind, 0) + 1
        else:
            out.setdefault(change.kind, []).append((routed - change.event_at) * 1000.0)
    return out, late


def _routed_at(
    change: ProbeChange, changes: list[ProbeChange], answers: list[Answer], kill_grace: float
) -> Optional[float]:
    """When HAProxy's routing followed the change (None: not in time)."""
    if change.kind not in ("health-down", "kill"):
        return first_reached(answers, change.task_id, change.event_at)
    until = change.event_at + kill_grace  # a killed task gets SIGTERM then
    if change.kind == "health-down":
        until = _back_up_at(changes, change)
    last = last_reached(answers, change.task_id, change.event_at, until)
    return last if last < until - STILL_ROUTED else None


def _back_up_at(changes: list[ProbeChange], down: ProbeChange) -> float:
    """When a task that turned unhealthy passed its check again (its first health-up after)."""
    ups = [
        c.event_at
        for c in changes
        if c.kind == "health-up" and c.task_id == down.task_id and c.event_at > down.event_at
    ]
    return min(ups, default=down.event_at + 30.0)


@dataclass
class Counters:
    """What the sidecar and HAProxy did so far, read from outside."""

    at: float
    sidecar_cpu: float
    haproxy_cpu: float
    events: float  # Marathon events handled by the follower: the sidecar's, or the publisher's
    runtime_ops: float
    reloads: float
    haproxy_reloads: int
    publisher_cpu: float = 0.0  # ZooKeeper mode
    zk_updates: float = 0.0  # ZooKeeper mode: service updates the sidecar read
    full_gcs: float = 0.0  # the sidecar's full collections (generation 2)...
    full_gc_seconds: float = 0.0  # ... the time they took...
    full_gcs_fast: float = 0.0  # ... and those that took at most 50 ms
    timings: dict[str, dict[float, float]] = field(default_factory=dict)  # sidecar histograms

    @classmethod
    def read(cls, cluster: BigCluster) -> Counters:
        text = cluster.metrics_text()
        events = metric_sum(text, "marathon_sidecar_marathon_events_total")
        publisher_cpu = 0.0
        if cluster.publishing is not None:
            publisher = cluster.publisher_metrics_text()
            events = metric_sum(publisher, "marathon_publisher_marathon_events_total")
            publisher_cpu = cpu_seconds(cluster.publisher_pid)
        return cls(
            time.monotonic(),
            cpu_seconds(cluster.sidecar_pid),
            total_cpu_seconds(cluster.haproxy_pids()),
            events,
            metric_sample(text, "marathon_sidecar_haproxy_runtime_ops_total", {"op": "server"}),
            metric_sample(text, "marathon_sidecar_haproxy_reloads_total"),
            cluster.show_proc().reloads,
            publisher_cpu,
            metric_sample(text, "marathon_sidecar_zookeeper_service_updates_total"),
            *full_collections(text),
            {name: histogram_buckets(text, PREFIX + name) for name in TIMINGS},
        )


def full_collections(text: str) -> tuple[float, float, float]:
    """The sidecar's full garbage collections: count, seconds, count of those <= 50 ms."""
    name, full = "marathon_sidecar_gc_pause_seconds", {"generation": "2"}
    return (
        metric_sample(text, name + "_count", full),
        metric_sample(text, name + "_sum", full),
        metric_sample(text, name + "_bucket", {**full, "le": "0.05"}),
    )


def idle_cpu_rate(pid: int, seconds: float) -> float:
    """A process's CPU seconds per second with no change at all."""
    start, cpu = time.monotonic(), cpu_seconds(pid)
    threading.Event().wait(seconds)
    return (cpu_seconds(pid) - cpu) / (time.monotonic() - start)


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


class SentEvents:
    """How many events the emulator published of the types the sidecar subscribes to."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def record(self, event_type: str, payload: dict[str, Any]) -> None:
        if event_type in EVENT_TYPES:
            with self._lock:
                self.count += 1


def storm_figures(
    before: Counters, at_end: Counters, after: Counters, sent: int, idle_rate: float, storm: Storm
) -> dict[str, Any]:
    """``before`` the storm, ``at_end`` of it, ``after`` the sidecar handled every event."""
    cpu = after.sidecar_cpu - before.sidecar_cpu
    window = after.at - before.at
    net = cpu - idle_rate * window
    changes = sum(storm.done.values())
    return {
        "changes": storm.done,
        "changes_missed": storm.missed,
        "changes_per_s": round(changes / (storm.ended_at - storm.started_at), 1),
        "storm_late_max_s": round(storm.late, 3),
        "events_sent": sent,
        "events_handled_by_storm_end": int(at_end.events - before.events),
        "backlog_drained_s_after_storm": round(after.at - storm.ended_at, 1),
        "window_s": round(window, 1),
        "sidecar_cpu_s": round(cpu, 2),
        "sidecar_idle_cpu_per_s": round(idle_rate, 4),
        "cpu_ms_per_event": round(cpu * 1000 / max(sent, 1), 3),
        "cpu_ms_per_event_net_of_idle": round(net * 1000 / max(sent, 1), 3),
        "cpu_ms_per_change": round(cpu * 1000 / max(changes, 1), 3),
        "sidecar_cpu_share": round(cpu / window, 3),
        **publisher_figures(before, after, sent),
        "haproxy_cpu_s": round(after.haproxy_cpu - before.haproxy_cpu, 2),
        "runtime_ops": int(after.runtime_ops - before.runtime_ops),
        "sidecar_reloads": int(after.reloads - before.reloads),
        "haproxy_reloads": after.haproxy_reloads - before.haproxy_reloads,
        "sidecar_full_gcs": int(after.full_gcs - before.full_gcs),
        "sidecar_full_gc_s": round(after.full_gc_seconds - before.full_gc_seconds, 3),
        "sidecar_timings_over_s": {
            name: slower_than(before.timings[name], after.timings[name]) for name in TIMINGS
        },
        "sidecar_full_gcs_over_50ms": int(
            (after.full_gcs - after.full_gcs_fast) - (before.full_gcs - before.full_gcs_fast)
        ),
    }


def slower_than(before: dict[float, float], after: dict[float, float]) -> dict[str, int]:
    """How many of a histogram's observations between two reads took longer than each bound."""
    inf = float("inf")
    count = after.get(inf, 0.0) - before.get(inf, 0.0)
    over = {"n": int(count)}
    for bound in SLOW_BOUNDS:
        done = after.get(bound, 0.0) - before.get(bound, 0.0)
        over[f">{bound:g}"] = int(count - done)
    return over


def publisher_figures(before: Counters, after: Counters, sent: int) -> dict[str, Any]:
    """ZooKeeper mode: the publisher's CPU over the window (nothing in Marathon mode)."""
    if not after.publisher_cpu:
        return {}
    cpu = after.publisher_cpu - before.publisher_cpu
    return {
        "publisher_cpu_s": round(cpu, 2),
        "publisher_cpu_ms_per_event": round(cpu * 1000 / max(sent, 1), 3),
        "sidecar_zookeeper_updates": int(after.zk_updates - before.zk_updates),
    }


def wait_caught_up(cluster: BigCluster, before: Counters, sent: int) -> None:
    """Until every Marathon event was handled (module doc); in ZooKeeper mode, and then until
    the sidecar read no new update for ``QUIET_SECONDS``."""
    wait_until(
        lambda: Counters.read(cluster).events - before.events >= sent,
        DRAIN_TIMEOUT,
        "every Marathon event was handled",
        interval=1.0,
    )
    if cluster.publishing is None:
        return
    last = [Counters.read(cluster)]

    def quiet() -> bool:
        now = Counters.read(cluster)
        if now.zk_updates != last[0].zk_updates:
            last[0] = now
        return now.at - last[0].at >= QUIET_SECONDS

    wait_until(quiet, DRAIN_TIMEOUT, "the sidecar read every update", interval=0.5)


def wait_whole_catalog(cluster: BigCluster, timeout: float) -> None:
    """ZooKeeper mode: until the sidecar serves every app. The probe is served as soon as the
    publisher wrote it; the others follow one transaction each, and the storm waits for them."""
    wanted = cluster.options.apps + 1
    wait_until(
        lambda: cluster.metric("marathon_sidecar_services") >= wanted,
        timeout,
        f"the sidecar serves all {wanted} apps",
        interval=1.0,
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    options = BigClusterOptions(
        apps=args.apps,
        probe_instances=PROBE_INSTANCES,
        sidecar_args=tuple(args.sidecar_arg),
        source="zookeeper" if args.zookeeper else "marathon",
    )
    with BigCluster(options) as cluster, tempfile.TemporaryDirectory() as scratch:
        cluster.start_sidecar()
        cluster.wait_served(600 if args.zookeeper else 300)
        if args.zookeeper:
            wait_whole_catalog(cluster, 600)
        emu = cluster.emu
        wait_until(lambda: served_by_healthy(emu, PROBE_APP, cluster.probe_port), 120)
        idle_rate = idle_cpu_rate(cluster.sidecar_pid, IDLE_SECONDS)
        traffic = ProbeTraffic(cluster.probe_port, Path(scratch) / "answers").start()
        profilers = {}
        if args.profile:
            profilers["profile"] = PySpy(cluster.sidecar_pid, Path(scratch)).start()
        if args.profile_publisher:
            profilers["publisher_profile"] = PySpy(cluster.publisher_pid, Path(scratch)).start()
        result = storm_phase(cluster, args, idle_rate, traffic, profilers)
    result["source"] = options.source
    result["apps"] = args.apps
    result["tasks"] = args.apps * options.tasks_per_app
    return result


def storm_phase(
    cluster: BigCluster,
    args: argparse.Namespace,
    idle_rate: float,
    traffic: ProbeTraffic,
    profilers: dict[str, PySpy],
) -> dict[str, Any]:
    """The storm with the probe's changes; then until the sidecar has handled every event and
    the probe app is served by its healthy tasks again; the figures."""
    emu = cluster.emu
    clock, sent = EventClock(), SentEvents()
    pool = TaskPool([t["id"] for t in emu.tasks() if t["appId"] != PROBE_APP])
    for listener in (clock.record, sent.record, pool.record):
        emu.on_event(listener)
    storm = Storm(cluster, pool, args.rate, args.seconds, args.kinds.split(","))
    probe = ProbeDriver(cluster, clock)
    result: dict[str, Any] = {"loadavg_before": load_average()}
    before = Counters.read(cluster)
    storm.start()
    while storm.is_alive():
        storm.join(args.probe_every)
        if storm.is_alive():
            probe.step()
    at_end = Counters.read(cluster)
    wait_caught_up(cluster, before, sent.count)
    after = Counters.read(cluster)
    profiles = {name: profiler.stop() for name, profiler in profilers.items()}
    wait_until(lambda: served_by_healthy(emu, PROBE_APP, cluster.probe_port), 120)
    answers = traffic.stop()
    changes = probe.changes + probe.replacements(before.at)
    by_kind, late = latencies_ms(changes, answers, cluster.options.kill_grace)
    everything = [v for values in by_kind.values() for v in values]
    result["storm"] = storm_figures(before, at_end, after, sent.count, idle_rate, storm)
    result["probe_latency_ms"] = summarize(everything)
    result["probe_latency_slowest_ms"] = [round(v, 1) for v in sorted(everything)[-5:]]
    result["probe_latency_over_goal"] = sum(1 for v in everything if v > GOAL_P99_MS)
    result["probe_latency_by_kind_ms"] = {k: summarize(v) for k, v in sorted(by_kind.items())}
    result["probe_changes_not_routed_in_time"] = late
    result["probe_turns_skipped"] = probe.skipped
    result["probe_requests"] = len(answers)
    result["probe_failed_requests"] = sum(1 for a in answers if not a.ok)
    result.update(profiles)
    return result


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cluster_arguments(parser)
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the storm lasts")
    parser.add_argument(
        "--kinds", default=",".join(STORM_KINDS), help="the storm's changes, in turn"
    )
    parser.add_argument("--probe-every", type=float, default=1.5, help="seconds between probes")
    parser.add_argument("--profile", action="store_true", help="sample the sidecar (py-spy)")
    parser.add_argument(
        "--zookeeper", action="store_true", help="ZooKeeper mode: publisher, ZooKeeper, sidecar"
    )
    parser.add_argument(
        "--profile-publisher", action="store_true", help="ZooKeeper mode: sample the publisher"
    )
    args = parser.parse_args(argv)
    if args.profile_publisher and not args.zookeeper:
        parser.error("--profile-publisher needs --zookeeper")
    result = run(args)
    storm, latency = result["storm"], result["probe_latency_ms"]
    result["goal"] = f"<= {GOAL_CPU_MS} ms CPU per event, p99 <= {GOAL_P99_MS} ms"
    result["goal_met"] = (
        storm["cpu_ms_per_event"] <= GOAL_CPU_MS
        and latency["p99"] <= GOAL_P99_MS
        and not result["probe_changes_not_routed_in_time"]
    )
    result["machine"] = machine_facts()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
