"""Start or adopt, supervise, reload and stop HAProxy in master-worker mode.

:class:`HAProxyProcess` runs ``haproxy -W -S <run_dir>/master.sock,mode,600 -f <config> -p <pid>``
as a foreground child of the sidecar (no daemonising): ``poll()`` tells at once whether it died.
Its stdout is the sidecar's (the rendered ``log stdout`` lines: errors, server state changes and
the access log when asked for); its stderr (start-up and reload messages) goes to
``<run_dir>/haproxy.log``, where the sidecar reads the alerts of a failed start or reload.
Reloads go through the master CLI and are confirmed with ``show proc`` (2.6 reloads are
asynchronous); then the admin socket is polled until the new worker answers it, so runtime
commands after a reload reach the new worker, not the old one.

The master has no parent-death signal: a sidecar killed without warning leaves it serving. The
next sidecar on the same state directory **adopts** it (:mod:`sidecar.haproxy.masters` finds
it): no second master; reloads go through its master CLI as before (seamless: the listening
sockets are handed to each new worker); supervision polls its pid, since it is not our child,
and a stop on purpose stops it like one we started. A master found that does not answer on its
master socket, or runs another binary or config, is replaced: the new master takes its listening
sockets over (``-x <admin socket>``, the rendered stats socket has ``expose-fd listeners``), so
the two never split the traffic between two accept queues, and the old one is soft-stopped
(SIGUSR1) once the new one serves, with a SIGKILL as a deadline backstop.

:class:`ExternalHAProxy` drives an HAProxy somebody else runs (Debian's systemd unit:
``-Ws -S /run/haproxy-master.sock``) through its master socket: reloads only, no start or stop.

Both implement :class:`HAProxyControl`, the interface :mod:`sidecar.apply` uses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Optional, Protocol

from marathon_bridge.errors import MarathonBridgeError
from sidecar.haproxy.masters import (
    AdoptedMaster,
    ChildMaster,
    MasterHandle,
    adoption_refusal,
    children_of,
    masters_of,
    start_time,
)
from sidecar.haproxy.runtime import (
    MasterCLI,
    ProcStatus,
    ReloadResult,
    RuntimeAPI,
    RuntimeAPIError,
    RuntimeUnavailable,
)

log = logging.getLogger(__name__)

LOG_TAIL_BYTES = 8192

# where the HAProxy we drive came from (``origin``; /health and /metrics show it)
ORIGIN_STARTED = "started"  # we started the master
ORIGIN_ADOPTED = "adopted"  # an earlier sidecar run started it; we took it over
ORIGIN_EXTERNAL = "external"  # somebody else runs it (--master-socket)


class HAProxyError(MarathonBridgeError):
    """HAProxy could not be started, or is not running where we expected it."""


class HAProxyControl(Protocol):
    """What the applier needs from an HAProxy, whoever runs it."""

    master_socket: str
    admin_socket: Optional[str]
    origin: Optional[str]  # ORIGIN_*, None until one runs
    starts: int  # how many times the sidecar (re)started it; 0 for one run elsewhere

    def running(self) -> bool: ...

    def leftover_master_pid(self) -> Optional[int]: ...

    def adopt(self, timeout: float = 30.0) -> bool: ...

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
    starts = 0

    def leftover_master_pid(self) -> Optional[int]:
        """A master an earlier sidecar run left behind (only one the sidecar starts has one)."""
        return None

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
    """An HAProxy master that the sidecar runs and supervises: one it started (its child) or
    one an earlier sidecar run left serving, adopted (see the module doc)."""

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
        adopt_timeout: float = 5.0,
        stdout: Optional[IO[bytes]] = None,
    ) -> None:
        self.haproxy_bin = haproxy_bin
        self.config_path = str(config_path)
        self.run_dir = str(run_dir)
        self.pid_file = os.path.join(self.run_dir, "haproxy.pid")
        self.log_file = os.path.join(self.run_dir, "haproxy.log")
        self.extra_args = tuple(extra_args)
        self.stdout = stdout  # HAProxy's log lines (``log stdout``); None: the sidecar's stdout
        self._master: Optional[MasterHandle] = None
        self._log: Optional[IO[bytes]] = None
        self._lifecycle = threading.RLock()
        self.origin: Optional[str] = None  # ORIGIN_STARTED or ORIGIN_ADOPTED while one runs
        self.starts = 0
        self.adoptions = 0
        self.leftover_grace = leftover_grace
        self.adopt_timeout = adopt_timeout
        self._retiring: set[int] = set()  # earlier runs' masters not adopted, until ours serves
        super().__init__(os.path.join(self.run_dir, "master.sock"), admin_socket, cli_timeout)

    # -- paths and command line

    def prepare_run_dir(self) -> None:
        """Create ``run_dir`` private to us (mode 700): it holds the sockets."""
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        mode = stat.S_IMODE(os.stat(self.run_dir).st_mode)
        if mode != 0o700:
            os.chmod(self.run_dir, 0o700)

    def command(self, listeners_from: Optional[str] = None) -> list[str]:
        """The master's command line; ``listeners_from``: a socket to take the listening
        sockets from (``-x``, an earlier master's worker with ``expose-fd listeners``)."""
        handover = ["-x", listeners_from] if listeners_from else []
        return [
            self.haproxy_bin,
            "-W",
            "-S",
            f"{self.master_socket},mode,600",
            "-f",
            self.config_path,
            "-p",
            self.pid_file,
            *handover,
            *self.extra_args,
        ]

    @property
    def master_pid(self) -> Optional[int]:
        return self._master.pid if self._master is not None else None

    # -- lifecycle

    def running(self) -> bool:
        return self._master is not None and self._master.alive()

    def _alive(self) -> bool:
        return self.running()

    alive = running  # the name the issue uses

    def start(self) -> None:
        """Adopt the master an earlier run left serving, or spawn one (returns at once; see
        :meth:`wait_ready`).

        A master found that cannot be adopted keeps serving until ours is ready: ours takes
        its listening sockets over (``-x``), and :meth:`wait_ready` soft-stops it.
        """
        with self._lifecycle:
            if self.running():
                return
            self.prepare_run_dir()
            if not self._adopt_found():
                self._spawn()

    def adopt(self, timeout: float = 30.0) -> bool:
        """Take over a master an earlier sidecar run left serving (nothing is started); True
        when one runs for us now. Once we ran one, supervision restarts it instead."""
        with self._lifecycle:
            if self._master is not None:
                return self.running()
            self.prepare_run_dir()
            if not self._adopt_found():
                return False
        self.wait_ready(timeout)
        return True

    def _adopt_found(self) -> bool:
        """Adopt the master found serving our master socket, if it may be; the others found
        are retired once ours serves."""
        found = [m for m in masters_of(self.master_socket) if m.pid != self.master_pid]
        if not found:
            return False
        answer = self._show_proc_of_found()
        binary, config = self._binary(), os.path.realpath(self.config_path)
        chosen = None
        for master in found:
            reason = adoption_refusal(master, answer, binary, config)
            if reason:
                log.warning(
                    "not adopting the haproxy master of an earlier run; replacing it",
                    extra={"pid": master.pid, "reason": reason},
                )
            else:
                chosen = master
        self._retiring |= {m.pid for m in found if m is not chosen}
        if chosen is None:
            return False
        self._master = AdoptedMaster(chosen.pid, chosen.started)
        self.origin = ORIGIN_ADOPTED
        self.adoptions += 1
        self._record_pid(chosen.pid)
        self.restore_admin_socket()
        log.info("adopted the haproxy master of an earlier run", extra={"master_pid": chosen.pid})
        return True

    def _show_proc_of_found(self) -> Optional[ProcStatus]:
        if not os.path.exists(self.master_socket):
            return None
        try:  # retried: a master in the middle of a reload re-executes itself
            return self.master.show_proc_retrying(self.adopt_timeout)
        except RuntimeUnavailable:
            return None

    def _binary(self) -> str:
        found = shutil.which(self.haproxy_bin)
        return os.path.realpath(found) if found else ""

    def _record_pid(self, pid: int) -> None:
        with contextlib.suppress(OSError):
            if Path(self.pid_file).read_text().split()[:1] == [str(pid)]:
                return
        with contextlib.suppress(OSError):
            Path(self.pid_file).write_text(f"{pid}\n")

    def _spawn(self) -> None:
        listeners_from = self._handover_socket()
        if os.path.exists(self.master_socket):
            os.unlink(self.master_socket)
        if self._log is None:
            self._log = open(self.log_file, "ab")  # noqa: SIM115 -- kept for the child's life
        proc = subprocess.Popen(
            self.command(listeners_from),
            stdin=subprocess.DEVNULL,
            stdout=self.stdout,  # None: inherited, so `log stdout` lines reach the sidecar's
            stderr=self._log,
            close_fds=True,
        )
        self._master = ChildMaster(proc)
        self.origin = ORIGIN_STARTED
        self.starts += 1
        log.info(
            "haproxy started",
            extra={"master_pid": proc.pid, "listeners_from": listeners_from or ""},
        )

    def _handover_socket(self) -> Optional[str]:
        """The admin socket, when a master being replaced has a worker answering there: the new
        master takes the listening sockets from it (``-x``; the rendered stats socket has
        ``expose-fd listeners``) rather than binding its own next to them (two accept queues:
        connections waiting in the old one would be reset when it closes)."""
        if not self._retiring or not self.admin_socket:
            return None
        self.restore_admin_socket()
        try:
            RuntimeAPI(self.admin_socket, timeout=1.0).show_info()
        except RuntimeAPIError:
            return None
        return self.admin_socket

    def leftover_master_pid(self) -> Optional[int]:
        """The pid of a live master of our master socket that is not ours (an earlier run's)."""
        for master in masters_of(self.master_socket):
            if master.pid != self.master_pid:
                return master.pid
        return None

    def retire_leftovers(self) -> set[int]:
        """Soft-stop the earlier runs' masters not adopted, once ours serves: SIGUSR1 (their
        workers finish what they serve; SIGCONT wakes a stopped one), SIGKILL to them and
        their workers after :attr:`leftover_grace` seconds as a backstop (in a thread)."""
        with self._lifecycle:
            pids, self._retiring = self._retiring - {self.master_pid}, set()
        pids = {p for p in pids if _pid_alive(p)}
        doomed = set(pids)
        for pid in sorted(pids):
            log.warning("soft-stopping the haproxy master of an earlier run", extra={"pid": pid})
            doomed |= children_of(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
                os.kill(pid, signal.SIGCONT)
        if doomed:
            threading.Thread(
                target=self._kill_leftovers,
                args=(doomed, self.leftover_grace),
                name="haproxy-leftovers",
                daemon=True,
            ).start()
        return pids

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
        """Wait until the master lists a worker and (if configured) the admin socket answers;
        then retire the earlier runs' masters."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            master = self._master
            if master is None or not master.alive():
                code = master.exit_code() if master is not None else None
                raise HAProxyError(f"haproxy exited with {code}: {self.log_tail()}")
            status = self.proc_status()
            if status is not None and status.workers:
                pid = status.workers[-1].pid
                if self.admin is None or _wait_for_admin_pid(self.admin, pid, 0.2):
                    self._last_workers = {w.pid for w in status.workers + status.old_workers}
                    self._pin_admin_socket()
                    self.retire_leftovers()
                    return status
            if time.monotonic() >= deadline:
                raise HAProxyError(f"haproxy not ready after {timeout:.0f}s: {self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def ensure_started(self, timeout: float = 30.0) -> bool:
        """Make a master run for us. True when a new one was started on the config on disk;
        False when one ran already or an earlier run's was adopted (it runs what it was last
        loaded with: reload it to load the file)."""
        if self.running():
            return False
        self.start()
        self.wait_ready(timeout)
        return self.origin == ORIGIN_STARTED

    def restart_if_dead(self, timeout: float = 30.0) -> bool:
        """Supervision: if the master (started or adopted) exited, start a new one from the
        config on disk (and bring back a deleted admin socket file while it runs)."""
        master = self._master
        if master is None:
            return False
        if master.alive():
            self.restore_admin_socket()
            return False
        log.warning(
            "haproxy master died; restarting",
            extra={
                "exit_code": master.exit_code(),
                "origin": self.origin,
                "log_tail": self.log_tail(),
            },
        )
        # workers notice their master's death and leave; do not let one linger on our ports
        self._kill_leftovers(self._last_workers, timeout=2.0)
        self.start()
        self.wait_ready(timeout)
        return True

    def stop(self, timeout: float = 10.0, graceful: bool = False) -> None:
        """Stop the master (started or adopted) and its workers: SIGUSR1 (graceful) or SIGTERM,
        then SIGKILL."""
        with self._lifecycle:
            master = self._master
            if master is None:
                return
            alive = master.alive()
            workers = self._known_worker_pids() if alive else set(self._last_workers)
            if alive:
                master.signal(signal.SIGUSR1 if graceful else signal.SIGTERM)
                if not master.wait(timeout):
                    log.warning("haproxy did not stop in time; killing it")
                    master.signal(signal.SIGKILL)
                    master.wait(timeout)
            for pid in self._retiring:  # ours never got ready: the earlier runs' go too
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                    os.kill(pid, signal.SIGCONT)
            workers |= self._retiring
            self._retiring = set()
            self._kill_leftovers(workers)
            self._master = None
            origin, self.origin = self.origin, None
            if self.admin_keep_link:
                with contextlib.suppress(OSError):
                    os.unlink(self.admin_keep_link)
            if self._log is not None:
                self._log.close()
                self._log = None
            log.info("haproxy stopped", extra={"exit_code": master.exit_code(), "origin": origin})

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


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead for this purpose)."""
    return start_time(pid) is not None


class ExternalHAProxy(_MasterDriver):
    """An HAProxy run by someone else (e.g. systemd with ``-Ws -S``): reload via its master CLI."""

    origin: Optional[str] = ORIGIN_EXTERNAL

    def __init__(
        self, master_socket: str, admin_socket: Optional[str] = None, *, cli_timeout: float = 5.0
    ) -> None:
        super().__init__(master_socket, admin_socket, cli_timeout)

    def running(self) -> bool:
        status = self.proc_status()
        return status is not None and bool(status.workers)

    alive = running

    def adopt(self, timeout: float = 30.0) -> bool:
        """Nothing to take over: it is driven where it runs."""
        return False

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
