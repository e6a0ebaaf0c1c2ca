"""The host name cache: literals pass through, cached, refreshed; failures give None."""

from __future__ import annotations

import threading
from typing import Callable, Optional

from sidecar.resolve import Resolver, is_ip_literal, system_lookup
from testkit import wait_until
from testkit.clock import FakeClock


def counting(table: dict[str, Optional[str]]) -> tuple[Callable[[str], Optional[str]], list[str]]:
    calls: list[str] = []

    def lookup(host: str) -> Optional[str]:
        calls.append(host)
        return table.get(host)

    return lookup, calls


def test_ip_literals_pass_through_without_lookup() -> None:
    lookup, calls = counting({})
    resolver = Resolver(lookup)
    assert resolver("10.0.0.1") == "10.0.0.1"
    assert resolver("::1") == "::1"
    assert resolver("[fe80::1]") == "fe80::1"
    assert calls == []
    assert is_ip_literal("127.0.0.1") and not is_ip_literal("agent-1")
    resolver.close()


def test_names_are_cached_until_the_ttl() -> None:
    table: dict[str, Optional[str]] = {"agent-1": "10.0.0.7"}
    lookup, calls = counting(table)
    clock = FakeClock()
    resolver = Resolver(lookup, ttl=60, clock=clock, timeout=5)
    assert resolver("agent-1") == "10.0.0.7"
    assert resolver("agent-1") == "10.0.0.7"
    assert calls == ["agent-1"]
    table["agent-1"] = "10.0.0.8"
    clock.now += 61
    assert resolver("agent-1") == "10.0.0.7"  # stale answer served while refreshing
    wait_until(lambda: resolver("agent-1") == "10.0.0.8", timeout=10)
    resolver.close()


def test_unresolvable_name_gives_none() -> None:
    resolver = Resolver(lambda host: None, timeout=5)
    assert resolver("no-such-host.invalid") is None
    assert resolver.failures == 1
    resolver.close()


def test_a_failed_refresh_keeps_the_last_good_answer() -> None:
    table: dict[str, Optional[str]] = {"agent-1": "10.0.0.7"}
    lookup, calls = counting(table)
    clock = FakeClock()
    resolver = Resolver(lookup, ttl=60, clock=clock, timeout=5)
    assert resolver("agent-1") == "10.0.0.7"
    del table["agent-1"]
    clock.now += 61
    resolver("agent-1")
    wait_until(lambda: len(calls) == 2 and resolver.failures == 1, timeout=10)
    assert resolver("agent-1") == "10.0.0.7"
    resolver.close()


def test_slow_lookup_does_not_block_and_triggers_a_rebuild() -> None:
    release = threading.Event()
    updates: list[int] = []

    def slow(host: str) -> Optional[str]:
        release.wait(10)
        return "10.1.2.3"

    resolver = Resolver(slow, timeout=0.05, on_update=lambda: updates.append(1))
    assert resolver("slow-agent") is None
    release.set()
    wait_until(lambda: updates == [1], timeout=10)
    assert resolver("slow-agent") == "10.1.2.3"
    resolver.close()


def test_system_lookup_of_localhost_and_an_invalid_name() -> None:
    assert system_lookup("localhost") in ("127.0.0.1", "::1")
    assert system_lookup("no-such-host.invalid") is None


def test_a_malformed_host_is_never_looked_up_nor_cached() -> None:
    from sidecar.resolve import Resolver

    asked: list[str] = []

    def lookup(host: str) -> str:
        asked.append(host)
        return "10.1.2.3"

    resolver = Resolver(lookup)
    try:
        for bad in ("bad host", "a\nb", "x" * 300, "-lead.example", "a..b", "ünï.example"):
            assert resolver.resolve(bad) is None
        assert resolver.resolve("agent-1.example.org") == "10.1.2.3"
        assert asked == ["agent-1.example.org"]
        assert list(resolver.cached()) == ["agent-1.example.org"]
    finally:
        resolver.close()
