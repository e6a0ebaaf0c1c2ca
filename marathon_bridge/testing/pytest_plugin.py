"""Pytest plugin (entry point ``pytest11``): the ``marathon_emulator`` fixtures.

- ``marathon_emulator``: a started :class:`MarathonEmulator` with default settings;
- ``marathon_emulator_factory``: ``factory(**kwargs)`` starts more (each stopped at teardown).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest

from marathon_bridge.testing.emulator import MarathonEmulator


@pytest.fixture
def marathon_emulator_factory() -> Iterator[Callable[..., MarathonEmulator]]:
    """Start emulators with custom settings; all are stopped at teardown."""
    started: list[MarathonEmulator] = []

    def factory(**kwargs: Any) -> MarathonEmulator:
        emulator = MarathonEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield factory
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def marathon_emulator() -> Iterator[MarathonEmulator]:
    """A running emulator (simulated tasks) on a free loopback port."""
    with MarathonEmulator() as emulator:
        yield emulator
