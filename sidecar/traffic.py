"""Traffic through HAProxy from its ``show stat`` counters (pure): rows, intervals, history.

HAProxy counts per backend and per server since its worker process started: sessions now
(``scur``), queued requests (``qcur``), sessions in all (``stot``), HTTP requests (``req_tot``),
answers by class (``hrsp_4xx``, ``hrsp_5xx``) and connection or response errors (``econ``,
``eresp``). A rate is the difference between two polls divided by the time between them:

- an object seen for the first time, or a counter lower than before (a server deleted and added
  again under the same name), counts what it counted since it started;
- a new worker (a reload, a restart: ``show info`` tells another pid) starts every counter at 0
  after the previous poll, so its counts all belong to the interval;
- the very first poll has nothing to compare with: no rate yet.

The "traffic" of an object is its HTTP requests in ``http`` mode and its connections (sessions)
in ``tcp`` mode. :class:`History` keeps the traffic of the last polls per object in a small ring
(an ``array`` of counts per object, one slot per poll), for the status page's charts.

:func:`busiest` and :func:`matches` choose what the status page shows at 10k services: the
busiest few, optionally among those a search matches.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Protocol

from .haproxy_model import BackendSpec

BACKEND_ROW = "BACKEND"  # the svname of a backend's own row
NO_COUNT = -1  # a history slot without a sample


class StatRow(NamedTuple):
    """The counters of one backend or server (``server`` is ``BACKEND`` for the backend)."""

    proxy: str
    server: str
    mode: str  # "http" | "tcp"
    sessions: int  # scur
    queue: int  # qcur
    connections: int  # stot: sessions since the worker started
    requests: int  # req_tot (http only)
    http_4xx: int
    http_5xx: int
    conn_errors: int  # econ + eresp
    status: str  # UP, DOWN, MAINT, DRAIN, "no check"...

    @property
    def traffic(self) -> int:
        """Requests (http) or connections (tcp) since the worker started."""
        return self.requests if self.mode == "http" else self.connections


class Interval(NamedTuple):
    """What one object counted between two polls."""

    traffic: int
    http_4xx: int
    http_5xx: int
    conn_errors: int


class ObjectTraffic(NamedTuple):
    """One backend or server as the last poll saw it."""

    row: StatRow
    interval: Optional[Interval]  # None: nothing to compare with yet
    elapsed: float  # seconds the interval covers

    @property
    def rate(self) -> Optional[float]:
        """Requests (http) or connections (tcp) per second over the last interval."""
        if self.interval is None or self.elapsed <= 0:
            return None
        return self.interval.traffic / self.elapsed


@dataclass(frozen=True)
class TrafficSnapshot:
    """The last poll: every backend, and the servers of the backends polled for servers."""

    taken_at: Optional[float] = None  # monotonic; None: no poll succeeded yet
    taken_at_wall: Optional[float] = None
    interval: float = 0.0  # seconds between the last two polls
    poll_seconds: float = 0.0  # what the last poll took
    backends: Mapping[str, ObjectTraffic] = field(default_factory=dict)
    servers: Mapping[tuple[str, str], ObjectTraffic] = field(default_factory=dict)
    error: str = ""  # why the last poll failed ("" when it worked)


STAT_COLUMNS = (
    "pxname",
    "svname",
    "mode",
    "scur",
    "qcur",
    "stot",
    "req_tot",
    "hrsp_4xx",
    "hrsp_5xx",
    "econ",
    "eresp",
    "status",
)


def parse_stat(text: str) -> dict[tuple[str, str], StatRow]:
    """One ``show stat`` CSV answer -> (proxy, server) -> :class:`StatRow`; frontends skipped.

    Reads only the columns it needs, by the names of the ``#`` header line (raises
    ``ValueError`` when one is missing).
    """
    lines = text.split("\n")
    rows: dict[tuple[str, str], StatRow] = {}
    header = next((ln for ln in lines if ln.startswith("#")), None)
    if header is None:
        return rows
    names = header.lstrip("# ").rstrip(",").split(",")
    index = [names.index(column) for column in STAT_COLUMNS]
    width = max(index) + 1
    px, sv, mode, scur, qcur, stot, req, e4, e5, econ, eresp, status = index
    for line in lines:
        if not line or line.startswith("#"):
            continue
        v = line.split(",", width)  # the columns after the last one needed stay in one piece
        if len(v) < width or v[sv] == "FRONTEND":
            continue
        rows[(v[px], v[sv])] = StatRow(
            v[px],
            v[sv],
            v[mode],
            _int(v[scur]),
            _int(v[qcur]),
            _int(v[stot]),
            _int(v[req]),
            _int(v[e4]),
            _int(v[e5]),
            _int(v[econ]) + _int(v[eresp]),
            v[status],
        )
    return rows


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def interval_counts(previous: Optional[StatRow], current: StatRow) -> Interval:
    """What ``current`` counted since ``previous`` (see the module doc for new objects and
    counters that went down)."""

    def since(before: Optional[int], now: int) -> int:
        return now if before is None or now < before else now - before

    p = previous
    return Interval(
        since(None if p is None else p.traffic, current.traffic),
        since(None if p is None else p.http_4xx, current.http_4xx),
        since(None if p is None else p.http_5xx, current.http_5xx),
        since(None if p is None else p.conn_errors, current.conn_errors),
    )


def observe(
    rows: Mapping[tuple[str, str], StatRow],
    previous: Optional[Mapping[tuple[str, str], StatRow]],
    elapsed: float,
) -> dict[tuple[str, str], ObjectTraffic]:
    """Each row with its interval since ``previous`` (``None``: no comparable poll before, so
    no intervals; an empty mapping: a new worker, everything counted since it started)."""
    if previous is None:
        return {key: ObjectTraffic(row, None, 0.0) for key, row in rows.items()}
    return {
        key: ObjectTraffic(row, interval_counts(previous.get(key), row), elapsed)
        for key, row in rows.items()
    }


# --- history -------------------------------------------------------------------------------------


class History:
    """The traffic counted per poll, for the last ``points`` polls of each object.

    Polls are numbered; each object keeps one ``array`` of counts indexed by poll number modulo
    ``points`` and the number of the last poll that recorded it. Slots of polls that skipped an
    object are cleared when it is recorded again, and read as gaps.
    """

    def __init__(self, points: int = 100) -> None:
        self.points = points
        self.poll = -1  # the number of the newest poll
        self._elapsed = array("d", [0.0] * points)
        self._counts: dict[object, array[int]] = {}
        self._last: dict[object, int] = {}

    def start_poll(self, elapsed: float) -> None:
        """A new poll that covers ``elapsed`` seconds since the previous one."""
        self.poll += 1
        self._elapsed[self.poll % self.points] = elapsed

    def record(self, key: object, count: int) -> None:
        """``key`` counted ``count`` during the current poll's interval."""
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = array("i", [NO_COUNT] * self.points)
        else:
            first = max(self._last[key] + 1, self.poll - self.points + 1)
            for skipped in range(first, self.poll):
                counts[skipped % self.points] = NO_COUNT
        counts[self.poll % self.points] = min(count, 2**31 - 1)
        self._last[key] = self.poll

    def forget_stale(self) -> None:
        """Drop objects no poll recorded within the window (servers gone, backends removed)."""
        oldest = self.poll - self.points
        for key in [k for k, last in self._last.items() if last <= oldest]:
            del self._last[key]
            del self._counts[key]

    def series(self, key: object) -> list[tuple[float, Optional[int]]]:
        """(seconds, count or None) for each of the last ``points`` polls, oldest first (polls
        before the first one are gaps of 0 s); [] when the object is unknown."""
        counts = self._counts.get(key)
        if counts is None:
            return []
        last = self._last[key]
        out: list[tuple[float, Optional[int]]] = []
        for poll in range(self.poll - self.points + 1, self.poll + 1):
            if poll < 0:
                out.append((0.0, None))
                continue
            slot = poll % self.points
            value = counts[slot] if poll <= last else NO_COUNT
            out.append((self._elapsed[slot], None if value == NO_COUNT else value))
        return out

    def __len__(self) -> int:
        return len(self._counts)


