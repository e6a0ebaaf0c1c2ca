"""wait_until: returns the predicate's value, waits through exceptions, fails saying what it
waited for and what it saw last."""

from __future__ import annotations

import itertools

import pytest

from testkit.waiting import WaitTimeout, wait_until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, [], ["ready"]])
    assert wait_until(lambda: next(answers), timeout=5) == ["ready"]


def test_an_exception_counts_as_not_yet() -> None:
    calls = itertools.count()

    def flaky() -> str:
        if next(calls) < 3:
            raise ConnectionRefusedError("not listening yet")
        return "up"

    assert wait_until(flaky, timeout=5) == "up"


def test_failure_names_the_message_and_the_last_value() -> None:
    with pytest.raises(WaitTimeout, match=r"waited 0\.05 s for the queue to drain; last value 0"):
        wait_until(lambda: 0, timeout=0.05, message="the queue to drain")


def test_failure_names_the_last_exception() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("port 9 closed")

    with pytest.raises(WaitTimeout, match=r"last error ConnectionRefusedError\('port 9 closed'\)"):
        wait_until(refused, timeout=0.05, message="the server")


def test_without_a_message_the_lambda_source_is_named() -> None:
    with pytest.raises(WaitTimeout, match=r"lambda: 1 > 2"):
        wait_until(lambda: 1 > 2, timeout=0.05)


def test_a_timeout_is_a_test_failure_not_an_error() -> None:
    assert issubclass(WaitTimeout, AssertionError)
