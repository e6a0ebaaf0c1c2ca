"""Liveness and readiness of the sidecar (pure): the rules behind ``/livez`` and ``/readyz``.

Two questions an orchestrator asks, answered from facts the daemon posted (no HAProxy round trip
per request):

- **live** (``/livez``; "restart me if not"): the daemon loop runs (it ran within
  ``loop_stall_limit`` seconds) and, when the sidecar runs HAProxy itself, HAProxy's master is
  alive, or has been down for less than ``haproxy_grace`` seconds while the sidecar (re)starts it.
  Before the first start (the sidecar waits up to its startup wait for a first catalog) it is
  live. A sidecar that lost its catalog source is live: a restart would not bring the source
  back. An HAProxy run by someone else (``--master-socket``) is not the sidecar's to restart:
  its absence is a reason, not a failure.
- **ready** (``/readyz``; "take me out of a rolling upgrade if not"): HAProxy runs a config
  built from a catalog (the source's, or the one saved on disk) that is fresh enough: not
  before the first catalog is applied, not while HAProxy does not run, not when the source has
  been out of contact for more than ``max_sync_age`` seconds (serving a saved catalog counts
  from the start), and not when applies have failed for longer than that (HAProxy keeps an
  ever older config).

``/health`` (:func:`sidecar.status.evaluate_health`) keeps its earlier meaning for
compatibility: close to readiness, plus ``degraded`` reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

LOOP_STALL_LIMIT = 120.0  # seconds without a turn of the daemon loop before it counts as hung
HAPROXY_GRACE = 30.0  # seconds HAProxy may be down while the sidecar (re)starts it


@dataclass(frozen=True)
class ProbeFacts:
    """What both probes look at (monotonic seconds)."""

    now: float
    loop_beat: float  # the last turn of the daemon loop (or its start)
    haproxy_required: bool  # False for --once
    haproxy_supervised: bool  # the sidecar starts and restarts HAProxy (no --master-socket)
    haproxy_running: bool
    haproxy_starting: bool  # the sidecar is (re)starting it right now
    haproxy_down_since: Optional[float]  # first seen down after a start attempt; None otherwise
    started_at: float
    catalog_served_at: Optional[float]  # HAProxy first ran a config built from a catalog
    last_sync: Optional[float]  # the last contact with the source
    loaded_from_disk: Optional[str]  # the saved catalog's time, while no contact since start
    apply_failing_since: Optional[float]
    haproxy_origin: Optional[str] = None  # started | adopted | external, while it runs
    source: str = "Marathon"
    max_sync_age: float = 60.0
    loop_stall_limit: float = LOOP_STALL_LIMIT
    haproxy_grace: float = HAPROXY_GRACE


@dataclass(frozen=True)
class ProbeReport:
    """One probe's answer: 200 when ``ok``; the reasons say why not, or what to watch."""

    ok: bool
    reasons: tuple[str, ...]
    details: tuple[tuple[str, Any], ...] = ()

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "ok" if self.ok else "failing",
            "reasons": list(self.reasons),
        }
        body.update(self.details)
        return body


def evaluate_liveness(facts: ProbeFacts) -> ProbeReport:
    """The ``/livez`` verdict (see the module doc)."""
    failing: list[str] = []
    notes: list[str] = []
    loop_age = max(0.0, facts.now - facts.loop_beat)
    if loop_age > facts.loop_stall_limit:
        failing.append(
            f"the daemon loop has not run for {loop_age:.0f} s "
            f"(limit {facts.loop_stall_limit:.0f} s)"
        )
    haproxy = _haproxy_liveness(facts)
    if haproxy is not None:
        failed, reason = haproxy
        (failing if failed else notes).append(reason)
    details = (("loop_age_seconds", round(loop_age, 3)), ("haproxy_origin", facts.haproxy_origin))
    return ProbeReport(not failing, tuple(failing + notes), details)


def _haproxy_liveness(facts: ProbeFacts) -> Optional[tuple[bool, str]]:
    """(fails liveness?, reason) about HAProxy, or ``None`` when nothing is to be said."""
    if not facts.haproxy_required or facts.haproxy_running:
        return None
    if not facts.haproxy_supervised:
        return False, "HAProxy (run outside the sidecar) is not running"
    if facts.haproxy_down_since is None:
        return False, "HAProxy not started yet: waiting for the first catalog"
    down = max(0.0, facts.now - facts.haproxy_down_since)
    grace = f"grace {_seconds(facts.haproxy_grace)} s"
    if down <= facts.haproxy_grace:
        return False, f"HAProxy is starting ({_seconds(down)} s, {grace})"
    return True, f"HAProxy's master has not run for {_seconds(down)} s ({grace})"


def evaluate_readiness(facts: ProbeFacts) -> ProbeReport:
    """The ``/readyz`` verdict (see the module doc)."""
    failing: list[str] = []
    notes: list[str] = []
    if facts.haproxy_required and not facts.haproxy_running:
        failing.append(
            "HAProxy is starting" if facts.haproxy_starting else "HAProxy is not running"
        )
    if facts.catalog_served_at is None:
        failing.append(f"no catalog applied yet (waiting for {facts.source})")
    sync_age = None if facts.last_sync is None else max(0.0, facts.now - facts.last_sync)
    stale = _staleness(facts, sync_age)
    if stale:
        failing.append(stale)
    if facts.loaded_from_disk is not None and facts.last_sync is None:
        notes.append(f"serving the saved catalog from {facts.loaded_from_disk}")
    if facts.apply_failing_since is not None:
        failing_for = max(0.0, facts.now - facts.apply_failing_since)
        reason = f"applying the newest catalog has failed for {failing_for:.0f} s"
        if failing_for > facts.max_sync_age:
            failing.append(f"{reason} (limit {facts.max_sync_age:.0f} s)")
        else:
            notes.append(reason)
    age = None if sync_age is None else round(sync_age, 3)
    details = (("sync_age_seconds", age), ("haproxy_origin", facts.haproxy_origin))
    return ProbeReport(not failing, tuple(failing + notes), details)


def _staleness(facts: ProbeFacts, sync_age: Optional[float]) -> str:
    """Why the catalog is too old to be ready on ("" when fresh enough)."""
    limit = facts.max_sync_age
    if facts.last_sync is None:
        if facts.loaded_from_disk is None:
            return ""  # nothing applied yet: said once, above
        since_start = max(0.0, facts.now - facts.started_at)
        if since_start <= limit:
            return ""
        return (
            f"no {facts.source} contact for {since_start:.0f} s since start (limit {limit:.0f} s)"
        )
    if sync_age is not None and sync_age > limit:
        return f"last {facts.source} contact {sync_age:.0f} s ago (limit {limit:.0f} s)"
    return ""


def _seconds(value: float) -> str:
    """Seconds for a reason: whole above 10, else with one decimal when it has one."""
    return f"{value:.0f}" if value >= 10 else f"{round(value, 1):g}"
