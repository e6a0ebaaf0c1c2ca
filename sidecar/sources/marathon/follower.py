"""Following Marathon: a snapshot, then the event stream, with periodic resyncs (or polling).

:class:`MarathonFollower` owns the source's :class:`~.model.MarathonState`. Two threads:

- the *stream* thread reads ``GET /v2/events`` (the one long-lived Marathon connection) and
  queues what it gets: a "snapshot please" marker on every (re)connect (``on_connect``: Marathon
  replays nothing missed while disconnected), then the events of that connection;
- the *worker* thread is the only one touching the state. It takes full snapshots
  (``GET /v2/apps?embed=apps.tasks``: short requests) at start, after every stream (re)connect,
  every ``resync_interval`` (jittered) and whenever an event cannot be applied
  (``EventOutcome.resync``); between them it applies events to the state directly and re-reads
  single apps when ``EventOutcome.fetch_apps`` asks.

Poll mode (``poll=True``, or automatically while the stream is down: no connection or no byte,
heartbeats included, for ``stream_silence`` seconds -- Marathon sends one every 10 s) takes a
snapshot every ``poll_interval``.

Every new state is translated into a catalog (:class:`~.translate.MarathonTranslator`) and
offered to the :class:`~sidecar.sources.base.CatalogKeeper`, which applies the rules every source
shares: a failed or garbled answer keeps the last good catalog (counted in
``marathon_errors_total{kind}``) and is retried with backoff; an empty snapshot after a non-empty
catalog is believed only once confirmed (the state stays as it was meanwhile).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Union

from marathon_bridge.errors import MarathonError, NotFound
from sidecar.catalog import Catalog
from sidecar.gc_pause import collector_paused
from sidecar.metrics import FollowerMetrics, SidecarMetrics
from sidecar.sources.base import CatalogKeeper

from .model import EventOutcome, MarathonState
from .translate import MarathonTranslator

log = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = (
    "status_update_event",
    "health_status_changed_event",
    "instance_health_changed_event",
    "api_post_event",
    "app_terminated_event",
    "deployment_success",
    "deployment_failed",
)
RESYNC_REASONS = (
    "start",
    "stream connected",
    "resync interval",
    "poll",
    "event",
    "retry",
    "confirm empty",
    "once",
    "requested",
)


class EventStreamLike(Protocol):
    """What the follower reads from :meth:`MarathonClient.event_stream`."""

    connects: int
    last_activity: float

    def __iter__(self) -> Any: ...

    def close(self) -> None: ...


class MarathonAPI(Protocol):
    """The calls of :class:`marathon_bridge.client.MarathonClient` the follower makes."""

    def list_apps(self, embed: Sequence[str] = ()) -> Any: ...

    def get_app(self, app_id: str, embed: Sequence[str] = ()) -> Any: ...

    def event_stream(
        self,
        event_types: Sequence[str] = (),
        *,
        on_connect: Optional[Callable[[], None]] = None,
        read_timeout: float = 30.0,
        stop: Optional[threading.Event] = None,
    ) -> EventStreamLike: ...

    def close(self) -> None: ...


class SnapshotRejected(Exception):
    """Marathon answered, but not with something we are willing to believe."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _Resync:
    reason: str


@dataclass(frozen=True)
class _Event:
    type: str
    data: Mapping[str, Any]


_Item = Union[_Resync, _Event]


def check_snapshot(apps: Any) -> list[dict[str, Any]]:
    """Marathon's ``apps`` list, or :class:`SnapshotRejected` when its shape is wrong (pure)."""
    if not isinstance(apps, list):
        raise SnapshotRejected("garbage", f"expected a list of apps, got {type(apps).__name__}")
    for i, app in enumerate(apps):
        if not isinstance(app, dict) or not isinstance(app.get("id"), str) or not app["id"]:
            raise SnapshotRejected("garbage", f"apps[{i}] is not an app object with an id")
        tasks = app.get("tasks", [])
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise SnapshotRejected("garbage", f"apps[{i}].tasks is not a list of task objects")
    return apps


def jittered(interval: float, rng: Callable[[float, float], float] = random.uniform) -> float:
    """``interval`` shortened by up to 25 %, so nodes started together spread their resyncs."""
    return interval * rng(0.75, 1.0)


