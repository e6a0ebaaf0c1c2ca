"""Fixtures for the deploy/ and operator-docs tests (importlib mode cannot import conftest)."""

from __future__ import annotations

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


@pytest.fixture
def wait_until() -> WaitUntil:
    return _wait_until
