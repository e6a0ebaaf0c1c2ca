"""The publisher's status server (``/health``, ``/metrics``) and its health rule (pure).

:func:`evaluate_health`:

- a **standby** is healthy (``ok``): it waits to lead, holds no Marathon connection, and a
  restart would not help anyone;
- ZooKeeper not connected: ``degraded`` at first (kazoo reconnects, the session may survive), then
  ``failing`` (HTTP 503) once that lasted longer than the allowed sync age;
- a **leader** that has not had a good Marathon snapshot since it began to lead: ``degraded``
  while the term is younger than the allowed sync age, ``failing`` after; a leader whose last
  Marathon sync is older than that: ``failing`` (as the sidecar's rule: a restart hands the lead
  to a standby that may reach Marathon); a Marathon or ZooKeeper error being retried: ``degraded``.

The ``/health`` JSON also says who leads here (``role``), the ZooKeeper connection, the Marathon
sync age (leader), what was left out of the catalog and the last error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from kazoo.protocol.states import KazooState

from publisher.leadership import LEADER
from sidecar.metrics import CONTENT_TYPE_LATEST
from sidecar.status_http import TEXT, StatusHandler, StatusHTTPServer


@dataclass(frozen=True)
class HealthFacts:
    """What the health rule looks at (monotonic times in seconds)."""

    now: float
    role: str
    zk_state: str  # KazooState: CONNECTED, SUSPENDED or LOST
    zk_state_since: float
    max_sync_age: float
    term_started_at: Optional[float] = None  # leader only
    last_sync: Optional[float] = None  # leader only: the last good Marathon snapshot
    problems: tuple[str, ...] = ()  # errors being retried (Marathon, ZooKeeper writes)


@dataclass(frozen=True)
class HealthReport:
    status: str  # "ok" | "degraded" | "failing"
    reasons: tuple[str, ...]
    sync_age: Optional[float]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "failing" else 200


def evaluate_health(facts: HealthFacts) -> HealthReport:
    """The /health verdict (see the module doc)."""
    failing: list[str] = []
    degraded: list[str] = list(facts.problems)
    if facts.zk_state != KazooState.CONNECTED:
        lasted = facts.now - facts.zk_state_since
        reason = f"ZooKeeper {facts.zk_state.lower()} for {lasted:.0f} s"
        (failing if lasted > facts.max_sync_age else degraded).insert(0, reason)
    sync_age = None
    if facts.role == LEADER:
        sync_age = _leader_sync(facts, failing, degraded)
    if failing:
        return HealthReport("failing", tuple(failing + degraded), sync_age)
    if degraded:
        return HealthReport("degraded", tuple(degraded), sync_age)
    return HealthReport("ok", (), sync_age)


def _leader_sync(facts: HealthFacts, failing: list[str], degraded: list[str]) -> Optional[float]:
    if facts.last_sync is None:
        leading = facts.now - (facts.term_started_at or facts.now)
        if leading > facts.max_sync_age:
            failing.append(f"leading for {leading:.0f} s without a Marathon snapshot")
        else:
            degraded.append("leading; waiting for the first Marathon snapshot")
        return None
    age = max(0.0, facts.now - facts.last_sync)
    if age > facts.max_sync_age:
        failing.append(f"last Marathon sync {age:.0f} s ago (limit {facts.max_sync_age:.0f} s)")
    return age


class StatusSource(Protocol):
    """What the status server shows (the daemon)."""

    def health(self) -> tuple[HealthReport, dict[str, Any]]:
        """The verdict and the whole /health document."""

    def metrics_text(self) -> bytes: ...


class PublisherStatusServer(StatusHTTPServer):
    """``/health`` and ``/metrics`` of one publisher (loopback by default)."""

    def __init__(self, source: StatusSource, host: str = "127.0.0.1", port: int = 9091) -> None:
        handler = type("Handler", (_PublisherHandler,), {"source": source})
        super().__init__(handler, host, port)


class _PublisherHandler(StatusHandler):
    source: StatusSource
    server_version = "marathon-publisher"
    log = logging.getLogger(__name__)

    def route(self, path: str) -> None:
        if path == "/health":
            report, document = self.source.health()
            self.send_json(report.http_status, document)
        elif path == "/metrics":
            self.send(200, CONTENT_TYPE_LATEST, self.source.metrics_text())
        else:
            self.send(404, TEXT, b"not found\n")
