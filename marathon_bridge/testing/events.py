"""The emulator's event bus: one bounded queue per ``/v2/events`` client.

Publishing never blocks: an event is serialized once and offered to each subscriber whose
``event_type`` filter accepts it. A subscriber whose queue is full is closed ("slow consumer"),
as Marathon closes a client that overflows ``--event_stream_max_outstanding_messages``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional

from marathon_bridge.testing.wire import dumps_play, sse_frame, timestamp

LOG = logging.getLogger(__name__)

CLOSE = b""  # sentinel put in a queue to end a stream


class Subscriber:
    """One connected event-stream client."""

    def __init__(
        self, remote_address: str, event_types: Iterable[str], max_outstanding: int
    ) -> None:
        self.remote_address = remote_address
        self.event_types = frozenset(event_types)
        self.queue: queue.Queue[bytes] = queue.Queue(maxsize=max_outstanding)
        self.closed = threading.Event()
        self.reason = ""
        self.closer: Optional[Callable[[], None]] = None  # cuts the connection (set by the server)

    def wants(self, event_type: str) -> bool:
        """Exact-match whitelist; no filter means every event."""
        return not self.event_types or event_type in self.event_types

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; False (and the subscriber closed) when the queue is full."""
        if self.closed.is_set():
            return False
        try:
            self.queue.put_nowait(frame)
        except queue.Full:
            self.close("slow consumer")
            return False
        return True

    def close(self, reason: str) -> None:
        """End this stream: the handler writes what it has and closes the connection."""
        if self.closed.is_set():
            return
        self.reason = reason
        self.closed.set()
        with contextlib.suppress(queue.Full):  # the handler also watches ``closed``
            self.queue.put_nowait(CLOSE)
        if self.closer is not None and reason != "detached":
            with contextlib.suppress(OSError):
                self.closer()  # a handler blocked writing to a stalled client wakes up


class EventBus:
    """Fan-out of Marathon events to subscribers, plus an in-memory history for tests."""

    def __init__(self, max_outstanding: int = 1024, history: int = 10000) -> None:
        self.max_outstanding = max_outstanding
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._history: list[dict[str, Any]] = []
        self._history_limit = history
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []

    def add_listener(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Call ``listener(event_type, payload)`` synchronously for every event published."""
        with self._lock:
            self._listeners.append(listener)

    def publish(self, event_type: str, payload: Mapping[str, Any]) -> None:
        """Send one event (``payload`` already holds eventType and timestamp)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event_type, dict(payload))
            except Exception:  # a test hook must not break the emulator
                LOG.exception("event listener failed")
        frame = sse_frame(event_type, dumps_play(payload))
        with self._lock:
            self._history.append(dict(payload))
            if len(self._history) > self._history_limit:
                del self._history[: len(self._history) - self._history_limit]
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.closed.is_set() or not sub.wants(event_type):
                continue
            if not sub.offer(frame):
                LOG.info(
                    "closing event stream", extra={"remote": sub.remote_address, "why": sub.reason}
                )

    def subscribe(self, remote_address: str, event_types: Iterable[str]) -> Subscriber:
        """Register a client and publish its ``event_stream_attached`` (usually seen first)."""
        sub = Subscriber(remote_address, event_types, self.max_outstanding)
        with self._lock:
            self._subscribers.append(sub)
        self.publish("event_stream_attached", stream_event("event_stream_attached", remote_address))
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Drop a client; the others get ``event_stream_detached``."""
        with self._lock:
            if sub not in self._subscribers:
                return
            self._subscribers.remove(sub)
        sub.close("detached")
        self.publish(
            "event_stream_detached", stream_event("event_stream_detached", sub.remote_address)
        )

    def close_all(self, reason: str = "closed") -> int:
        """Close every stream (leader election, fault injection). Returns how many."""
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.close(reason)
        return len(subscribers)

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._subscribers if not s.closed.is_set())

    def history(self, event_type: Optional[str] = None) -> list[dict[str, Any]]:
        """Events published so far (payload dicts), optionally of one type."""
        with self._lock:
            events = list(self._history)
        return [e for e in events if event_type is None or e.get("eventType") == event_type]


def stream_event(event_type: str, remote_address: str) -> dict[str, Any]:
    """event_stream_attached / event_stream_detached payload."""
    return {"remoteAddress": remote_address, "eventType": event_type, "timestamp": timestamp()}
