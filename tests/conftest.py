"""Shared test fixtures: the Marathon examples (tests/fixtures), a free port, the haproxy binary."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "fixtures" / "marathon-api" / "examples"


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """Marathon's own example responses and schemas (tests/fixtures/marathon-api/examples)."""
    if not EXAMPLES.is_dir():
        pytest.fail(f"Marathon examples missing at {EXAMPLES}")
    return EXAMPLES


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    """The real haproxy binary; the suite needs it (scripts/setup.sh installs it)."""
    path = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if not path:
        pytest.fail("haproxy is not installed: run scripts/setup.sh")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
