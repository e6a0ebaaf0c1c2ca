"""Waiting on a condition with a deadline: the one way tests and benches wait (never a sleep)."""

from __future__ import annotations

import inspect
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

FIRST_PAUSE = 0.005  # seconds before the second try; doubled up to ``interval``


class WaitTimeout(AssertionError):
    """The condition did not hold in time. An ``AssertionError``, so pytest reports a failed
    test (not an error) and a benchmark stops with the message."""


def wait_until(
    predicate: Callable[[], Optional[T]],
    timeout: float = 30.0,
    message: str = "",
    *,
    interval: float = 0.05,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    An exception from ``predicate`` counts as "not yet" (things settle: a port not open yet, a
    file not written yet). After ``timeout`` seconds, raise :class:`WaitTimeout` naming what was
    awaited (``message``, else the predicate's source line) and the last value or exception.
    """
    deadline = time.monotonic() + timeout
    pause = min(FIRST_PAUSE, interval)
    last_value: object = None
    last_error: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
        except Exception as exc:
            last_error = exc
        else:
            if value:
                return value
            last_value, last_error = value, None
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                _failure(timeout, message or describe(predicate), last_value, last_error)
            )
        time.sleep(pause)
        pause = min(pause * 2, interval)


def _failure(timeout: float, what: str, value: object, error: Optional[BaseException]) -> str:
    last = f"last error {error!r}" if error is not None else f"last value {_short(value)}"
    return f"waited {timeout:g} s for {what}; {last}"


def describe(predicate: Callable[..., object]) -> str:
    """A readable name for a predicate: its source line for a lambda, else its qualified name."""
    name = getattr(predicate, "__qualname__", "")
    if name and "<lambda>" not in name:
        return name
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)
    return _short(" ".join(source.split()), 200)


def _short(value: object, limit: int = 300) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
