"""Real local processes for emulated tasks (``run_tasks=True``).

Each task's ``cmd`` runs as ``/bin/sh -c cmd`` in its own process group and temporary directory,
with Mesos' environment (``PORT0..N``, ``PORT``, ``PORTS``, ``HOST``, ``MESOS_TASK_ID``,
``MARATHON_APP_ID``, ``MARATHON_APP_VERSION``). The runner remembers every process it started and
kills them all on :meth:`ProcessRunner.stop_all` (also registered with ``atexit``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Optional

LOG = logging.getLogger(__name__)


def echo_server_cmd(*args: str) -> str:
    """A shell command that runs the bundled echo server with this Python."""
    parts = [sys.executable, "-m", "marathon_bridge.testing.echo_server", *args]
    return " ".join(shlex.quote(p) for p in parts)


def echo_health_check() -> dict[str, object]:
    """A Marathon HTTP health check on the echo server's ``/health``, every second from the
    start: a task counts as healthy about a second after it runs. A fresh dict each call."""
    return {
        "protocol": "HTTP",
        "path": "/health",
        "portIndex": 0,
        "gracePeriodSeconds": 10,
        "intervalSeconds": 1,
        "timeoutSeconds": 1,
        "maxConsecutiveFailures": 0,
    }


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (we can bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def task_environment(
    task_id: str, app_id: str, version: str, host: str, ports: Sequence[int]
) -> dict[str, str]:
    """The variables Mesos and Marathon give a task."""
    env = {
        "HOST": host,
        "MESOS_TASK_ID": task_id,
        "MARATHON_APP_ID": app_id,
        "MARATHON_APP_VERSION": version,
        "PORTS": ",".join(str(p) for p in ports),
    }
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
    return env


class TaskProcess:
    """One running task process (its own process group)."""

    def __init__(self, task_id: str, popen: subprocess.Popen[bytes], workdir: str) -> None:
        self.task_id = task_id
        self.popen = popen
        self.workdir = workdir
        self.term_sent_at: Optional[float] = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> Optional[int]:
        """Exit code, or None while running."""
        return self.popen.poll()

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (ignore a group that is gone)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def terminate(self) -> None:
        """SIGTERM the group (once), remembering when."""
        if self.term_sent_at is None:
            self.term_sent_at = time.monotonic()
            self.signal_group(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the group."""
        self.signal_group(signal.SIGKILL)


class ProcessRunner:
    """Starts task processes and guarantees none outlives the emulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[str, TaskProcess] = {}
        self._root = tempfile.mkdtemp(prefix="marathon-emulator-")
        self._stopped = False
        atexit.register(self.stop_all)

    def start(self, task_id: str, cmd: str, env: Mapping[str, str]) -> TaskProcess:
        """Run ``/bin/sh -c cmd`` for a task."""
        workdir = self.sandbox(task_id)
        os.makedirs(workdir, exist_ok=True)
        full_env = dict(os.environ)
        full_env.update(env)
        full_env["MESOS_SANDBOX"] = workdir
        with (
            open(os.path.join(workdir, "stdout"), "wb") as out,
            open(os.path.join(workdir, "stderr"), "wb") as err,
        ):
            popen = subprocess.Popen(
                ["/bin/sh", "-c", cmd],
                cwd=workdir,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        proc = TaskProcess(task_id, popen, workdir)
        with self._lock:
            if self._stopped:
                proc.kill()
                popen.wait()
                raise RuntimeError("process runner is stopped")
            self._procs[task_id] = proc
        LOG.debug("task process started", extra={"task_id": task_id, "pid": popen.pid})
        return proc

    def forget(self, task_id: str) -> None:
        """The task is gone: stop tracking its (already exited) process."""
        with self._lock:
            proc = self._procs.pop(task_id, None)
        if proc is not None:
            proc.kill()  # the group may still hold children of the shell
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=1.0)

    def sandbox(self, task_id: str) -> str:
        """The task's working directory (``$MESOS_SANDBOX``)."""
        return os.path.join(self._root, task_id)

    def pids(self) -> dict[str, int]:
        with self._lock:
            return {tid: p.pid for tid, p in self._procs.items()}

    def stop_all(self, grace: float = 1.0) -> None:
        """SIGTERM every group, SIGKILL what is left after ``grace``, remove the temp dirs."""
        with self._lock:
            self._stopped = True
            procs = list(self._procs.values())
            self._procs.clear()
        for proc in procs:
            proc.terminate()
        deadline = time.monotonic() + grace
        for proc in procs:
            remaining = max(0.0, deadline - time.monotonic())
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=remaining)
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=2.0)
        shutil.rmtree(self._root, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop_all)
