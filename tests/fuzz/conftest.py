"""Hypothesis profiles of the fuzzers and a ``haproxy -c`` runner.

Profiles (registered here, applied per test through ``testkit.fuzz.profile()`` so other test
directories keep their own settings): ``ci`` (default: bounded time) and ``long`` (by hand:
``HYPOTHESIS_PROFILE=long pytest tests/fuzz``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Callable

import pytest

from testkit.fuzz import register_profiles

register_profiles()


@pytest.fixture
def haproxy_check(
    haproxy_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], subprocess.CompletedProcess[str]]]:
    """``check(text)``: ``haproxy -c`` on the text (written to a fresh file); counts the runs."""
    directory = tmp_path_factory.mktemp("haproxy-c")
    runs = 0

    def check(text: str) -> subprocess.CompletedProcess[str]:
        nonlocal runs
        runs += 1
        path = directory / f"candidate-{runs}.cfg"
        path.write_text(text, encoding="utf-8")
        try:
            return subprocess.run(
                [haproxy_bin, "-c", "-q", "-f", str(path)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            path.unlink()

    yield check
