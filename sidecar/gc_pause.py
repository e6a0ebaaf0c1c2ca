"""Pausing Python's cyclic garbage collector around big, acyclic allocations, and timing its runs
(imperative shell).

Building a catalog or a model for a large cluster allocates hundreds of thousands of acyclic
objects; the collections they trigger would traverse everything alive each time (the time of a
10k-app build grew faster than the app count because of this). The daemon and the sources wrap
those steps in :func:`collector_paused`; the pure code itself never touches the collector.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic GC for the block; restore the previous setting afterwards.

    What the block allocated and kept is long-lived: it goes to the oldest generation directly
    (freeze + unfreeze moves objects there without traversing them), so re-enabling the
    collector does not start with a young collection over all of it. Skipped when the process
    froze objects itself (unfreeze would release those too).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


class CollectionTimer:
    """Times every run of the cyclic collector (``gc.callbacks``) into ``observe``.

    A full collection walks every tracked object; with a 10k-service catalog that is millions,
    and the thread that triggered it (the loop, mid-apply, or the event reader) stops meanwhile.
    One per process: :meth:`install` at start, :meth:`remove` when done."""

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self._observe = observe  # (generation, seconds)
        self._started = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def remove(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._observe(info["generation"], time.perf_counter() - self._started)
