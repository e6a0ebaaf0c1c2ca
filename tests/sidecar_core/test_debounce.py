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
    pending = c.take()
    assert pending is not None and pending.leading and pending.item == "a"
    assert c.take() is None and c.due_at() == INF


def test_a_burst_waits_for_its_end() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "first", now=10.0)
    c.take()  # applied at once
    c.offer("b", "burst", now=10.01)
    assert c.due_at() == 10.01 + DEBOUNCE
    c.offer("c", "burst", now=10.03)  # the newest replaces it, and pushes the end out
    assert c.due_at() == 10.03 + DEBOUNCE
    pending = c.take()
    assert pending is not None and (pending.item, pending.first_at) == ("c", 10.01)


def test_a_steady_stream_is_applied_at_least_once_per_max_coalesce() -> None:
    c = Coalescer[int](DEBOUNCE, max_coalesce=1.0)
    c.offer(0, "x", now=0.0)
    c.take()
    for n in range(1, 100):
        c.offer(n, "x", now=n * 0.02)  # never DEBOUNCE apart
    assert c.due_at() == 0.02 + 1.0  # the first of the burst plus max_coalesce


def test_a_leading_change_that_needs_a_reload_waits_for_its_burst() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "new port", now=5.0)
    pending = c.take()
    assert pending is not None
    c.wait_for_burst(pending)
    assert c.due_at() == 5.0 + DEBOUNCE
    c.offer("b", "same deploy", now=5.02)  # joins the burst, not leading any more
    assert c.due_at() == 5.02 + DEBOUNCE


def test_hold_keeps_the_minimum_interval_for_this_change_or_a_newer_one() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "x", now=1.0)
    pending = c.take()
    assert pending is not None
    c.hold(pending, not_before=4.0)
    assert c.due_at() == 4.0
    c.offer("b", "newer", now=1.5)
    assert c.due_at() == 4.0  # the newer change inherits the wait
    taken = c.take()
    assert taken is not None
    c.offer("c", "newest", now=2.0)
    c.hold(taken, not_before=6.0)  # something newer is pending: it waits instead
    pending = c.take()
    assert pending is not None and pending.item == "c" and pending.not_before == 6.0


def test_later_retries_only_when_nothing_newer_is_pending() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.later("a", "retry", now=1.0, delay=2.0)
    assert c.due_at() == 3.0
    c.later("b", "retry", now=1.0, delay=0.0)
    pending = c.take()
    assert pending is not None and pending.item == "a"


def test_a_newer_change_does_not_wait_for_a_port_retry() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.later("a", "ports", now=1.0, delay=2.0, again=True)
    c.offer("b", "event", now=1.5)
    assert c.due_at() == 1.5  # leading: nothing changed for DEBOUNCE before it
    pending = c.take()
    assert pending is not None and pending.again and pending.item == "b"


def test_a_no_op_change_does_not_end_the_quiet_period() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "x", now=1.0)
    c.take()
    c.offer("same", "deployment event", now=5.0)
    no_op = c.take()
    assert no_op is not None
    c.forget_no_op(no_op)
    c.offer("b", "task joins", now=5.01)  # 0.01 s after the no-op, 4 s after the last change
    assert c.due_at() == 5.01


def test_a_no_op_is_not_forgotten_when_something_newer_came() -> None:
    c = Coalescer[str](DEBOUNCE)
    c.offer("a", "x", now=1.0)
    no_op = c.take()
    assert no_op is not None
    c.offer("b", "newer", now=1.01)
    c.forget_no_op(no_op)
    assert c.last_change_at == 1.01
