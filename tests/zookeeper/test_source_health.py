"""The ZooKeeper source's health in plain data: connection states and the publisher's heartbeat."""

from __future__ import annotations

from typing import Any

from sidecar.sources.zookeeper.health import (
    CONNECTED,
    CONNECTING,
    LOST,
    SUSPENDED,
    Heartbeat,
    ZooKeeperFacts,
    details,
    parse_heartbeat,
    problems,
)


def facts(state: str = CONNECTED, since: float = 90.0, **extra: Any) -> ZooKeeperFacts:
    return ZooKeeperFacts(
        now=100.0,
        hosts="zk1:2181",
        state=state,
        state_since=since,
        synced=True,
        **extra,
    )


def test_a_connected_source_with_a_fresh_heartbeat_has_no_problem() -> None:
    assert problems(facts(heartbeat=Heartbeat(95.0, "pub-1:42"))) == []
    assert details(facts(heartbeat=Heartbeat(95.0, "pub-1:42")))["heartbeat_age_seconds"] == 5.0


def test_every_state_but_connected_says_the_last_catalog_is_served() -> None:
    assert problems(facts(CONNECTING)) == ["not connected to ZooKeeper (zk1:2181) for 10 s"]
    (suspended,) = problems(facts(SUSPENDED))
    assert "suspended for 10 s" in suspended and "last known catalog" in suspended
    (lost,) = problems(facts(LOST, since=88.0))
    assert "session lost 12 s ago" in lost and "last known catalog" in lost


def test_a_stale_heartbeat_says_the_catalog_may_be_stale() -> None:
    old = facts(heartbeat=Heartbeat(40.0, "pub-1:42"))
    (problem,) = problems(old)
    assert "heartbeat is 60 s old (last leader pub-1:42)" in problem and "may be stale" in problem
    assert details(old)["heartbeat_stale"] is True and details(old)["publisher"] == "pub-1:42"


def test_the_limit_follows_the_interval_the_publisher_announces() -> None:
    slow = Heartbeat(40.0, "p", interval=30.0)  # 60 s old, allowed 3 x 30 s
    assert problems(facts(heartbeat=slow)) == []
    assert problems(facts(heartbeat=Heartbeat(40.0, "p", interval=1.0))) != []  # 30 s at least


def test_no_heartbeat_is_no_problem_a_nerve_only_catalog_has_none() -> None:
    assert problems(facts()) == []
    assert details(facts())["heartbeat_age_seconds"] is None


def test_a_heartbeat_of_any_content_is_read_without_failing() -> None:
    assert parse_heartbeat(1.0, b'{"leader":"h:1","interval":5}') == Heartbeat(1.0, "h:1", 5.0)
    for junk in (None, b"", b"{not json", b"[1]", b'{"leader":7,"interval":true}'):
        assert parse_heartbeat(1.0, junk) == Heartbeat(1.0, "", None)
