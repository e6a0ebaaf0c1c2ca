"""Start, supervise, reload and stop HAProxy in master-worker mode.

:class:`HAProxyProcess` runs ``haproxy -W -S <run_dir>/master.sock,mode,600 -f <config> -p <pid>``
as a foreground child of the sidecar: the master stays our child (no daemonising), so ``poll()``
tells at once whether it died, and stopping it cannot leave an orphan master. Reloads go through
the master CLI and are confirmed with ``show proc`` (2.6 reloads are asynchronous); then the admin
socket is polled until the new worker answers it, so runtime commands after a reload reach the new
worker, not the old one.

A master an earlier sidecar run left running (the sidecar was killed) keeps serving while ours
starts: HAProxy binds with SO_REUSEPORT, so both hold the ports; once ours serves, the leftover is
soft-stopped (SIGUSR1), with a SIGKILL as a deadline backstop. No request meets a closed port.

:class:`ExternalHAProxy` drives an HAProxy somebody else runs (Debian's systemd unit:
``-Ws -S /run/haproxy-master.sock``) through its master socket: reloads only, no start or stop.

Both implement :class:`HAProxyControl`, the interface :mod:`sidecar.apply` uses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Optional, Protocol

from marathon_bridge.errors import MarathonBridgeError
from sidecar.haproxy.runtime import (
    MasterCLI,
    ProcStatus,
    ReloadResult,
    RuntimeAPI,
    RuntimeUnavailable,
)

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 8192


class HAProxyError(MarathonBridgeError):
    """HAProxy could not be started, or is not running where we expected it."""


class HAProxyControl(Protocol):
    """What the applier needs from an HAProxy, whoever runs it."""

    master_socket: str
    admin_socket: Optional[str]

    def running(self) -> bool: ...

    def ensure_started(self, timeout: float = 30.0) -> bool: ...

    def reload(self, timeout: float = 30.0) -> ReloadResult: ...

    def restart_if_dead(self, timeout: float = 30.0) -> bool: ...

    def proc_status(self) -> Optional[ProcStatus]: ...

    def stop(self, timeout: float = 10.0) -> None: ...


def _wait_for_admin_pid(admin: RuntimeAPI, pid: int, timeout: float) -> bool:
    """Poll ``show info`` on the admin socket until worker ``pid`` answers it."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while time.monotonic() < deadline:
        try:
            if admin.worker_pid() == pid:
                return True
        except (RuntimeUnavailable, ValueError):
            pass
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return False


class _MasterDriver:
    """Reload logic shared by both implementations: one reload at a time, confirmed."""

    master_socket: str
    admin_socket: Optional[str]

    def __init__(self, master_socket: str, admin_socket: Optional[str], cli_timeout: float) -> None:
        self.master_socket = master_socket
        self.admin_socket = admin_socket
        self.master = MasterCLI(master_socket, timeout=cli_timeout)
        self.admin = (
            RuntimeAPI(admin_socket, timeout=cli_timeout, master_socket=master_socket)
            if admin_socket
            else None
        )
        self._reload_lock = threading.Lock()
        self.reloads = 0
        self.reload_failures = 0
        self._last_workers: set[int] = set()

    def proc_status(self) -> Optional[ProcStatus]:
        try:
            return self.master.show_proc()
        except RuntimeUnavailable:
            return None

    def _alert_lines(self, since: int) -> str:
        return ""

    def _log_offset(self) -> int:
        return 0

    def _alive(self) -> bool:
        return True

    def _admin_serves(self, pid: Optional[int], timeout: float) -> bool:
        if self.admin is None or not pid:
            return True
        return _wait_for_admin_pid(self.admin, pid, timeout)

    def reload(self, timeout: float = 30.0) -> ReloadResult:
        """Reload and wait for the verdict; never overlaps another reload."""
        with self._reload_lock:
            before = self.master.show_proc_retrying(timeout)
            offset = self._log_offset()
            result = self.master.reload_and_confirm(timeout, before=before, alive=self._alive)
            if result.ok and not self._admin_serves(result.new_pid, timeout):
                result = ReloadResult(
                    False,
                    result.new_pid,
                    result.old_workers,
                    f"new worker {result.new_pid} did not answer on the admin socket",
                    result.status,
                )
            if not result.ok:
                alerts = self._alert_lines(offset)
                if alerts:
                    message = f"{result.message}: {alerts}"
                    result = ReloadResult(
                        False, result.new_pid, result.old_workers, message, result.status
                    )
                self.reload_failures += 1
                log.warning("haproxy reload failed", extra={"reason": result.message})
            else:
                self.reloads += 1
                if result.status is not None:
                    every = result.status.workers + result.status.old_workers
                    self._last_workers = {w.pid for w in every}
                log.info(
                    "haproxy reloaded",
                    extra={"worker_pid": result.new_pid, "old_workers": result.old_workers},
                )
            return result


