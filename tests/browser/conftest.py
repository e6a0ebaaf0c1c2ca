"""Fixtures of the browser test: Chromium (a hard requirement: CI installs it), and a running
sidecar -- the Marathon emulator with real echo tasks, the daemon, a real HAProxy -- torn down
after the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testkit.chromium import Chromium, find_chromium
from testkit.marathon import EmulatedMarathon, emulated_marathon
from testkit.node import SidecarNode, short_state_dir, sidecar_settings, start_sidecar


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    """Debian's chromium; missing is a failure, not a skip (scripts/setup.sh installs it)."""
    binary = find_chromium()
    if binary is None:
        pytest.fail(
            "chromium is not installed (apt-get install chromium; scripts/setup.sh does it)"
        )
    return Chromium(binary, tmp_path_factory.mktemp("chromium"), timeout=60.0)


@pytest.fixture(scope="module")
def marathon() -> Iterator[EmulatedMarathon]:
    with emulated_marathon() as started:
        yield started


@pytest.fixture(scope="module")
def sidecar(marathon: EmulatedMarathon, haproxy_bin: str) -> Iterator[SidecarNode]:
    settings = sidecar_settings((marathon.emulator.url,), short_state_dir("sc-br-"), haproxy_bin)
    with start_sidecar(settings, wait_for_haproxy=False) as node:
        assert node.daemon.traffic is not None
        node.daemon.traffic.interval = 1.0  # HAProxy's counters read every second: quicker tests
        yield node
