"""Injectable faults for the emulator's HTTP server (thread-safe).

A :class:`Fault` matches requests by path glob (``fnmatch``, the path without the query) and
method, and does one thing: add latency, answer a status with a Marathon-like body, answer a
garbage or custom body, truncate the body, or drop the connection without an answer. Faults fire
``times`` times (``None``: until removed or cleared).
"""

from __future__ import annotations

import fnmatch
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

STATUS_MESSAGES = {
    500: "Internal Server Error",
    502: "Could not determine the current leader",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Fault:
    """One injected fault. Exactly what it does depends on which fields are set."""

    path: str = "*"
    method: str = "*"
    status: Optional[int] = None
    body: Optional[bytes] = None
    json_body: Any = None
    content_type: str = "application/json; charset=utf-8"
    delay: float = 0.0
    drop: bool = False
    truncate: bool = False
    times: Optional[int] = None
    expires_at: Optional[float] = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method not in ("*", method.upper()):
            return False
        return fnmatch.fnmatchcase(path, self.path)

    @property
    def answers(self) -> bool:
        """True when the fault replaces the normal answer (not only delays it)."""
        return bool(
            self.drop
            or self.truncate
            or self.status is not None
            or self.body is not None
            or self.json_body is not None
        )


class FaultInjector:
    """The set of active faults; the server consults :meth:`take` for every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        path: str = "*",
        *,
        method: str = "*",
        status: Optional[int] = None,
        body: Optional[bytes] = None,
        delay: float = 0.0,
        drop: bool = False,
        truncate: bool = False,
        times: Optional[int] = None,
        duration: Optional[float] = None,
    ) -> Fault:
        """Add a fault. ``body`` alone answers 200 with those bytes (e.g. ``b"garbage"``).

        ``times``: fire that many times; ``duration``: only for that many seconds from now.
        """
        fault = Fault(
            path=path,
            method=method.upper(),
            status=status,
            body=body,
            delay=delay,
            drop=drop,
            truncate=truncate,
            times=times,
            expires_at=_expiry(duration),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def respond_json(
        self,
        path: str,
        body: Any,
        *,
        status: int = 200,
        method: str = "GET",
        times: Optional[int] = None,
        duration: Optional[float] = None,
    ) -> Fault:
        """Answer ``body`` (any JSON value) instead of the real answer, e.g. an empty app list."""
        fault = Fault(
            path=path,
            method=method.upper(),
            status=status,
            json_body=body,
            times=times,
            expires_at=_expiry(duration),
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, path: str) -> list[Fault]:
        """Faults that fire for this request (each counted once; exhausted ones removed)."""
        fired: list[Fault] = []
        now = time.monotonic()
        with self._lock:
            for fault in list(self._faults):
                if fault.expires_at is not None and now >= fault.expires_at:
                    self._faults.remove(fault)
                    continue
                if not fault.matches(method, path):
                    continue
                fault.hits += 1
                fired.append(fault)
                if fault.times is not None and fault.hits >= fault.times:
                    self._faults.remove(fault)
        return fired


def _expiry(duration: Optional[float]) -> Optional[float]:
    return None if duration is None else time.monotonic() + duration
