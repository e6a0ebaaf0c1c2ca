"""Helpers for the sidecar tests: polling with a deadline, free loopback ports, HTTP GETs."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from typing import Callable, Optional

import pytest


def _wait_until(
    predicate: Callable[[], object],
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "",
) -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
            last_error = None
        except Exception as exc:  # a predicate may fail while things settle
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    pytest.fail(f"condition not met within {timeout} s: {message or predicate}{detail}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, str, dict[str, str]]:
    """GET ``url``: (status, body text, headers); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8"), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8"), dict(exc.headers)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """``wait_until(predicate, timeout=20, message="")``: poll with a deadline."""
    return _wait_until


@pytest.fixture
def free_port() -> Callable[[], int]:
    return _free_port


@pytest.fixture
def http_get() -> Callable[..., tuple[int, str, dict[str, str]]]:
    return _http_get
