"""The sidecar as a child process (``python -m sidecar``), whether a process is alive, and the
TCP connections it holds.

A :class:`SidecarProcess` may be started, killed and started again on the same state directory
(each run is kept); :meth:`SidecarProcess.stop` stops every run and any HAProxy master a killed
run left behind. Its output goes to ``<state dir>/sidecar.log``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from testkit.http import health_of, status_of
from testkit.relay import Relay
from testkit.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def pid_alive(pid: Optional[int]) -> bool:
    """True while ``pid`` runs (a zombie counts as dead)."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ", 1)[1][:1] != "Z"


ESTABLISHED = "01"  # a TCP state in /proc/net/tcp


def tcp_connections_to(pid: int, port: int) -> int:
    """Established TCP connections that process ``pid`` holds to ``port`` on any address (read
    from /proc: what it holds, not what it says)."""
    inodes = _socket_inodes(pid)
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if inode in inodes and state == ESTABLISHED and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def terminate(proc: subprocess.Popen[Any], grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; waits for the process either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass
class SidecarProcess:
    """``python -m sidecar <args>`` on ``state_dir``, its status server on 127.0.0.1:
    ``status_port``, HAProxy from ``haproxy_bin``; ``env`` replaces the environment."""

    args: Sequence[str]
    state_dir: str
    status_port: int
    haproxy_bin: str
    env: Optional[dict[str, str]] = None
    relay: Optional[Relay] = None  # the relay its --marathon URL points at, if a test cuts it
    wrapper: Sequence[str] = ()  # a command it runs under, e.g. ("prlimit", "--nofile=1024:1024")
    proc: Optional[subprocess.Popen[bytes]] = None
    runs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def log_path(self) -> Path:
        return Path(self.state_dir) / "sidecar.log"

    def argv(self) -> list[str]:
        return [
            *self.wrapper, sys.executable, "-m", "sidecar", *self.args,
            "--state-dir", self.state_dir,
            "--haproxy-bin", self.haproxy_bin,
            "--status-listen", f"127.0.0.1:{self.status_port}",
        ]  # fmt: skip

    def start(self) -> SidecarProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env
            )
        self.runs.append(self.proc)
        return self

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self) -> None:
        """Stop every run, then any HAProxy master still running from a killed run."""
        master = self.master_pid()
        for run in self.runs:
            terminate(run)
        if master is not None and pid_alive(master):
            os.kill(master, signal.SIGTERM)
            wait_until(lambda: not pid_alive(master), 30, "the leftover HAProxy master stopped")

    # -- seen from outside

    def status(self, path: str) -> tuple[int, str]:
        """GET ``path`` from the status server; (0, the error) when it does not answer."""
        return status_of(self.status_port, path)

    def health(self) -> dict[str, Any]:
        """The /health report with ``http_status`` (0 when it does not answer)."""
        return health_of(self.status_port)

    def master_pid(self) -> Optional[int]:
        """The HAProxy master's pid from its pid file (``None`` before the first start)."""
        try:
            return int((Path(self.state_dir) / "run" / "haproxy.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, size: int = 4000) -> str:
        return self.log_text()[-size:]


# a fixture's "a sidecar process following this emulator, serving this group" context manager
StartProcess = Callable[[Any, str], AbstractContextManager[SidecarProcess]]
