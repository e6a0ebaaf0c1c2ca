"""The coalescing of catalog changes, on plain numbers for time."""

from __future__ import annotations

from sidecar.debounce import INF, Coalescer

DEBOUNCE = 0.05


def test_nothing_pending_is_never_due() -> None:
    assert Coalescer[str](DEBOUNCE).due_at() == INF


def test_a_change_after_a_quiet_period_is_due_at_once() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "first", now=10.0)
    assert c.due_at() == 10.0
    pending = c.take(now=10.0)
    assert pending is not None and pending.item == "a" and not pending.settle
    assert c.take(now=10.0) is None and c.due_at() == INF


def test_changes_right_after_one_taken_wait_for_the_debounce_after_it() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "first", now=10.0)
    c.take(now=10.0)  # applied at once
    c.offer("b", "burst", now=10.01)
    assert c.due_at() == 10.0 + DEBOUNCE
    c.offer("c", "burst", now=10.03)  # the newest replaces it, and does not push the time out
    assert c.due_at() == 10.0 + DEBOUNCE
    pending = c.take(now=10.05)
    assert pending is not None and (pending.item, pending.first_at) == ("c", 10.01)


def test_a_storm_of_server_changes_is_applied_every_debounce() -> None:
    c = Coalescer[int](DEBOUNCE)
    taken: list[float] = []
    waits: list[float] = []
    now, n = 0.0, 0
    while now < 2.0:  # a change every 10 ms for 2 s, never DEBOUNCE apart
        c.offer(n, "storm", now=now)
        n += 1
        if c.due_at() <= now:
            pending = c.take(now)
            assert pending is not None
            taken.append(now)
            waits.append(now - pending.first_at)
        now = round(now + 0.01, 6)
    assert len(taken) >= 30  # about 2 s / DEBOUNCE, not one per max_coalesce
    assert max(waits) <= DEBOUNCE + 1e-9  # no change waited longer than the debounce
    assert min(b - a for a, b in zip(taken, taken[1:])) >= DEBOUNCE - 1e-9


def test_a_change_that_needs_a_reload_waits_for_its_burst_to_settle() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "new port", now=5.0)
    pending = c.take(now=5.0)
    assert pending is not None
    c.wait_for_burst(pending)
    assert pending.settle and c.due_at() == 5.0 + DEBOUNCE
    c.offer("b", "same deploy", now=5.02)  # joins the burst and settles with it
    assert c.due_at() == 5.02 + DEBOUNCE


def test_a_settling_burst_is_applied_at_least_once_per_max_coalesce() -> None:
    c = Coalescer[int](DEBOUNCE, max_coalesce=1.0)
    c.offer(0, "x", now=0.0)
    first = c.take(now=0.0)
    assert first is not None
    c.wait_for_burst(first)
    for n in range(1, 100):
        c.offer(n, "x", now=n * 0.02)  # never DEBOUNCE apart
    assert c.due_at() == 0.0 + 1.0  # the first of the burst plus max_coalesce


def test_a_newer_change_pending_settles_in_place_of_one_that_needs_a_reload() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "new port", now=5.0)
    pending = c.take(now=5.0)
    assert pending is not None
    c.offer("b", "newer", now=5.01)  # came while "a" was being built
    c.wait_for_burst(pending)
    newer = c.pending
    assert newer is not None and newer.item == "b" and newer.settle
    assert c.due_at() == 5.01 + DEBOUNCE


def test_hold_keeps_the_minimum_interval_for_this_change_or_a_newer_one() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "x", now=1.0)
    pending = c.take(now=1.0)
    assert pending is not None
    c.hold(pending, not_before=4.0)
    assert c.due_at() == 4.0
    c.offer("b", "newer", now=1.5)
    assert c.due_at() == 4.0  # the newer change inherits the wait
    taken = c.take(now=4.0)
    assert taken is not None
    c.offer("c", "newest", now=2.0)
    c.hold(taken, not_before=6.0)  # something newer is pending: it waits instead
    pending = c.take(now=6.0)
    assert pending is not None and pending.item == "c" and pending.not_before == 6.0


def test_later_retries_only_when_nothing_newer_is_pending() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.later("a", "retry", now=1.0, delay=2.0)
    assert c.due_at() == 3.0
    c.later("b", "retry", now=1.0, delay=0.0)
    pending = c.take(now=3.0)
    assert pending is not None and pending.item == "a"


def test_a_newer_change_does_not_wait_for_a_port_retry() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.later("a", "ports", now=1.0, delay=2.0, again=True)
    c.offer("b", "event", now=1.5)
    assert c.due_at() == 1.5  # nothing was taken for DEBOUNCE before it
    pending = c.take(now=1.5)
    assert pending is not None and pending.again and pending.item == "b"


def test_a_no_op_change_does_not_count_as_taken() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "x", now=1.0)
    c.take(now=1.0)
    c.offer("same", "deployment event", now=5.0)
    no_op = c.take(now=5.0)
    assert no_op is not None
    c.forget_no_op(no_op)
    c.offer("b", "task joins", now=5.01)  # 0.01 s after the no-op, 4 s after the last change
    assert c.due_at() == 5.01


def test_a_no_op_is_not_forgotten_when_something_newer_was_taken() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "x", now=1.0)
    no_op = c.take(now=1.0)
    assert no_op is not None
    c.offer("b", "newer", now=1.01)
    c.take(now=1.06)
    c.forget_no_op(no_op)
    assert c.last_taken_at == 1.06
