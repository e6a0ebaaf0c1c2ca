"""A periodic step in its own thread: it runs again after the wait it returns, survives a step
that raises, and stops."""

from __future__ import annotations

import threading

from sidecar.periodic import Periodic
from testkit import wait_until


def test_the_step_runs_again_after_a_failure_and_stops_when_asked() -> None:
    runs: list[int] = []
    lock = threading.Lock()

    def step() -> float:
        with lock:
            runs.append(1)
            if len(runs) == 2:
                raise RuntimeError("a bug in one run")
        return 0.001

    periodic = Periodic("test-periodic", step, interval=0.001)
    periodic.start()
    wait_until(lambda: len(runs) >= 4, message="runs after the failed one")
    periodic.stop()
    with lock:
        stopped_at = len(runs)
    assert not any(t.name == "test-periodic" for t in threading.enumerate())
    assert len(runs) == stopped_at
