"""Which markers a test needs, from the fixtures it uses.

A test that uses one of :data:`FIXTURE_MARKERS`' fixtures, directly or through another fixture,
needs what the marker names; ``tests/conftest.py`` adds the marker at collection, so a new test
cannot forget it. A fixture that starts something outside Python (a server, a browser, a
namespace) belongs in this table. ``scripts/test.sh --fast`` leaves out :data:`OUTSIDE_PYTHON`.
"""

from __future__ import annotations

from collections.abc import Iterable

FIXTURE_MARKERS = {
    "haproxy_bin": "haproxy",
    "chromium": "browser",
    "netns_root": "netns",
    "zk_server": "zookeeper",
    "zk_server_factory": "zookeeper",
    "zk_ensemble": "zookeeper",
    "buildah_bin": "image",
}

# the markers of tests that need a program or privilege beyond Python and this repository
OUTSIDE_PYTHON = ("haproxy", "browser", "netns", "zookeeper", "image")


def needed_markers(fixturenames: Iterable[str]) -> set[str]:
    """The markers that the fixtures a test uses (their whole closure) call for."""
    return {FIXTURE_MARKERS[name] for name in fixturenames if name in FIXTURE_MARKERS}


def fast_selection() -> str:
    """The ``-m`` expression of the fast run: no test that needs anything outside Python."""
    return "not (" + " or ".join(OUTSIDE_PYTHON) + ")"
