"""Shared fixtures: the Marathon examples in tests/fixtures, and the programs and privileges tests
need (haproxy, root for network namespaces, buildah; ZooKeeper's are in testkit.zookeeper). A test
using one of these, even through another fixture, gets its marker here (testkit.markers)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from testkit.examples import EXAMPLES
from testkit.machine import find_haproxy
from testkit.markers import needed_markers

# Hypothesis times each example (200 ms deadline, too-slow health check): on a shared 2-core
# machine that is a timed assertion, and it failed tests under load. The suite's default drops
# both; tests that want other settings still say so with @settings.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in sorted(needed_markers(getattr(item, "fixturenames", ()))):
            if item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """Marathon's own example responses and schemas (tests/fixtures/marathon-api/examples)."""
    if not EXAMPLES.is_dir():
        pytest.fail(f"Marathon examples missing at {EXAMPLES}")
    return EXAMPLES


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    """The real haproxy binary; the suite needs it (scripts/setup.sh installs it)."""
    try:
        return find_haproxy()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def netns_root() -> None:
    """Root and iproute2, to create network namespaces; CI runs as root."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("this test needs root and iproute2 (`ip netns`); CI runs as root")


@pytest.fixture(scope="session")
def buildah_bin() -> str:
    """Debian's buildah, to build the container image."""
    found = shutil.which("buildah")
    if found is None:
        pytest.fail("buildah is not installed (apt-get install buildah)")
    return found