class MarathonFollower:
    """Keeps a :class:`MarathonState` and its catalog in step with Marathon (module doc)."""

    def __init__(
        self,
        client: MarathonAPI,
        keeper: CatalogKeeper,
        *,
        metrics: Optional[FollowerMetrics] = None,
        poll: bool = False,
        poll_interval: float = 10.0,
        resync_interval: float = 300.0,
        stream_read_timeout: float = 20.0,
        stream_silence: float = 15.0,
        event_types: Sequence[str] = EVENT_TYPES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.keeper = keeper
        self.translator = MarathonTranslator()
        self.metrics = metrics if metrics is not None else SidecarMetrics()
        self.poll_mode = poll
        self.poll_interval = poll_interval
        self.resync_interval = resync_interval
        self.stream_read_timeout = stream_read_timeout
        self.stream_silence = stream_silence
        self.event_types = tuple(event_types)
        self._clock = clock
        self._queue: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._stream: Optional[EventStreamLike] = None
        self._stream_lock = threading.Lock()
        self._state: Optional[MarathonState] = None  # a trusted base for events, or None
        self._next_snapshot = 0.0
        self._snapshot_reason = "start"
        self.snapshots = 0

    # --- public ---------------------------------------------------------------------------------
    @property
    def state(self) -> Optional[MarathonState]:
        return self._state

    def snapshot_once(self) -> Catalog:
        """One checked snapshot, no threads (``--once``); raises on any failure."""
        apps = check_snapshot(self._client.list_apps(embed=("apps.tasks",)))
        state = MarathonState.from_apps(apps)
        catalog = self.translator.translate(state)
        self._state = state
        self.snapshots += 1
        return catalog

    def start(self) -> MarathonFollower:
        # with the stream, its connect asks for the first snapshot; without one soon, poll
        grace = 0.0 if self.poll_mode else min(2.0, self.poll_interval)
        self._next_snapshot = self._clock() + grace
        self.metrics.poll_mode.set(1 if self.poll_mode else 0)
        worker = threading.Thread(target=self._work, name="follow-worker", daemon=True)
        self._threads = [worker]
        if not self.poll_mode:
            reader = threading.Thread(target=self._read_stream, name="follow-stream", daemon=True)
            self._threads.append(reader)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        self._queue.put(_Resync("stop"))  # wake the worker
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def request_resync(self, reason: str = "requested") -> None:
        self._queue.put(_Resync(reason))

    @property
    def last_contact(self) -> Optional[float]:
        """Monotonic time Marathon was last heard from: a good snapshot or stream activity."""
        times = [t for t in (self.keeper.last_sync, self._stream_activity()) if t is not None]
        return max(times) if times else None

    def _stream_activity(self) -> Optional[float]:
        with self._stream_lock:
            stream = self._stream
        if stream is None or stream.connects == 0 or self._state is None:
            return None
        return float(stream.last_activity)

    @property
    def stream_connected(self) -> bool:
        """True while the event stream is open and heard from recently (heartbeats count)."""
        with self._stream_lock:
            stream = self._stream
        if stream is None or self.poll_mode or stream.connects == 0:
            return False
        return self._clock() - stream.last_activity < self.stream_silence

    # --- stream thread --------------------------------------------------------------------------
    def _read_stream(self) -> None:
        backoff = self.keeper.retry_backoff
        while not self._stop.is_set():
            try:
                stream = self._client.event_stream(
                    self.event_types,
                    on_connect=self._on_stream_connect,
                    read_timeout=self.stream_read_timeout,
                    stop=self._stop,
                )
                with self._stream_lock:
                    self._stream = stream
                for event in stream:
                    self._queue.put(_Event(event.type, event.data))
                backoff = self.keeper.retry_backoff
            except MarathonError as exc:  # 401/403: the stream gives up; so do we, for a while
                self._count_error(exc, "stream")
            except Exception as exc:  # never let the reader die silently
                log.exception("event stream reader failed; restarting it")
                self._count_error(exc, "stream")
            self._stop.wait(backoff)
            backoff = min(
                backoff * 2, max(self.keeper.max_retry_backoff, self.keeper.retry_backoff)
            )

    def _on_stream_connect(self) -> None:
        self.metrics.stream_connects.inc()
        self._queue.put(_Resync("stream connected"))

    # --- worker thread --------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            timeout = min(max(0.0, self._next_snapshot - self._clock()), self._wake_interval())
            try:
                item: Optional[_Item] = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if self._stop.is_set():
                return
            try:
                if isinstance(item, _Resync):
                    self._snapshot(item.reason)
                elif isinstance(item, _Event):
                    self._handle_event(item)
                self._check_stream_fallback()
                if self._clock() >= self._next_snapshot:
                    self._snapshot(self._snapshot_reason)
            except Exception:  # a bug must not end the following
                log.exception("follower step failed; resyncing soon")
                self._schedule(self.keeper.retry_backoff, "retry after an internal error")

    def _wake_interval(self) -> float:
        return self.poll_interval if self.poll_mode else min(self.poll_interval, 5.0)

    def _check_stream_fallback(self) -> None:
        """While the stream is down, poll: bring a far-away resync forward to the poll interval."""
        last_sync = self.keeper.last_sync
        if self.poll_mode or self.stream_connected or last_sync is None:
            return
        due = last_sync + self.poll_interval
        if due < self._next_snapshot:
            self._next_snapshot, self._snapshot_reason = due, "poll (event stream down)"
            self.metrics.poll_mode.set(1)

    def _snapshot(self, reason: str) -> None:
        self.metrics.resyncs.labels(reason=_reason_label(reason)).inc()
        try:
            apps = check_snapshot(self._client.list_apps(embed=("apps.tasks",)))
            with collector_paused():
                state = MarathonState.from_apps(apps)
                catalog = self.translator.translate(state)
        except MarathonError as exc:
            self._failed(exc, "marathon")
            return
        except SnapshotRejected as exc:
            self._failed(exc, exc.kind)
            return
        except Exception as exc:  # a shape from_apps cannot digest
            log.warning("snapshot could not be read", extra={"error": repr(exc)})
            self._failed(exc, "invalid_snapshot")
            return
        hold = self.keeper.offer_snapshot(catalog, reason)
        if hold is not None:
            self.translator.undo()
            self.metrics.marathon_errors.labels(kind="suspicious_empty").inc()
            self._schedule(min(hold, self.poll_interval), "confirm empty")
            return
        self._state = state
        self.snapshots += 1
        log.info("Marathon snapshot", extra={"reason": reason, "apps": len(state.apps)})
        self._schedule_regular()

    def _handle_event(self, item: _Event) -> None:
        self.metrics.events.labels(type=_type_label(item.type)).inc()
        if self._state is None:
            return  # no trusted base yet: the pending snapshot will include this change
        if not isinstance(item.data, Mapping):
            self.metrics.marathon_errors.labels(kind="garbage_event").inc()
            return
        try:
            outcome: EventOutcome = self._state.apply_event(item.type, item.data)
        except Exception as exc:
            log.warning(
                "event could not be applied; resyncing",
                extra={"event_type": item.type, "error": repr(exc)},
            )
            self.metrics.marathon_errors.labels(kind="garbage_event").inc()
            self._schedule(0.0, "unreadable event")
            return
        state = outcome.state
        if outcome.fetch_apps:
            state = self._fetch_apps(state, outcome.fetch_apps)
        if outcome.resync:
            self._schedule(0.0, f"event {item.type}")
        if outcome.changed or state is not outcome.state:
            self._state = state
            # only these apps can differ (every app when the outcome does not say)
            known = outcome.apps or not outcome.changed
            touched = outcome.apps | outcome.fetch_apps if known else None
            catalog = self.translator.translate(state, touched)
            self.keeper.offer_change(catalog, f"event {item.type}")

    def _fetch_apps(self, state: MarathonState, app_ids: frozenset[str]) -> MarathonState:
        for app_id in sorted(app_ids):
            self.metrics.snapshot_apps_fetched.inc()
            try:
                app = self._client.get_app(app_id)
                if not isinstance(app, dict) or app.get("id") != app_id:
                    raise SnapshotRejected("garbage", f"GET /v2/apps{app_id}: not that app")
                state = state.with_app(app)
            except NotFound:
                state = state.without_app(app_id)
            except (MarathonError, SnapshotRejected) as exc:
                kind = exc.kind if isinstance(exc, SnapshotRejected) else "marathon"
                self._count_error(exc, kind)
                self._schedule(self.keeper.backoff(), "app fetch failed")
        return state

    # --- helpers --------------------------------------------------------------------------------
    def _failed(self, exc: BaseException, kind: str) -> None:
        self.metrics.marathon_errors.labels(kind=kind).inc()
        self._schedule(self.keeper.failed(_describe(exc), kind), "retry after a failure")

    def _count_error(self, exc: BaseException, kind: str) -> None:
        self.metrics.marathon_errors.labels(kind=kind).inc()
        self.keeper.report_error(_describe(exc), kind)

    def _schedule(self, delay: float, reason: str) -> None:
        now = self._clock()
        at = now + delay
        if self._next_snapshot <= now or at < self._next_snapshot:
            self._next_snapshot, self._snapshot_reason = at, reason

    def _schedule_regular(self) -> None:
        """The next snapshot after a good one: poll interval, or the jittered resync interval."""
        if self.poll_mode:
            delay, reason = self.poll_interval, "poll"
        elif self.stream_connected:
            delay, reason = jittered(self.resync_interval), "resync interval"
        else:
            delay, reason = self.poll_interval, "poll (event stream down)"
        self.metrics.poll_mode.set(0 if reason == "resync interval" else 1)
        self._next_snapshot, self._snapshot_reason = self._clock() + delay, reason


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:300]


def _reason_label(reason: str) -> str:
    """A small fixed set of label values for the resync counter."""
    for known in RESYNC_REASONS:
        if reason.startswith(known):
            return known.replace(" ", "_")
    return "other"


def _type_label(event_type: str) -> str:
    return event_type if event_type in EVENT_TYPES else "other"
