"""Fixtures for the emulator tests: emulators, and SSE readers closed at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import pytest

from marathon_bridge.testing import MarathonEmulator
from testkit.sse import SSEReader


@pytest.fixture
def emulator() -> Iterator[MarathonEmulator]:
    with MarathonEmulator() as emu:
        yield emu


@pytest.fixture
def sse() -> Iterator[Callable[..., SSEReader]]:
    """Open SSE readers; all closed at teardown."""
    readers: list[SSEReader] = []

    def open_reader(url: str, query: str = "", **kwargs: Any) -> SSEReader:
        reader = SSEReader(url, query, **kwargs)
        readers.append(reader)
        return reader

    yield open_reader
    for reader in readers:
        reader.close()


@pytest.fixture
def emulator_slow() -> Iterator[MarathonEmulator]:
    """Deployments stay open for a minute (locks, cancels)."""
    with MarathonEmulator(deployment_delay=60.0) as emu:
        yield emu
