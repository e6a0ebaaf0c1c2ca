"""Coalescing bursts of catalog changes: when the newest one is due (pure, no clock of its own).

A :class:`Coalescer` holds the newest change not applied yet (:class:`Pending`) and says when it
is due (:meth:`Coalescer.due_at`):

- a change that changes servers only (as far as is known) is a *throttled* one: due at once when
  no change was taken for ``debounce`` seconds, else ``debounce`` after the last one taken. A
  lone change goes at once; a storm is applied every ``debounce`` with everything that came
  meanwhile, so no change waits longer than ``debounce`` however long the storm lasts;
- a change that needs a reload *settles* (:meth:`Coalescer.wait_for_burst`, once a build showed
  it): due when ``debounce`` passes without another change, never longer than ``max_coalesce``
  after the first of its burst, so a deploy's events share one reload; a reload also keeps a
  minimum interval from the last one (:meth:`Coalescer.hold`). The changes that join it wait
  with it;
- a change that turned out to change nothing HAProxy runs does not count as taken
  (:meth:`Coalescer.forget_no_op`): the next change that matters is not held back by it.

Times are whatever clock the caller passes (monotonic seconds); the caller serializes calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

T = TypeVar("T")
INF = float("inf")
MAX_COALESCE = 1.0  # a settling burst is applied at the latest this long after its first change


@dataclass
class Pending(Generic[T]):
    """The newest change not applied yet, and the timing facts of its burst."""

    item: T
    reason: str
    first_at: float  # the first change of the burst
    last_at: float  # the newest change
    not_before: float = 0.0  # a reload waits for the minimum interval since the last one
    again: bool = False  # apply even when it looks unchanged (apps left out for a port)
    settle: bool = False  # needs a reload: due when the burst settles
    taken_at: float = -INF  # when it was taken (see forget_no_op)
    taken_before: float = -INF  # when the change before it was taken


class Coalescer(Generic[T]):
    """Holds the newest change and decides when it is due (see the module doc)."""

    def __init__(self, debounce: float, max_coalesce: float = MAX_COALESCE) -> None:
        self.debounce = debounce
        self.max_coalesce = max_coalesce
        self.pending: Optional[Pending[T]] = None
        self.last_taken_at = -INF  # when a change was last taken to be applied

    def offer(self, item: T, reason: str, now: float) -> None:
        """A new change: it replaces the pending one and joins (or starts) a burst."""
        old = self.pending
        if old is None:
            self.pending = Pending(item, reason, now, now)
        elif old.again:  # a newer change does not wait for the retry time
            self.pending = Pending(item, reason, now, now, again=True)
        else:
            self.pending = Pending(
                item, reason, old.first_at, now, old.not_before, settle=old.settle
            )

    def due_at(self) -> float:
        """When the pending change should be applied (``inf``: nothing pending)."""
        pending = self.pending
        if pending is None:
            return INF
        if pending.settle:
            due = min(pending.last_at + self.debounce, pending.first_at + self.max_coalesce)
        else:
            due = max(pending.first_at, self.last_taken_at + self.debounce)
        return max(due, pending.not_before)

    def take(self, now: float) -> Optional[Pending[T]]:
        """The pending change, to apply now (nothing is pending afterwards)."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.taken_at, pending.taken_before = now, self.last_taken_at
            self.last_taken_at = now
        return pending

    def wait_for_burst(self, pending: Pending[T]) -> None:
        """A change that needs a reload: due when its burst settles (a newer change pending
        carries it, and waits so too)."""
        if self.pending is None:
            pending.settle = True
            self.pending = pending
        else:
            self.pending.settle = True

    def hold(self, pending: Pending[T], not_before: float) -> None:
        """Not before ``not_before`` (a reload's minimum interval): this change, or a newer one."""
        if self.pending is None:  # nothing newer arrived: retry this one later
            pending.not_before = not_before
            self.pending = pending
        else:
            self.pending.not_before = not_before

    def later(self, item: T, reason: str, now: float, delay: float, again: bool = False) -> None:
        """Apply ``item`` again after ``delay`` (a retry), unless something newer is pending."""
        if self.pending is None:
            self.pending = Pending(item, reason, now, now, now + delay, again=again)

    def forget_no_op(self, pending: Pending[T]) -> None:
        """The change ``pending`` turned out to change nothing HAProxy runs (deployment events,
        instance counts...): it does not count as taken, so the next change that matters is
        not held back by it."""
        if self.last_taken_at == pending.taken_at:  # nothing taken since
            self.last_taken_at = pending.taken_before
