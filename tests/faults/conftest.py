"""Fixtures of the fault matrix (the pieces are in ``faults_support.py``): the Marathon side
(emulator running echo tasks, a standby, a relay to the leader) and a load generator; both are
always stopped in teardown."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from faults_support import Cluster, LoadGenerator, Relay  # noqa: E402

from marathon_bridge.client import MarathonClient  # noqa: E402
from marathon_bridge.testing import MarathonEmulator  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0, kill_grace=0.5).start()
    relay: Optional[Relay] = None
    client: Optional[MarathonClient] = None
    try:
        standby = emulator.standby()
        relay = Relay(emulator.url).start()
        client = MarathonClient(emulator.url, timeout=(3.0, 10.0))
        yield Cluster(emulator, standby, relay, client)
    finally:
        if client is not None:
            client.close()
        if relay is not None:
            relay.stop()
        emulator.stop()  # stops the standby and every task process too


@pytest.fixture
def load() -> Iterator[LoadGenerator]:
    """Two keep-alive sessions and one new-connection client; stopped in teardown."""
    generator = LoadGenerator(keepalive=2, fresh=1, pause=0.005)
    try:
        yield generator
    finally:
        generator.stop()
