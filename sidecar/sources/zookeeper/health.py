"""How the ZooKeeper source is doing, in words and figures (pure).

:class:`ZooKeeperFacts` is what the source knows at one moment: the session's state and since
when, the publisher's heartbeat as last seen, how many entries were skipped. From them:

- :func:`problems`: the degraded-mode reasons ``/health`` shows: a connection that is not
  up (the last known catalog is served meanwhile), a publisher heartbeat older than allowed (the
  catalog may be stale: nobody follows Marathon);
- :func:`details`: plain data for ``/health``'s ``source`` section.

A missing heartbeat is not a problem: a catalog that only nerve writes has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import orjson

CONNECTING = "CONNECTING"  # before the first connection (kazoo's states follow)
CONNECTED = "CONNECTED"
SUSPENDED = "SUSPENDED"
LOST = "LOST"

DEFAULT_STALE_AFTER = 30.0  # seconds; 6 heartbeats of the publisher's default interval
STALE_INTERVALS = 3  # a heartbeat that says its interval is stale after this many


@dataclass(frozen=True)
class Heartbeat:
    """The publisher's heartbeat as last seen: when it was written (monotonic estimate)."""

    at: float
    leader: str = ""
    interval: Optional[float] = None  # seconds between heartbeats, when the publisher says


def parse_heartbeat(at: float, data: Optional[bytes]) -> Heartbeat:
    """The heartbeat JSON's `leader` and `interval`; anything unreadable is simply left out."""
    try:
        document = orjson.loads(data or b"{}")
    except orjson.JSONDecodeError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    leader = document.get("leader")
    interval = document.get("interval")
    seconds: Optional[float] = None
    if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
        seconds = float(interval)
    return Heartbeat(at, leader[:200] if isinstance(leader, str) else "", seconds)


@dataclass(frozen=True)
class ZooKeeperFacts:
    now: float
    hosts: str
    state: str
    state_since: float
    synced: bool
    heartbeat: Optional[Heartbeat] = None
    stale_after: float = DEFAULT_STALE_AFTER
    skipped_entries: int = 0
    session_losses: int = 0

    @property
    def heartbeat_age(self) -> Optional[float]:
        return None if self.heartbeat is None else max(0.0, self.now - self.heartbeat.at)

    @property
    def heartbeat_limit(self) -> float:
        interval = self.heartbeat.interval if self.heartbeat is not None else None
        if interval is None:
            return self.stale_after
        return max(self.stale_after, STALE_INTERVALS * interval)


def problems(facts: ZooKeeperFacts) -> list[str]:
    """The reasons to show on /health (empty: all is well)."""
    out = []
    since = max(0.0, facts.now - facts.state_since)
    if facts.state == CONNECTING:
        out.append(f"not connected to ZooKeeper ({facts.hosts}) for {since:.0f} s")
    elif facts.state == SUSPENDED:
        out.append(
            f"ZooKeeper connection suspended for {since:.0f} s: serving the last known catalog"
        )
    elif facts.state == LOST:
        out.append(
            f"ZooKeeper session lost {since:.0f} s ago, reconnecting: serving the last known "
            "catalog"
        )
    age = facts.heartbeat_age
    if age is not None and age > facts.heartbeat_limit:
        leader = facts.heartbeat.leader if facts.heartbeat is not None else ""
        by = f" (last leader {leader})" if leader else ""
        out.append(f"the publisher's heartbeat is {age:.0f} s old{by}: the catalog may be stale")
    return out


def details(facts: ZooKeeperFacts) -> dict[str, Any]:
    """Plain data for /health."""
    age = facts.heartbeat_age
    return {
        "zookeeper": facts.hosts,
        "state": facts.state,
        "state_seconds": round(max(0.0, facts.now - facts.state_since), 3),
        "heartbeat_age_seconds": None if age is None else round(age, 3),
        "heartbeat_stale": age is not None and age > facts.heartbeat_limit,
        "publisher": facts.heartbeat.leader if facts.heartbeat is not None else None,
        "skipped_entries": facts.skipped_entries,
        "session_losses": facts.session_losses,
    }
