"""Fixtures of the fault matrix (the pieces are in ``faults_support.py``): the Marathon side
(emulator running echo tasks, a standby, a relay to the leader) and a load generator; both are
always stopped in teardown."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from faults_support import Cluster, LoadGenerator, Relay  # noqa: E402

from marathon_bridge.client import MarathonClient  # noqa: E402
from marathon_bridge.testing import MarathonEmulator  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The leader, a relay to it (the sidecar's ``--marathon`` #1), and a standby that reaches
    the leader through a second relay (so both paths can be silenced or cut)."""
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0, kill_grace=0.5).start()
    started: list[Any] = []
    client: Optional[MarathonClient] = None
    try:
        relay = Relay(emulator.url).start()
        started.append(relay)
        standby_relay = Relay(emulator.url).start()
        started.append(standby_relay)
        standby = MarathonEmulator(leader=False, leader_url=lambda: standby_relay.url).start()
        started.append(standby)
        client = MarathonClient(emulator.url, timeout=(3.0, 10.0))
        yield Cluster(emulator, standby, relay, standby_relay, client)
    finally:
        if client is not None:
            client.close()
        for thing in reversed(started):
            thing.stop()
        emulator.stop()  # and every task process


@pytest.fixture
def load() -> Iterator[LoadGenerator]:
    """Two keep-alive sessions and one new-connection client; stopped in teardown."""
    generator = LoadGenerator(keepalive=2, fresh=1, pause=0.005)
    try:
        yield generator
    finally:
        generator.stop()
