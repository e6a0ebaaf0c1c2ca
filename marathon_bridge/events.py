"""Marathon's event bus (``GET /v2/events``): an SSE parser and a reconnecting event stream.

``SSEParser`` is pure: it turns the bytes of a ``text/event-stream`` body into frames, whatever
the chunking. ``EventStream`` is the I/O shell around it: it opens the stream through an
*opener* (``MarathonClient.event_stream`` supplies one that tries every Marathon URL and follows
a standby's redirect), reads with a timeout so a silent connection is noticed, reconnects with
capped exponential backoff and jitter, and calls ``on_connect`` after every (re)connect so the
caller can take a fresh snapshot: Marathon replays nothing that was missed while disconnected.

Marathon frames are ``event: <type>\\r\\ndata: <json>\\r\\n\\r\\n``; every 10 s it writes a bare
``\\r\\n`` as a keep-alive (an empty line, not a ``:`` comment).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

import requests
import urllib3.exceptions

from marathon_bridge import jsonfast
from marathon_bridge.errors import Forbidden, MarathonError, Unauthorized

__all__ = ["Event", "EventStream", "SSEFrame", "SSEParser", "event_from_frame"]

log = logging.getLogger(__name__)

_LINE_END = re.compile(rb"\r\n?|\n")
_BOM = b"\xef\xbb\xbf"
_READ_SIZE = 64 * 1024
_MIN_BACKOFF = 0.05

Opener = Callable[[float], requests.Response]
"""Opens one event stream with the given read timeout; raises ``MarathonError`` if it cannot."""


@dataclass(frozen=True)
class SSEFrame:
    """One dispatched server-sent event: its ``event:`` name and its ``data:`` lines, \\n-joined."""

    event: str
    data: str


@dataclass(frozen=True)
class Event:
    """One Marathon event: its type (``status_update_event`` ...) and its parsed JSON payload."""

    type: str
    data: dict[str, Any]


MAX_LINE_BYTES = 16 * 1024 * 1024  # Marathon's largest events (heavy plans) are far smaller


class SSELineTooLong(ValueError):
    """A line without an end grew past the parser's limit: the stream is broken or hostile."""


