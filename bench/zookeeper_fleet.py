"""Many sidecar-side ZooKeeper watchers in many processes, for the ZooKeeper benchmarks.

A `WatcherFleet` starts `processes` worker processes (spawned: no kazoo thread is forked) with
`watchers / processes` watchers each. Every watcher is what a ZooKeeper-mode sidecar runs: its
own `KazooClient` (its own session, like one node) and the real
:class:`~sidecar.sources.zookeeper.watcher.CatalogWatcher` on `<zk-path>`. Each delivered
update is reported to this process with the time it was delivered (`time.monotonic()`, one
clock for every process on the machine) and the highest `version` label among its instances;
each connection state change is reported the same way. Python's GIL makes one process a poor
stand-in for many nodes, hence the processes.

The catalog helpers build services the way `marathon-publisher` writes them (through the
publisher/source contract, :mod:`sidecar.sources.zookeeper.mapping`), with Marathon-shaped task
ids, agent addresses and versions, so sizes are those of a real catalog.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from publisher.plan import ServiceSpec
from sidecar.catalog import READY, HealthCheck, Instance, Service, ServiceOptions, service_key
from sidecar.sources.zookeeper import mapping
from sidecar.sources.zookeeper.update import ServiceUpdate

# --- the catalog, as the publisher writes it ------------------------------------------------------


def version_label(number: int) -> str:
    """A Marathon app version (ISO time) that sorts with `number`."""
    return f"2026-12-04T{number // 3600 % 24:02d}:{number // 60 % 60:02d}:{number % 60:02d}.000Z"


def app_service(index: int, tasks: Sequence[tuple[int, int]]) -> tuple[str, ServiceSpec]:
    """App `/bench/app-<index>` (HTTP, a health check) with ready tasks given as (task number,
    version number): (znode name, spec)."""
    app_id = f"/bench/app-{index:05d}"
    options = ServiceOptions(
        service_port=10000 + index % 50000,
        bind_port=10000 + index % 50000,
        mode="http",
        health_check=HealthCheck("http", "/health", 5000, 2000, 3),
    )
    instances = tuple(_task(app_id, index, n, version) for n, version in tasks)
    service = Service(service_key(app_id, 0), app_id, 0, options, instances)
    published = mapping.zookeeper_service(service, mapping.service_name(app_id, 0))
    return published.name, ServiceSpec(published.instances, published.options)


def _task(app_id: str, index: int, n: int, version: int) -> Instance:
    task_id = f"{app_id.strip('/').replace('/', '_')}.{uuid.UUID(int=index << 32 | n)}"
    host = f"10.{n % 200}.{index // 250 % 250}.{index % 250 + 1}"
    return Instance(task_id, host, 31000 + n % 1000, READY, "running", 1, app_id,
                    version_label(version))  # fmt: skip


def catalog(services: int, tasks: int) -> dict[str, ServiceSpec]:
    """`services` apps with `tasks` tasks each, all at version 0."""
    return dict(app_service(i, [(n, 0) for n in range(tasks)]) for i in range(services))


def newest_version(update: ServiceUpdate) -> str:
    return max((i.label(mapping.VERSION_LABEL) or "" for i in update.instances), default="")


# --- the worker processes ---------------------------------------------------------------------


def _worker(
    first_id: int,
    count: int,
    hosts: str,
    zk_path: str,
    session_timeout: float,
    reports: Any,
    stop: Any,
    niceness: int = 0,
) -> None:
    import logging

    os.nice(niceness)  # before any thread: kazoo's and the watcher's threads inherit it

    from sidecar.sources.zookeeper.source import make_client
    from sidecar.sources.zookeeper.watcher import CatalogWatcher

    logging.getLogger("kazoo").setLevel(logging.ERROR)  # disconnections are counted instead

    def on_update(watcher_id: int) -> Any:
        def report(update: ServiceUpdate) -> None:
            reports.put(("update", watcher_id, update.service, newest_version(update),
                         time.monotonic()))  # fmt: skip

        return report

    def on_state(watcher_id: int) -> Any:
        return lambda state: reports.put(("state", watcher_id, str(state), time.monotonic()))

    clients, watchers = [], []
    for watcher_id in range(first_id, first_id + count):
        client = make_client([hosts], session_timeout)  # the sidecar's own client settings
        client.add_listener(on_state(watcher_id))
        client.start(timeout=120)
        watcher = CatalogWatcher(client, zk_path, on_update(watcher_id))
        watcher.start()
        clients.append(client)
        watchers.append(watcher)
    for watcher in watchers:
        watcher.wait_synced(300)
    reports.put(("ready", first_id, count, time.monotonic()))
    stop.wait()
    for watcher in watchers:
        watcher.stop(2)
    for client in clients:
        client.stop()
        client.close()


# --- this process's view ----------------------------------------------------------------------


@dataclass
class FleetLog:
    """What the workers reported, indexed for waiting."""

    seen: dict[tuple[str, str], dict[int, float]] = field(
        default_factory=lambda: defaultdict(dict)
    )  # (service, version) -> watcher -> first delivery time
    states: dict[int, list[tuple[str, float]]] = field(default_factory=lambda: defaultdict(list))
    deliveries: int = 0
    ready: int = 0


class WatcherFleet:
    def __init__(
        self,
        hosts: str,
        zk_path: str,
        watchers: int = 500,
        processes: int = 10,
        session_timeout: float = 10.0,
        probe_niceness: Optional[int] = None,
    ) -> None:
        """With `probe_niceness`, the `watchers` run at niceness 10 and one more watcher, the
        probe (id `watchers`), runs alone in a process of that niceness: a node that has its CPU
        to itself while the others compete for the rest (root may give it a negative one)."""
        self.probe = watchers if probe_niceness is not None else None
        self.watchers = watchers + (probe_niceness is not None)
        context = multiprocessing.get_context("spawn")
        self._reports: Any = context.Queue()
        self._stop = context.Event()
        self.log = FleetLog()
        self._cond = threading.Condition()
        self._collector = threading.Thread(target=self._collect, daemon=True)
        share = [watchers // processes + (i < watchers % processes) for i in range(processes)]
        starts = [sum(share[:i]) for i in range(processes)]
        fleet_niceness = 0 if probe_niceness is None else 10
        plan = [(start, n, fleet_niceness) for start, n in zip(starts, share)]
        if probe_niceness is not None:
            plan.append((watchers, 1, probe_niceness))
        common = (hosts, zk_path, session_timeout, self._reports, self._stop)
        self._workers = [
            context.Process(target=_worker, args=(start, n, *common, nice), daemon=True)
            for start, n, nice in plan
        ]

    def start(self, timeout: float = 600.0) -> float:
        """Start every worker and wait until each watcher has read the catalog; seconds taken."""
        started = time.monotonic()
        self._collector.start()
        for worker in self._workers:
            worker.start()
        self._wait(lambda: self.log.ready >= self.watchers, timeout, "every watcher synced")
        return time.monotonic() - started

    def threads(self) -> int:
        """Threads of all worker processes right now (kazoo's recipes spawn one per watch to
        read again after a reconnect)."""
        total = 0
        for worker in self._workers:
            with contextlib.suppress(OSError, ValueError):
                status = Path(f"/proc/{worker.pid}/status").read_text()
                total += int(status.split("Threads:", 1)[1].split()[0])
        return total

    def cpu_seconds(self) -> float:
        """User plus system CPU the worker processes used so far (their threads included)."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for worker in self._workers:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{worker.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / ticks

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)
            if worker.is_alive():
                worker.kill()
        self._reports.put(("end",))
        self._collector.join(10)

    def _collect(self) -> None:
        while True:
            try:
                event = self._reports.get(timeout=1.0)
            except queue.Empty:
                continue
            with self._cond:
                if event[0] == "end":
                    return
                self._record(event)
                self._cond.notify_all()

    def _record(self, event: tuple[Any, ...]) -> None:
        if event[0] == "update":
            _, watcher, service, version, at = event
            self.log.deliveries += 1
            self.log.seen[(service, version)].setdefault(watcher, at)
        elif event[0] == "state":
            _, watcher, state, at = event
            self.log.states[watcher].append((state, at))
        elif event[0] == "ready":
            self.log.ready += event[2]

    def _wait(self, check: Any, timeout: float, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(check, timeout):
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")

    def wait_everywhere(self, service: str, version: str, timeout: float = 120.0) -> list[float]:
        """Wait until every watcher delivered `service` at `version`; their delivery times."""
        key = (service, version)
        self._wait(lambda: len(self.log.seen[key]) >= self.watchers, timeout,
                   f"{service} {version} at every watcher")  # fmt: skip
        with self._cond:
            return sorted(self.log.seen[key].values())

    def probe_time(self, service: str, version: str) -> Optional[float]:
        """When the probe watcher delivered `service` at `version` (None: no probe, or not yet)."""
        with self._cond:
            return None if self.probe is None else self.log.seen[(service, version)].get(self.probe)

    def wait_connected(self, since: float, timeout: float = 120.0) -> list[float]:
        """Wait until every watcher that lost its connection after `since` is connected again;
        the time of each one's last CONNECTED (only watchers that were disconnected)."""

        def reconnected() -> Optional[list[float]]:
            times = []
            for changes in self.log.states.values():
                after = [(s, t) for s, t in changes if t >= since]
                if not after:
                    continue
                if after[-1][0] != "CONNECTED":
                    return None
                times.append(after[-1][1])
            return times

        found: list[list[float]] = []
        self._wait(lambda: _keep(found, reconnected()), timeout, "every watcher reconnected")
        return found[-1]

    def state_counts(self, since: float) -> dict[str, int]:
        """Watchers that went through each state after `since`."""
        counts: dict[str, int] = defaultdict(int)
        with self._cond:
            for changes in self.log.states.values():
                for state in {s for s, t in changes if t >= since}:
                    counts[state] += 1
        return dict(counts)


def _keep(found: list[Any], value: Any) -> bool:
    if value is None:
        return False
    found.append(value)
    return True
