"""Fixtures for the emulator tests (helpers live in emulator_helpers.py, importable from here)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from emulator_helpers import SSEReader

from marathon_bridge.testing import MarathonEmulator


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
