"""The systemd layout, run for real: the sidecar drives an HAProxy it did not start.

HAProxy is started the way Debian's unit runs it with our drop-in (its ``ExecStart`` with the
drop-in's ``CONFIG``/``PIDFILE``/``EXTRAOPTS``, paths moved to a temporary directory), from the
bootstrap config the drop-in seeds. The sidecar runs with ``deploy/systemd/sidecar.yaml`` (flags
override the Marathon URL and the paths). Checked: the sidecar takes over HAProxy through the
master socket and routes an app; HAProxy keeps serving while the sidecar is stopped; a new
sidecar takes over again without HAProxy being restarted.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from marathon_bridge.client import MarathonClient
from marathon_bridge.testing.emulator import MarathonEmulator
from sidecar.haproxy.runtime import MasterCLI
from testkit import free_port, wait_until
from testkit.apps import echo_app
from testkit.http import ask, http_status
from testkit.process import terminate

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
DROP_IN = SYSTEMD / "haproxy.service.d" / "marathon-sidecar.conf"
DEBIAN_EXEC_START = "/usr/sbin/haproxy -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS"


def debian_exec_start() -> str:
    """Debian's ExecStart line (the installed unit when there is one)."""
    unit = Path("/lib/systemd/system/haproxy.service")
    if unit.is_file():
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                return line.split("=", 1)[1]
    return DEBIAN_EXEC_START


def drop_in_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for line in DROP_IN.read_text(encoding="utf-8").splitlines():
        if line.startswith("Environment="):
            for item in shlex.split(line.split("=", 1)[1]):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def haproxy_argv(haproxy_bin: str, base: Path) -> list[str]:
    """Debian's ExecStart with the drop-in's variables, every path moved under ``base``."""
    env = drop_in_environment()
    socket_path = env["EXTRAOPTS"].split()[1].split(",")[0]
    moved = {
        "CONFIG": str(base / "state" / "haproxy.cfg"),
        "PIDFILE": str(base / "run" / "haproxy.pid"),
        "EXTRAOPTS": env["EXTRAOPTS"].replace(socket_path, str(base / "run" / "master.sock")),
    }
    words = []
    for word in shlex.split(debian_exec_start()):
        if word.startswith("$"):
            words.extend(moved[word[1:]].split())
        else:
            words.append(word)
    words[0] = haproxy_bin
    return words


def master_pid_and_reloads(socket_path: Path) -> tuple[int, int]:
    """The master's pid and reload count, once its CLI answers (a reload re-executes the master,
    which closes its socket for a moment: a sidecar may reload HAProxy at any time)."""
    status = MasterCLI(str(socket_path)).show_proc_retrying(timeout=30)
    assert status.master is not None
    return status.master.pid, status.reloads


class Node:
    """A temporary node: its HAProxy (as Debian's unit would run it) and its sidecar."""

    def __init__(self, base: Path, haproxy_bin: str, marathon_url: str) -> None:
        self.base = base
        self.haproxy_bin = haproxy_bin
        self.marathon_url = marathon_url
        self.status_port = free_port()
        self.master_socket = base / "run" / "master.sock"
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.sidecar: subprocess.Popen[bytes] | None = None

    def start_haproxy(self) -> None:
        (self.base / "state" / "run").mkdir(parents=True, mode=0o750)  # the drop-in's install -d
        (self.base / "run").mkdir(mode=0o750)  # RuntimeDirectory=haproxy
        shutil.copy(SYSTEMD / "haproxy-bootstrap.cfg", self.base / "state" / "haproxy.cfg")
        config = self.base / "state" / "haproxy.cfg"
        unique = f"abns@marathon-sidecar-bootstrap-test-{os.getpid()}"
        config.write_text(config.read_text().replace("abns@marathon-sidecar-bootstrap", unique))
        self.haproxy = subprocess.Popen(
            haproxy_argv(self.haproxy_bin, self.base),
            stdout=subprocess.DEVNULL,
            stderr=(self.base / "haproxy.log").open("wb"),
        )

    def start_sidecar(self) -> None:
        argv = [
            sys.executable, "-m", "sidecar", "--config", str(SYSTEMD / "sidecar.yaml"),
            "--marathon", self.marathon_url,
            "--state-dir", str(self.base / "state"),
            "--haproxy-config", str(self.base / "state" / "haproxy.cfg"),
            "--master-socket", str(self.master_socket),
            "--haproxy-bin", self.haproxy_bin,
            "--status-listen", f"127.0.0.1:{self.status_port}",
            "--min-reload-interval", "0.2",
        ]  # fmt: skip
        log = (self.base / "sidecar.log").open("ab")
        self.sidecar = subprocess.Popen(argv, stdout=log, stderr=log)

    def stop_sidecar(self) -> int:
        assert self.sidecar is not None
        self.sidecar.send_signal(signal.SIGTERM)
        try:
            return self.sidecar.wait(timeout=60)
        finally:
            if self.sidecar.poll() is None:
                self.sidecar.kill()
                self.sidecar.wait(timeout=30)

    def stop(self) -> None:
        for proc in (self.sidecar, self.haproxy):
            if proc is not None:
                terminate(proc, grace=60)

    def log(self) -> str:
        return (self.base / "sidecar.log").read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture
def node(haproxy_bin: str) -> Iterator[tuple[Node, MarathonEmulator]]:
    base = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))  # short: UNIX socket paths
    emulator = MarathonEmulator(run_tasks=True, heartbeat_interval=1.0).start()
    node = Node(base, haproxy_bin, emulator.url)
    try:
        yield node, emulator
    finally:
        node.stop()
        emulator.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_sidecar_drives_debians_haproxy_and_survives_its_own_restart(
    node: tuple[Node, MarathonEmulator],
) -> None:
    sidecar_node, emulator = node
    port = free_port()
    with MarathonClient(emulator.url) as client:
        client.create_app(echo_app("/layout/echo", port, 2, mode=None, health=False))
    wait_until(
        lambda: len(emulator.tasks("/layout/echo", states=["TASK_RUNNING"])) == 2, timeout=60
    )
    task_ids = {t["id"] for t in emulator.tasks("/layout/echo", states=["TASK_RUNNING"])}

    sidecar_node.start_haproxy()

    master_before, reloads_before = master_pid_and_reloads(sidecar_node.master_socket)

    sidecar_node.start_sidecar()
    wait_until(
        lambda: http_status(f"http://127.0.0.1:{sidecar_node.status_port}/health", 3) == 200,
        timeout=60,
    )
    wait_until(lambda: {ask(port) for _ in range(6)} == task_ids, timeout=60)
    master, reloads = master_pid_and_reloads(sidecar_node.master_socket)
    assert master == master_before and reloads > reloads_before, sidecar_node.log()

    # The sidecar goes away: HAProxy, not its child, keeps routing.
    assert sidecar_node.stop_sidecar() == 0
    assert {ask(port) for _ in range(6)} == task_ids
    assert http_status(f"http://127.0.0.1:{sidecar_node.status_port}/health", 3) == 0

    # A new sidecar takes over the same HAProxy.
    sidecar_node.start_sidecar()
    wait_until(
        lambda: http_status(f"http://127.0.0.1:{sidecar_node.status_port}/health", 3) == 200,
        timeout=60,
    )
    assert {ask(port) for _ in range(6)} == task_ids
    assert master_pid_and_reloads(sidecar_node.master_socket)[0] == master_before
