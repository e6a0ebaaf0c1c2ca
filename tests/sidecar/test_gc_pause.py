"""Timing the cyclic collector: every run is observed with its generation while installed, and
nothing after removal."""

from __future__ import annotations

import gc

from sidecar.gc_pause import CollectionTimer


def test_collections_are_timed_by_generation_while_installed() -> None:
    seen: list[tuple[int, float]] = []
    timer = CollectionTimer(lambda generation, seconds: seen.append((generation, seconds)))
    timer.install()
    try:
        gc.collect(2)
    finally:
        timer.remove()
    assert seen and seen[-1][0] == 2 and seen[-1][1] >= 0
    count = len(seen)
    gc.collect(2)
    assert len(seen) == count
    timer.remove()  # a second removal is harmless
