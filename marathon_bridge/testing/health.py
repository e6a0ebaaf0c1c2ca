"""Health results of emulated tasks, and real probes for ``run_tasks=True``.

:class:`HealthResult` mirrors Marathon's per-check record (``alive``, ``consecutiveFailures``,
``firstSuccess``, ``lastSuccess``, ``lastFailure``, ``lastFailureCause``). :class:`HealthProber`
probes HTTP/TCP checks (Marathon- and Mesos-level alike) against each running task's host port on
a fast interval and reports each outcome back to the cluster state.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Optional

from marathon_bridge.testing.wire import timestamp

LOG = logging.getLogger(__name__)

HTTP_PROTOCOLS = ("HTTP", "MESOS_HTTP")
TCP_PROTOCOLS = ("TCP", "MESOS_TCP")
PROBED_PROTOCOLS = HTTP_PROTOCOLS + TCP_PROTOCOLS


@dataclass
class HealthResult:
    """One health check's state for one task."""

    alive: bool = False
    consecutive_failures: int = 0
    first_success: Optional[float] = None
    last_success: Optional[float] = None
    last_failure: Optional[float] = None
    last_failure_cause: Optional[str] = None

    def record(self, ok: bool, now: float, cause: str = "") -> bool:
        """Apply one probe outcome; True when ``alive`` flipped (or was first set)."""
        before = self.alive if (self.last_success or self.last_failure) else None
        if ok:
            self.consecutive_failures = 0
            if self.first_success is None:
                self.first_success = now
            self.last_success = now
            self.alive = True
        else:
            self.consecutive_failures += 1
            self.last_failure = now
            self.last_failure_cause = cause or "failed"
            self.alive = False
        return before != self.alive

    def to_json(self, instance_id: str) -> dict[str, Any]:
        """The ``healthCheckResults`` entry (absent options omitted)."""
        out: dict[str, Any] = {
            "alive": self.alive,
            "consecutiveFailures": self.consecutive_failures,
        }
        if self.first_success is not None:
            out["firstSuccess"] = timestamp(self.first_success)
        if self.last_failure is not None:
            out["lastFailure"] = timestamp(self.last_failure)
        if self.last_failure_cause is not None:
            out["lastFailureCause"] = self.last_failure_cause
        if self.last_success is not None:
            out["lastSuccess"] = timestamp(self.last_success)
        out["instanceId"] = instance_id
        return out


@dataclass(frozen=True)
class ProbeTarget:
    """One check to run against one task."""

    task_id: str
    index: int
    protocol: str
    host: str
    port: int
    path: str
    timeout: float


def probe_http(host: str, port: int, path: str, timeout: float) -> tuple[bool, str]:
    """GET path; 200-399 is healthy (as Marathon's HTTP checks)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path or "/", headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    status = response.status
    if 200 <= status < 400:
        return True, ""
    return False, f"{status} {response.reason}"


def probe_tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Connect and close."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"


def run_probe(target: ProbeTarget) -> tuple[bool, str]:
    """Run one probe."""
    if not target.port:
        return False, "no port"
    if target.protocol in HTTP_PROTOCOLS:
        return probe_http(target.host, target.port, target.path, target.timeout)
    return probe_tcp(target.host, target.port, target.timeout)


class HealthProber:
    """A thread that probes every target each ``interval`` seconds."""

    def __init__(
        self,
        targets: Callable[[], list[ProbeTarget]],
        report: Callable[[ProbeTarget, bool, str], None],
        interval: float = 0.1,
        workers: int = 4,
    ) -> None:
        self._targets = targets
        self._report = report
        self._interval = interval
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emu-probe")
        self._thread = threading.Thread(target=self._run, name="emu-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False)

    def _run(self) -> None:
        while not self._stop.is_set():
            targets = self._targets()
            futures = [(t, self._pool.submit(run_probe, t)) for t in targets]
            for target, future in futures:
                with contextlib.suppress(Exception):
                    ok, cause = future.result(timeout=target.timeout + 1.0)
                    if not self._stop.is_set():
                        self._report(target, ok, cause)
            self._stop.wait(self._interval)