def rates(series: Sequence[tuple[float, Optional[int]]]) -> list[Optional[float]]:
    """Per second, from :meth:`History.series` (gaps stay ``None``)."""
    return [None if n is None or s <= 0 else n / s for s, n in series]


# --- what the status page shows ------------------------------------------------------------------


def matches(backend: BackendSpec, query: str) -> bool:
    """A search on the status page: part of the app id or backend name, or the service port."""
    text = query.strip().lower()
    if not text:
        return True
    if text.isdigit():
        return str(backend.service_port).startswith(text)
    return text in backend.app_id.lower() or text in backend.name.lower()


def busiest(
    backends: Iterable[BackendSpec], traffic: Mapping[str, ObjectTraffic], top: int
) -> list[BackendSpec]:
    """The ``top`` backends with the most traffic per second (then sessions), in port order."""

    def weight(backend: BackendSpec) -> tuple[float, int, int, str]:
        seen = traffic.get(backend.name)
        rate = (seen.rate or 0.0) if seen is not None else 0.0
        sessions = seen.row.sessions if seen is not None else 0
        return (-rate, -sessions, backend.service_port, backend.name)

    chosen = heapq.nsmallest(max(0, top), backends, key=weight)
    return sorted(chosen, key=lambda b: (b.service_port, b.app_id, b.name))


class TrafficReader(Protocol):
    """What the status page reads from :class:`~sidecar.traffic_poller.TrafficPoller`."""

    def snapshot(self) -> TrafficSnapshot: ...

    def history(self, keys: Iterable[object]) -> dict[object, list[tuple[float, Optional[int]]]]:
        """:meth:`History.series` of each key."""

    def want_servers(self, backends: Iterable[str]) -> None:
        """A page shows these backends: read their servers too."""
