"""A fake monotonic clock for code that takes ``clock`` (and ``sleep``) as parameters."""

from __future__ import annotations

import threading


class FakeClock:
    """Time that moves only when the test says: ``clock()`` reads it, :meth:`advance` (or
    setting :attr:`now`) moves it, :meth:`sleep` is a drop-in ``time.sleep`` that moves it
    instead of waiting. Safe to read from the code's threads."""

    def __init__(self, start: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._now = start

    def __call__(self) -> float:
        return self.now

    @property
    def now(self) -> float:
        with self._lock:
            return self._now

    @now.setter
    def now(self, value: float) -> None:
        with self._lock:
            self._now = value

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (at least 10 ms, so a polling loop always makes progress)."""
        self.advance(max(seconds, 0.01))
