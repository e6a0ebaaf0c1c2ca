"""A step run again and again in a thread of its own, the wait after each set by the step."""

from __future__ import annotations

import logging
import threading
from typing import Callable, Optional

log = logging.getLogger(__name__)


class Periodic:
    """Runs ``step`` until :meth:`stop`; ``step`` returns the seconds to wait before the next
    run. A step that raises is logged and run again after ``interval``."""

    def __init__(self, name: str, step: Callable[[], float], interval: float) -> None:
        self.name = name
        self._step = step
        self.interval = interval
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the thread (again after :meth:`stop`); nothing when it runs already."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self._step()
            except Exception:
                log.exception("periodic step failed", extra={"step": self.name})
                wait = self.interval
            self._stop.wait(max(0.0, wait))
