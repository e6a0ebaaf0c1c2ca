"""Fixtures of the browser test: Chromium (a hard requirement: CI installs it), and a running
sidecar -- the Marathon emulator with real echo tasks, the Daemon, a real HAProxy -- torn down
after the module. Helpers are in ``browser_support.py``."""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from browser_support import Chromium, Sidecar, find_chromium, wait_until  # noqa: E402

from marathon_bridge.client import MarathonClient  # noqa: E402
from marathon_bridge.testing import MarathonEmulator  # noqa: E402
from sidecar.main import build_daemon  # noqa: E402
from sidecar.settings import Settings  # noqa: E402


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    """Debian's chromium; missing is a failure, not a skip (scripts/setup.sh installs it)."""
    binary = find_chromium()
    if binary is None:
        pytest.fail(
            "chromium is not installed (apt-get install chromium; scripts/setup.sh does it)"
        )
    return Chromium(binary, tmp_path_factory.mktemp("chromium"), timeout=60.0)


@pytest.fixture(scope="module")
def sidecar(haproxy_bin: str) -> Iterator[Sidecar]:
    state_dir = tempfile.mkdtemp(prefix="sc-br-", dir="/tmp")  # short: UNIX socket paths
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0).start()
    marathon = MarathonClient(emulator.url, timeout=(3.0, 10.0))
    settings = Settings(
        marathon_urls=(emulator.url,),
        state_dir=state_dir,
        haproxy_bin=haproxy_bin,
        status_host="127.0.0.1",
        status_port=0,
        debounce=0.05,
        min_reload_interval=0.2,
        resync_interval=60.0,
        poll_interval=1.0,
        empty_confirm=60.0,
        drain_timeout=2.0,
        marathon_timeout=3.0,
    )
    daemon = build_daemon(settings, startup_wait=15.0, stream_silence=3.0)
    thread = threading.Thread(target=daemon.run, name="sidecar-browser-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: daemon.status_server is not None, timeout=30, message="status server")
        yield Sidecar(emulator, marathon, daemon)
    finally:
        daemon.stop()
        thread.join(30)
        marathon.close()
        emulator.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        assert not thread.is_alive(), "the sidecar daemon did not stop"