class HAProxyProcess(_MasterDriver):
    """An HAProxy master that the sidecar starts and supervises as its child process."""

    def __init__(
        self,
        haproxy_bin: str,
        config_path: str,
        run_dir: str,
        *,
        admin_socket: Optional[str] = None,
        extra_args: tuple[str, ...] = (),
        cli_timeout: float = 5.0,
        leftover_grace: float = 30.0,
    ) -> None:
        self.haproxy_bin = haproxy_bin
        self.config_path = str(config_path)
        self.run_dir = str(run_dir)
        self.pid_file = os.path.join(self.run_dir, "haproxy.pid")
        self.log_file = os.path.join(self.run_dir, "haproxy.log")
        self.extra_args = tuple(extra_args)
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None
        self._lifecycle = threading.Lock()
        self.starts = 0
        self.leftover_grace = leftover_grace
        self._leftover: Optional[int] = None  # an earlier run's master, until ours serves
        super().__init__(os.path.join(self.run_dir, "master.sock"), admin_socket, cli_timeout)

    # -- paths and command line

    def prepare_run_dir(self) -> None:
        """Create ``run_dir`` private to us (mode 700): it holds the sockets."""
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        mode = stat.S_IMODE(os.stat(self.run_dir).st_mode)
        if mode != 0o700:
            os.chmod(self.run_dir, 0o700)

    def command(self) -> list[str]:
        return [
            self.haproxy_bin,
            "-W",
            "-S",
            f"{self.master_socket},mode,600",
            "-f",
            self.config_path,
            "-p",
            self.pid_file,
            *self.extra_args,
        ]

    @property
    def master_pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _alive(self) -> bool:
        return self.running()

    alive = running  # the name the issue uses

    def start(self) -> None:
        """Spawn the master (returns at once; see :meth:`wait_ready`)."""
        with self._lifecycle:
            if self.running():
                return
            self.prepare_run_dir()
            # a master of an earlier run keeps serving until ours is ready (SO_REUSEPORT lets
            # both hold the ports); wait_ready() then soft-stops it
            self._leftover = self.leftover_master_pid() or self._leftover
            if os.path.exists(self.master_socket):
                os.unlink(self.master_socket)
            if self._log is None:
                self._log = open(self.log_file, "ab")  # noqa: SIM115 -- kept for the child's life
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                close_fds=True,
            )
            self.starts += 1
            log.info("haproxy started", extra={"master_pid": self._proc.pid})

    def leftover_master_pid(self) -> Optional[int]:
        """The pid of a live master an earlier sidecar run left behind (by pid file and socket)."""
        pid = _leftover_master(self.pid_file, self.master_socket)
        return None if pid is None or pid == self.master_pid else pid

    def retire_leftover(self) -> Optional[int]:
        """Soft-stop the leftover master once ours serves: SIGUSR1 (its workers finish what they
        serve), SIGKILL after :attr:`leftover_grace` seconds as a backstop (in a thread)."""
        pid, self._leftover = self._leftover, None
        if pid is None or pid == self.master_pid or not _pid_alive(pid):
            return None
        log.warning("soft-stopping the haproxy master of an earlier run", extra={"pid": pid})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
        threading.Thread(
            target=self._kill_leftovers,
            args=({pid}, self.leftover_grace),
            name=f"haproxy-leftover-{pid}",
            daemon=True,
        ).start()
        return pid

    def stop_leftover(self, timeout: float = 10.0) -> Optional[int]:
        """Stop a master an earlier sidecar run left behind (found by our pid file and socket).

        Without this it would keep serving its old config next to ours: HAProxy binds with
        SO_REUSEPORT, so a second master starts fine and the two split the traffic.
        """
        pid = self.leftover_master_pid()
        if pid is None:
            return None
        log.warning("stopping a leftover haproxy master", extra={"pid": pid})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        self._kill_leftovers({pid}, timeout=timeout)
        return pid

    @property
    def admin_keep_link(self) -> Optional[str]:
        """A second name (hard link) of the admin socket, to bring a deleted file back."""
        if not self.admin_socket:
            return None
        folder, name = os.path.split(self.admin_socket)
        return os.path.join(folder, f".{name}.keep")

    def _pin_admin_socket(self) -> None:
        """Link the freshly bound admin socket under :attr:`admin_keep_link`."""
        keep = self.admin_keep_link
        if keep is None or self.admin_socket is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(keep)
            os.link(self.admin_socket, keep)
        except OSError as exc:
            log.debug("admin socket not pinned", extra={"error": str(exc)})

    def restore_admin_socket(self) -> bool:
        """Bring back a deleted admin socket file from its second name; True when restored.

        HAProxy itself never recreates it: a reload hands the listening socket to the new
        worker. Meanwhile the runtime API goes through the master CLI.
        """
        keep = self.admin_keep_link
        if keep is None or self.admin_socket is None or os.path.exists(self.admin_socket):
            return False
        try:
            if not stat.S_ISSOCK(os.stat(keep).st_mode):
                return False
            os.link(keep, self.admin_socket)
        except OSError as exc:
            log.debug("admin socket not restored", extra={"error": str(exc)})
            return False
        log.warning("admin socket was deleted; restored", extra={"path": self.admin_socket})
        return True

    def wait_ready(self, timeout: float = 30.0) -> ProcStatus:
        """Wait until the master lists a worker and (if configured) the admin socket answers."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc is not None else None
                raise HAProxyError(f"haproxy exited with {code}: {self.log_tail()}")
            status = self.proc_status()
            if status is not None and status.workers:
                pid = status.workers[-1].pid
                if self.admin is None or _wait_for_admin_pid(self.admin, pid, 0.2):
                    self._last_workers = {w.pid for w in status.workers}
                    self._pin_admin_socket()
                    self.retire_leftover()
                    return status
            if time.monotonic() >= deadline:
                raise HAProxyError(f"haproxy not ready after {timeout:.0f}s: {self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def ensure_started(self, timeout: float = 30.0) -> bool:
        if self.running():
            return False
        self.start()
        self.wait_ready(timeout)
        return True

    def restart_if_dead(self, timeout: float = 30.0) -> bool:
        """Supervision: if the master exited, start it again from the config on disk (and
        bring back a deleted admin socket file while it runs)."""
        if self._proc is None:
            return False
        if self.running():
            self.restore_admin_socket()
            return False
        log.warning(
            "haproxy master died; restarting",
            extra={"exit_code": self._proc.returncode, "log_tail": self.log_tail()},
        )
        # workers notice their master's death and leave; do not let one linger on our ports
        self._kill_leftovers(self._last_workers, timeout=2.0)
        self.start()
        self.wait_ready(timeout)
        return True

    def stop(self, timeout: float = 10.0, graceful: bool = False) -> None:
        """Stop the master and its workers: SIGUSR1 (graceful) or SIGTERM, then SIGKILL."""
        with self._lifecycle:
            proc = self._proc
            if proc is None:
                return
            workers = self._known_worker_pids() if proc.poll() is None else self._last_workers
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1 if graceful else signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("haproxy did not stop in time; killing it")
                    proc.kill()
                    proc.wait(timeout)
            if self._leftover is not None:  # ours never got ready: the earlier run's goes too
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._leftover, signal.SIGTERM)
                workers = workers | {self._leftover}
                self._leftover = None
            self._kill_leftovers(workers)
            self._proc = None
            if self.admin_keep_link:
                with contextlib.suppress(OSError):
                    os.unlink(self.admin_keep_link)
            if self._log is not None:
                self._log.close()
                self._log = None
            log.info("haproxy stopped", extra={"exit_code": proc.returncode})

    # -- helpers

    def _known_worker_pids(self) -> set[int]:
        status = self.proc_status()
        if status is None:
            return set()
        return {w.pid for w in status.workers + status.old_workers}

    @staticmethod
    def _kill_leftovers(pids: set[int], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        remaining = set(pids)
        while remaining and time.monotonic() < deadline:
            remaining = {p for p in remaining if _pid_alive(p)}
            if remaining:
                time.sleep(0.02)
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, size: int = LOG_TAIL_BYTES) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - size))
                return fh.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _log_offset(self) -> int:
        try:
            return os.path.getsize(self.log_file)
        except OSError:
            return 0

    def _alert_lines(self, since: int) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(since)
                text = fh.read(LOG_TAIL_BYTES * 4).decode("utf-8", "replace")
        except OSError:
            return ""
        alerts = [ln.strip() for ln in text.splitlines() if "[ALERT]" in ln]
        return " | ".join(alerts[-5:])


def _leftover_master(pid_file: str, master_socket: str) -> Optional[int]:
    """The pid in ``pid_file`` if it is a live haproxy started with ``master_socket``."""
    try:
        pid = int(Path(pid_file).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return None
    name = os.path.basename(argv[0].decode("utf-8", "replace")) if argv else ""
    wanted = master_socket.encode()
    if "haproxy" not in name or not any(arg.split(b",")[0] == wanted for arg in argv):
        return None
    return pid if _pid_alive(pid) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is dead for this purpose
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


class ExternalHAProxy(_MasterDriver):
    """An HAProxy run by someone else (e.g. systemd with ``-Ws -S``): reload via its master CLI."""

    def __init__(
        self, master_socket: str, admin_socket: Optional[str] = None, *, cli_timeout: float = 5.0
    ) -> None:
        super().__init__(master_socket, admin_socket, cli_timeout)

    def running(self) -> bool:
        status = self.proc_status()
        return status is not None and bool(status.workers)

    alive = running

    def ensure_started(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while not self.running():
            if time.monotonic() >= deadline:
                raise HAProxyError(
                    f"no HAProxy master answers on {self.master_socket}; "
                    "it is managed outside the sidecar, start it there"
                )
            time.sleep(0.1)
        return False

    def restart_if_dead(self, timeout: float = 30.0) -> bool:
        if not self.running():
            log.error(
                "external haproxy is not running", extra={"master_socket": self.master_socket}
            )
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Not ours to stop."""
