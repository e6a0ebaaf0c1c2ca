"""Coalescing bursts of catalog changes: when the newest one is due (pure, no clock of its own).

A :class:`Coalescer` holds the newest change not applied yet (:class:`Pending`) and says when it
is due (:meth:`Coalescer.due_at`), with a leading-edge debounce:

- a change that comes after a quiet period (no change for ``debounce`` seconds) is *leading*:
  due at once (the caller applies it at once when it changes servers only);
- a change that follows another within ``debounce`` waits until ``debounce`` passes without
  another, never longer than ``max_coalesce`` after the first of the burst. So a burst costs at
  most two applies (its first change, then the rest) and a steady stream one per
  ``max_coalesce``;
- a leading change that needs a reload waits like the rest of its burst
  (:meth:`Coalescer.wait_for_burst`: a deploy's events share one reload), and a reload keeps a
  minimum interval from the last one (:meth:`Coalescer.hold`);
- a change that turned out to change nothing HAProxy runs does not end the quiet period
  (:meth:`Coalescer.forget_no_op`).

Times are whatever clock the caller passes (monotonic seconds); the caller serializes calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Optional, TypeVar

T = TypeVar("T")
INF = float("inf")
MAX_COALESCE = 1.0  # a steady stream of changes still gets applied at least this often


@dataclass
class Pending(Generic[T]):
    """The newest change not applied yet, and the timing facts of its burst."""

    item: T
    reason: str
    first_at: float  # the first change of the burst
    last_at: float  # the newest change
    not_before: float = 0.0  # a reload waits for the minimum interval since the last one
    again: bool = False  # apply even when it looks unchanged (apps left out for a port)
    leading: bool = False  # the first change after a quiet period: due at once
    change_before: float = -INF  # the change before this one (see forget_no_op)


class Coalescer(Generic[T]):
    """Holds the newest change and decides when it is due (see the module doc)."""

    def __init__(self, debounce: float, max_coalesce: float = MAX_COALESCE) -> None:
        self.debounce = debounce
        self.max_coalesce = max_coalesce
        self.pending: Optional[Pending[T]] = None
        self.last_change_at = -INF  # when the last change was offered

    def offer(self, item: T, reason: str, now: float) -> None:
        """A new change: it replaces the pending one and joins (or starts) a burst."""
        before = self.last_change_at
        quiet = now - before >= self.debounce
        self.last_change_at = now
        old = self.pending
        if old is None:
            self.pending = Pending(item, reason, now, now, leading=quiet, change_before=before)
        elif old.again:  # a newer change does not wait for the retry time
            self.pending = Pending(
                item, reason, now, now, again=True, leading=quiet, change_before=before
            )
        else:
            self.pending = Pending(
                item,
                reason,
                old.first_at,
                now,
                old.not_before,
                leading=old.leading,
                change_before=old.change_before,
            )

    def due_at(self) -> float:
        """When the pending change should be applied (``inf``: nothing pending)."""
        pending = self.pending
        if pending is None:
            return INF
        if pending.leading:
            settled = pending.first_at
        else:
            settled = min(pending.last_at + self.debounce, pending.first_at + self.max_coalesce)
        return max(settled, pending.not_before)

    def take(self) -> Optional[Pending[T]]:
        """The pending change, to apply now (nothing is pending afterwards)."""
        pending, self.pending = self.pending, None
        return pending

    def wait_for_burst(self, pending: Pending[T]) -> None:
        """A leading change that needs a reload: due at the end of its burst instead."""
        if self.pending is None:
            pending.leading = False
            self.pending = pending

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
        instance counts...): it does not end the quiet period, so the next change that matters
        is still leading."""
        if self.last_change_at == pending.last_at:  # nothing newer arrived meanwhile
            self.last_change_at = pending.change_before
