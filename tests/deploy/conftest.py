"""Fixtures for the deploy/ and operator-docs tests (importlib mode cannot import conftest)."""

from __future__ import annotations

import socket
import time
from typing import Callable

import pytest

WaitUntil = Callable[..., None]


def _wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def wait_until() -> WaitUntil:
    return _wait_until


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A free TCP port on 127.0.0.1, outside the emulator's host ports (31000-32000)."""

    def pick() -> int:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if not 31000 <= port <= 32000:
                return port

    return pick
