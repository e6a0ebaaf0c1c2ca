"""Markers follow the fixtures a test uses, so a test needing HAProxy cannot forget its marker."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from testkit.markers import FIXTURE_MARKERS, OUTSIDE_PYTHON, fast_selection, needed_markers

ROOT = Path(__file__).resolve().parents[2]


def test_the_fixture_closure_decides_the_markers() -> None:
    assert needed_markers(["tmp_path", "node", "haproxy_bin"]) == {"haproxy"}
    assert needed_markers(["chromium", "sidecar", "haproxy_bin"]) == {"browser", "haproxy"}
    assert needed_markers(["tmp_path", "emulator"]) == set()


def test_every_marker_is_declared_and_left_out_of_the_fast_run() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    declared = {
        line.split(":")[0].strip()
        for line in config["tool:pytest"]["markers"].splitlines()
        if line.strip()
    }
    assert set(FIXTURE_MARKERS.values()) <= declared
    assert set(OUTSIDE_PYTHON) == set(FIXTURE_MARKERS.values())
    assert fast_selection() == "not (haproxy or browser or netns or zookeeper or image)"


def test_this_test_got_no_marker(request: pytest.FixtureRequest) -> None:
    assert not any(request.node.get_closest_marker(m) for m in OUTSIDE_PYTHON)


@pytest.fixture
def needs_haproxy(haproxy_bin: str) -> str:
    return haproxy_bin


def test_a_fixture_depending_on_haproxy_bin_marks_the_test(
    request: pytest.FixtureRequest, needs_haproxy: str
) -> None:
    assert request.node.get_closest_marker("haproxy") is not None
