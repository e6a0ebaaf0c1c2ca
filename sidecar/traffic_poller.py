"""The traffic poller: one ``show stat`` poll per interval in its own thread, shared by every
view of the status page (a page view never asks HAProxy anything).

Each poll asks the current worker, over one connection, for ``show info`` (its pid: a new
worker restarts the counters) and ``show stat -1 2 -1`` (every backend's own row: 10k lines at
10k services), then, over a second one, ``show stat <backend> 4 -1`` for the servers of a few
backends: the busiest ``server_backends`` and those a page showed within the last
``WANTED_SECONDS`` (at most ``MAX_WANTED``). The counters become rates and history through the
pure :mod:`sidecar.traffic`.

The interval stretches when polls are expensive: after a successful poll the poller waits at
least ``interval`` seconds and at least ``1 / POLL_BUDGET`` times what the poll took (at most
``MAX_INTERVAL``), so it spends at most that share of its time polling (docs/benchmarks.md has
the cost at 10k backends). After a failed poll (HAProxy not running yet) it tries again after
``interval``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Callable, Optional, Protocol

from .haproxy.runtime import RuntimeAPIError, parse_info
from .periodic import Periodic
from .traffic import (
    BACKEND_ROW,
    History,
    ObjectTraffic,
    StatRow,
    TrafficSnapshot,
    interval_counts,
    observe,
    parse_stat,
)

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 3.0  # the status page refreshes this often
HISTORY_POINTS = 100  # polls kept per object: 5 minutes at the default interval
SERVER_BACKENDS = 20  # the busiest backends whose servers every poll reads
WANTED_SECONDS = 60.0  # backends a page showed keep their servers polled this long
MAX_WANTED = 200
POLL_BUDGET = 0.02  # at most this share of the poller's time is spent polling
MAX_INTERVAL = 60.0  # however long polls take, one at least this often

ServerKey = tuple[str, str]


class StatsSource(Protocol):
    """The runtime API calls the poller makes (:class:`~sidecar.haproxy.runtime.RuntimeAPI`)."""

    def execute_many(self, commands: Sequence[str]) -> list[str]: ...


class TrafficPoller:
    """Polls HAProxy's counters; thread-safe readers for the status page."""

    def __init__(
        self,
        stats: StatsSource,
        *,
        interval: float = DEFAULT_INTERVAL,
        points: int = HISTORY_POINTS,
        server_backends: int = SERVER_BACKENDS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.stats = stats
        self.interval = interval
        self.server_backends = server_backends
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._history = History(points)
        self._snapshot = TrafficSnapshot()
        self._pid: Optional[str] = None
        self._backend_rows: dict[ServerKey, StatRow] = {}
        self._server_rows: dict[ServerKey, StatRow] = {}
        self._polled: set[str] = set()  # the backends whose servers the last poll read
        self._wanted: dict[str, float] = {}  # backend -> until when its servers are polled
        self._thread = Periodic("traffic-poller", self._poll_and_wait, interval)

    # --- the thread ------------------------------------------------------------------------------
    def start(self) -> TrafficPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop()

    def _poll_and_wait(self) -> float:
        try:
            snapshot = self.poll()
        except Exception:  # a bug here must not end the polling
            log.exception("traffic poll failed")
            snapshot = self.snapshot()
        return self.next_delay(snapshot)

    def next_delay(self, snapshot: TrafficSnapshot) -> float:
        """Seconds until the next poll: the interval, stretched to keep within the budget
        after a successful poll (a failed one, e.g. HAProxy not up yet, costs nothing much)."""
        if snapshot.error:
            return self.interval
        return min(MAX_INTERVAL, max(self.interval, snapshot.poll_seconds / POLL_BUDGET))

    # --- readers (the status page) ----------------------------------------------------------------
    def snapshot(self) -> TrafficSnapshot:
        with self._lock:
            return self._snapshot

    def history(self, keys: Iterable[object]) -> dict[object, list[tuple[float, Optional[int]]]]:
        """(seconds, traffic counted or None) per poll in the window, per backend name or
        (backend, server) key."""
        with self._lock:
            return {key: self._history.series(key) for key in keys}

    def want_servers(self, backends: Iterable[str]) -> None:
        """A page shows these backends: poll their servers for a while."""
        until = self._clock() + WANTED_SECONDS
        with self._lock:
            for name in backends:
                self._wanted[name] = until
            if len(self._wanted) > MAX_WANTED:
                newest = heapq.nlargest(MAX_WANTED, self._wanted.items(), key=lambda i: i[1])
                self._wanted = dict(newest)

    # --- one poll --------------------------------------------------------------------------------
    def poll(self) -> TrafficSnapshot:
        """Read the counters now, update rates and history; the new snapshot."""
        started = self._clock()
        try:
            info, stat = self.stats.execute_many(["show info", "show stat -1 2 -1"])
            pid = parse_info(info).get("Pid", "")
            backends = {k: r for k, r in parse_stat(stat).items() if k[1] == BACKEND_ROW}
            chosen = self._server_backends(pid, backends)
            servers = self._read_servers(chosen)
        except (RuntimeAPIError, OSError, ValueError) as exc:
            return self._failed(str(exc), self._clock() - started)
        return self._publish(pid, started, backends, chosen, servers)

    def _server_backends(self, pid: str, backends: Mapping[ServerKey, StatRow]) -> list[str]:
        """The busiest backends (the most traffic since the previous poll, or since the worker
        started when there is none to compare with; then sessions) and the wanted ones."""
        now = self._clock()
        with self._lock:
            previous = self._backend_rows if pid == self._pid else {}
            self._wanted = {b: until for b, until in self._wanted.items() if until > now}
            wanted = set(self._wanted)

        def weight(item: tuple[ServerKey, StatRow]) -> tuple[int, int, str]:
            key, row = item
            return (-interval_counts(previous.get(key), row).traffic, -row.sessions, key[0])

        busiest = heapq.nsmallest(self.server_backends, backends.items(), key=weight)
        names = {proxy for proxy, _ in backends}
        return sorted({key[0] for key, _ in busiest} | (wanted & names))

    def _read_servers(self, backends: Sequence[str]) -> dict[ServerKey, StatRow]:
        if not backends:
            return {}
        answers = self.stats.execute_many([f"show stat {name} 4 -1" for name in backends])
        rows: dict[ServerKey, StatRow] = {}
        for answer in answers:
            rows.update((k, r) for k, r in parse_stat(answer).items() if k[1] != BACKEND_ROW)
        return rows

    def _publish(
        self,
        pid: str,
        started: float,
        backends: dict[ServerKey, StatRow],
        chosen: Sequence[str],
        servers: dict[ServerKey, StatRow],
    ) -> TrafficSnapshot:
        took = self._clock() - started
        with self._lock:
            before = self._snapshot.taken_at
            elapsed = 0.0 if before is None else started - before
            first, new_worker = self._pid is None, pid != self._pid
            polled_before = self._polled
            seen_backends = observe(
                backends, None if first else ({} if new_worker else self._backend_rows), elapsed
            )
            seen_servers = self._observe_servers(servers, first, new_worker, polled_before, elapsed)
            if not first:
                self._remember(seen_backends, seen_servers, elapsed)
            self._pid, self._backend_rows, self._server_rows = pid, backends, servers
            self._polled = set(chosen)
            self._snapshot = TrafficSnapshot(
                taken_at=started,
                taken_at_wall=self._wall(),
                interval=elapsed,
                poll_seconds=took,
                backends={proxy: seen for (proxy, _), seen in seen_backends.items()},
                servers=seen_servers,
            )
            return self._snapshot

    def _observe_servers(
        self,
        servers: dict[ServerKey, StatRow],
        first: bool,
        new_worker: bool,
        polled_before: set[str],
        elapsed: float,
    ) -> dict[ServerKey, ObjectTraffic]:
        """Servers of backends polled last time compare with that poll (a new server there
        counts from its start); the others have no interval yet."""
        if first or new_worker:
            return observe(servers, None if first else {}, elapsed)
        known = {k: r for k, r in servers.items() if k[0] in polled_before}
        fresh = {k: r for k, r in servers.items() if k[0] not in polled_before}
        out = observe(known, self._server_rows, elapsed)
        out.update(observe(fresh, None, elapsed))
        return out

    def _remember(
        self,
        backends: Mapping[ServerKey, ObjectTraffic],
        servers: Mapping[ServerKey, ObjectTraffic],
        elapsed: float,
    ) -> None:
        history = self._history
        history.start_poll(elapsed)
        for (proxy, _), seen in backends.items():
            if seen.interval is not None:
                history.record(proxy, seen.interval.traffic)
        for key, seen in servers.items():
            if seen.interval is not None:
                history.record(key, seen.interval.traffic)
        history.forget_stale()

    def _failed(self, error: str, took: float) -> TrafficSnapshot:
        log.debug("traffic poll failed", extra={"error": error[:200]})
        with self._lock:
            old = self._snapshot
            self._snapshot = TrafficSnapshot(
                old.taken_at,
                old.taken_at_wall,
                old.interval,
                took,
                old.backends,
                old.servers,
                error=error[:300],
            )
            return self._snapshot