class SSEParser:
    """Incremental ``text/event-stream`` parser: feed it bytes, get back complete frames.

    Lines may end in CRLF, LF or CR, and a chunk may end anywhere (inside a UTF-8 sequence or
    between ``\\r`` and ``\\n``); each line is decoded as UTF-8 only once it is complete.
    Comment lines (``:...``) and the ``id``/``retry`` fields are ignored. An empty line with no
    pending field is a keep-alive and is counted in ``heartbeats``.

    One leniency beyond the SSE specification: an ``event:`` name followed by a blank line but
    no ``data:`` yet stays pending until the data arrives (some recorded Marathon streams have
    blank lines between the two fields) instead of being dropped.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._after_cr = (
            False  # the last line ended in "\r": swallow a "\n" that starts the next chunk
        )
        self._at_start = True
        self._event: Optional[str] = None
        self._data: list[str] = []
        self.heartbeats = 0

    def feed(self, chunk: bytes) -> list[SSEFrame]:
        """Add ``chunk`` to the stream; return the frames it completed, in order."""
        if not chunk:
            return []
        buffer = self._buffer
        buffer += chunk
        if self._at_start:
            if len(buffer) < len(_BOM) and _BOM.startswith(bytes(buffer)):
                return []
            if buffer.startswith(_BOM):
                del buffer[: len(_BOM)]
            self._at_start = False
        pos = 0
        if self._after_cr and buffer:
            if buffer[0] == 0x0A:
                pos = 1
            self._after_cr = False
        frames: list[SSEFrame] = []
        size = len(buffer)
        while True:
            match = _LINE_END.search(buffer, pos)
            if match is None:
                break
            line = bytes(buffer[pos : match.start()])
            pos = match.end()
            if pos == size and buffer[pos - 1] == 0x0D:
                self._after_cr = True
            frame = self._line(line.decode("utf-8", errors="replace"))
            if frame is not None:
                frames.append(frame)
        del buffer[:pos]
        if len(buffer) > self.max_line:
            size = len(buffer)
            buffer.clear()
            raise SSELineTooLong(f"an event-stream line grew past {self.max_line} bytes ({size})")
        return frames

    def _line(self, line: str) -> Optional[SSEFrame]:
        if not line:
            return self._blank_line()
        if line[0] == ":":
            return None
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _blank_line(self) -> Optional[SSEFrame]:
        if self._data:
            frame = SSEFrame(event=self._event or "", data="\n".join(self._data))
            self._event = None
            self._data = []
            return frame
        if self._event is None:
            self.heartbeats += 1
        return None


def event_from_frame(frame: SSEFrame) -> Optional[Event]:
    """The ``Event`` a frame carries, or ``None`` (logged) if its data is not a JSON object.

    The type is the frame's ``event:`` name, else the payload's ``eventType``, else "message".
    """
    try:
        payload = jsonfast.loads(frame.data)
    except ValueError:
        log.warning(
            "skipping an event whose data is not valid JSON",
            extra={"event_type": frame.event, "data_length": len(frame.data)},
        )
        return None
    if not isinstance(payload, dict):
        log.warning(
            "skipping an event whose data is not a JSON object",
            extra={"event_type": frame.event, "data_length": len(frame.data)},
        )
        return None
    event_type = frame.event or str(payload.get("eventType") or "message")
    return Event(type=event_type, data=payload)


def _read_some(response: requests.Response) -> bytes:
    """Whatever bytes have arrived (blocking until some do, EOF, or the read timeout)."""
    raw = response.raw
    read1 = getattr(raw, "read1", None)
    if read1 is not None:
        return bytes(read1(_READ_SIZE))
    fp = getattr(raw, "_fp", None)  # urllib3 < 2: read from http.client directly
    if fp is not None and hasattr(fp, "read1"):
        return bytes(fp.read1(_READ_SIZE))
    return bytes(raw.read(1))


def _socket_of(raw: Any) -> Optional[socket.socket]:
    """The socket under a urllib3 response (urllib3 1.x keeps it only inside http.client)."""
    for path in (("_connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        current = raw
        for attribute in path:
            current = getattr(current, attribute, None)
        if isinstance(current, socket.socket):
            return current
    return None


def _interrupt(response: requests.Response) -> None:
    """Make a read blocked on ``response`` in another thread return now (EOF or error).

    Only shuts the socket down: closing the response here could wait for the reader's lock.
    """
    raw = response.raw
    try:
        raw.shutdown()  # urllib3 >= 2.3
        return
    except Exception:
        log.debug("urllib3 cannot shut the response down; using its socket", exc_info=True)
    sock = _socket_of(raw)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _abort(response: requests.Response) -> None:
    """Interrupt any read on ``response`` and close it (from the reading thread)."""
    _interrupt(response)
    try:
        response.close()
    except Exception:
        log.debug("closing the event stream response failed", exc_info=True)


_READ_ERRORS = (
    OSError,
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    ValueError,  # I/O on a closed response
    AttributeError,  # urllib3 clears its fp when closed from another thread
)


class EventStream:
    """Iterate over Marathon events, reconnecting until ``close()`` is called.

    Usually created by ``MarathonClient.event_stream()``. Every (re)connect increments
    ``connects`` and calls ``on_connect()`` before any event of that connection is yielded.
    A connection that sends nothing (not even the 10 s heartbeat) for ``read_timeout`` seconds
    is dropped and reopened. 401/403 are raised (``Unauthorized``/``Forbidden``); every other
    failure is logged and retried with exponential backoff (``backoff`` doubling up to
    ``max_backoff``, with jitter). ``close()`` may be called from any thread and ends the
    iteration promptly; setting ``stop`` ends it at the next read (at most ``read_timeout``).
    """

    def __init__(
        self,
        opener: Opener,
        *,
        on_connect: Optional[Callable[[], None]] = None,
        read_timeout: float = 30.0,
        stop: Optional[threading.Event] = None,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        if read_timeout <= 0:
            raise ValueError("read_timeout must be positive")
        self._opener = opener
        self._on_connect = on_connect
        self.read_timeout = read_timeout
        self._stop = stop
        self._backoff = max(backoff, _MIN_BACKOFF)
        self._max_backoff = max(max_backoff, self._backoff)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._response: Optional[requests.Response] = None
        self._heartbeats_before = 0
        self._parser = SSEParser()
        self.connects = 0
        self.last_activity = 0.0

    @property
    def heartbeats(self) -> int:
        """Keep-alive lines received over all connections."""
        return self._heartbeats_before + self._parser.heartbeats

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called or ``stop`` was set."""
        return self._closed.is_set() or (self._stop is not None and self._stop.is_set())

    def close(self) -> None:
        """End the iteration (from any thread): shuts the open connection down, if any.

        The iterating thread then closes it and stops; a stream that is waiting to reconnect
        stops at once.
        """
        self._closed.set()
        with self._lock:
            response = self._response
        if response is not None:
            _interrupt(response)

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        """Yield events until closed; connect, resync and reconnect as needed."""
        failures = 0
        while not self.closed:
            response = self._connect()
            if response is None:
                failures += 1
                self._pause(failures)
                continue
            received = False
            try:
                if not self._resync():
                    failures += 1
                    self._pause(failures)
                    continue
                for item in self._events(response):
                    if item is None:
                        received = True
                    else:
                        yield item
            finally:
                self._release(response)
            failures = 0 if received else failures + 1
            if not self.closed:
                self._pause(failures)

    def _connect(self) -> Optional[requests.Response]:
        """Open a connection, or return None (logged) when it failed and may be retried."""
        try:
            response = self._opener(self.read_timeout)
        except (Unauthorized, Forbidden):
            raise
        except MarathonError as exc:
            log.warning(
                "cannot open the Marathon event stream; will retry",
                extra={"error": str(exc), "http_status": exc.status},
            )
            return None
        with self._lock:
            if self._closed.is_set():
                _abort(response)
                return None
            self._response = response
        self.connects += 1
        self.last_activity = time.monotonic()
        self._heartbeats_before += self._parser.heartbeats
        self._parser = SSEParser()
        log.info(
            "event stream connected",
            extra={"marathon_url": response.url, "connects": self.connects},
        )
        return response

    def _resync(self) -> bool:
        """Call ``on_connect``; a Marathon error there means: reconnect later (False)."""
        if self._on_connect is None:
            return True
        try:
            self._on_connect()
        except (Unauthorized, Forbidden):
            raise
        except MarathonError as exc:
            log.warning(
                "on_connect failed after the event stream connected; reconnecting",
                extra={"error": str(exc)},
            )
            return False
        return True

    def _events(self, response: requests.Response) -> Iterator[Optional[Event]]:
        """Events of one connection; ``None`` marks "bytes arrived" (the connection is alive)."""
        parser = self._parser
        while not self.closed:
            try:
                chunk = _read_some(response)
            except (requests.Timeout, urllib3.exceptions.ReadTimeoutError, socket.timeout):
                if not self.closed:
                    log.warning(
                        "event stream silent for too long; reconnecting",
                        extra={"read_timeout": self.read_timeout},
                    )
                return
            except _READ_ERRORS as exc:
                if not self.closed:
                    log.warning("event stream broke; reconnecting", extra={"error": repr(exc)})
                return
            if not chunk:
                if not self.closed:
                    log.info("event stream closed by Marathon; reconnecting")
                return
            self.last_activity = time.monotonic()
            yield None
            try:
                frames = parser.feed(chunk)
            except SSELineTooLong as exc:
                log.warning(
                    "event stream sent an endless line; reconnecting", extra={"error": str(exc)}
                )
                return
            for frame in frames:
                event = event_from_frame(frame)
                if event is not None:
                    yield event

    def _release(self, response: requests.Response) -> None:
        with self._lock:
            if self._response is response:
                self._response = None
        _abort(response)

    def _pause(self, failures: int) -> None:
        """Wait before reconnecting: exponential in ``failures``, capped, with jitter."""
        ceiling = min(self._max_backoff, self._backoff * (2 ** min(failures, 30)))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography
        deadline = time.monotonic() + delay
        while not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._closed.wait(min(remaining, 0.1))
