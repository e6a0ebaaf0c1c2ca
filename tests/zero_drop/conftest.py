"""Fixtures for the whole-system zero-drop tests: one node (emulator + sidecar + HAProxy).

The node and the load generator come from the test kit (shared with the benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.system import System, SystemOptions


@pytest.fixture(scope="module")
def node(haproxy_bin: str) -> Iterator[System]:
    """The emulator running echo tasks, the sidecar daemon in a thread, its real HAProxy.

    Tasks get 0.5 s between TASK_KILLING and SIGTERM; the echo server then keeps serving 0.5 s
    before it stops accepting, like a well-behaved task.
    """
    system = System(SystemOptions(in_process=True, kill_grace=0.5), haproxy_bin=haproxy_bin)
    system.start()
    try:
        yield system
    finally:
        system.stop()
