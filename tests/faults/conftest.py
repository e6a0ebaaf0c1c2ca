"""Fixtures of the fault matrix: the Marathon side (emulator running echo tasks, a standby,
relays to the leader), sidecar nodes (a daemon in a thread, or ``python -m sidecar``) with the
timings the faults need, and a load generator; everything is stopped in teardown."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

import pytest

from marathon_bridge.testing import MarathonEmulator
from testkit.load import LoadGenerator
from testkit.marathon import MarathonCluster, marathon_cluster
from testkit.node import SidecarNode, StartNode, short_state_dir, sidecar_settings, start_sidecar
from testkit.ports import free_port
from testkit.process import SidecarProcess, StartProcess
from testkit.relay import Relay

# the daemon polls after 3 s without a byte on its event stream, and reconnects after 4 s
STREAM_READ_TIMEOUT = 4.0
FAULT_TIMINGS: dict[str, Any] = {
    "min_reload_interval": 0.5,
    "empty_confirm": 30.0,
    "drain_timeout": 3.0,
    "marathon_timeout": 1.5,
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[MarathonCluster]:
    """The leader, a relay to it (the sidecar's ``--marathon`` #1), and a standby that reaches
    the leader through a second relay (so both paths can be silenced or cut)."""
    with marathon_cluster() as started:
        yield started


@pytest.fixture
def load() -> Iterator[LoadGenerator]:
    """Two keep-alive sessions and one new-connection client; stopped in teardown."""
    generator = LoadGenerator(keepalive=2, fresh=1, pause=0.005)
    try:
        yield generator
    finally:
        generator.stop()


@pytest.fixture(scope="module")
def start_node(haproxy_bin: str) -> Iterator[StartNode]:
    """``start_node(urls, group, state_dir=None, **settings)``: a sidecar daemon in a thread
    serving ``group``, once HAProxy answers; every node still running is stopped at the end."""
    started: list[SidecarNode] = []

    def start(
        urls: tuple[str, ...], group: str, *, state_dir: Optional[str] = None, **extra: Any
    ) -> SidecarNode:
        values = {**FAULT_TIMINGS, "group": group, "status_port": free_port(), **extra}
        directory = state_dir or short_state_dir("flt-")
        node = start_sidecar(
            sidecar_settings(urls, directory, haproxy_bin, **values),
            startup_wait=10.0,
            stream_read_timeout=STREAM_READ_TIMEOUT,
            own_state_dir=state_dir is None,
        )
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture(scope="module")
def sidecar_process(haproxy_bin: str) -> StartProcess:
    """``with sidecar_process(emulator, group) as process``: ``python -m sidecar`` (not started
    yet) following ``emulator`` through its own relay; every run and any HAProxy master a
    killed run left are stopped at the end."""

    @contextmanager
    def run(emulator: MarathonEmulator, group: str) -> Iterator[SidecarProcess]:
        relay = Relay(emulator.url).start()
        state_dir = short_state_dir("flts-")
        args = [
            "--marathon", relay.url, "--group", group, "--marathon-timeout", "1.5",
            "--poll-interval", "1", "--min-reload-interval", "0.5", "--drain-timeout", "3",
            "--log-format", "json",
        ]  # fmt: skip
        process = SidecarProcess(args, state_dir, free_port(), haproxy_bin, relay=relay)
        try:
            yield process
        finally:
            process.stop()
            relay.stop()
            shutil.rmtree(state_dir, ignore_errors=True)

    return run
