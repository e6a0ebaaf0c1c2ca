"""Find the HAProxy masters of one master socket, judge whether one may be adopted, watch one.

A sidecar killed without warning leaves its HAProxy master running (it is a plain child with no
parent-death signal). The next sidecar on the same state directory finds it here
(:func:`masters_of`): every live, non-zombie ``haproxy`` process started with ``-S <our master
socket>`` whose parent is not an haproxy too (workers carry their master's command line).
Reading ``/proc`` is the I/O; :func:`adoption_refusal` is the pure rule that says whether a
found master may be adopted. :class:`ChildMaster` and :class:`AdoptedMaster` are the two ways to
watch and signal the master we drive: our child, or a process we only know by pid.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Protocol

from sidecar.haproxy.runtime import ProcStatus

PROC = "/proc"


@dataclass(frozen=True)
class FoundMaster:
    """A live HAProxy master of our master socket, as ``/proc`` shows it."""

    pid: int
    started: int  # start time in clock ticks since boot: tells a reused pid apart
    exe: str  # what /proc/<pid>/exe points to ("" when unreadable)
    config_path: str  # its -f, resolved against its working directory ("" when unknown)
    argv: tuple[str, ...]


@dataclass(frozen=True)
class _Process:
    pid: int
    comm: str
    ppid: int
    started: int
    argv: tuple[str, ...]  # empty while it executes a new program (a master reloading)


def argv_value(argv: Sequence[str], flag: str) -> Optional[str]:
    """The word after ``flag`` in ``argv`` (the last one when repeated), or None."""
    found = None
    for i, word in enumerate(argv[:-1]):
        if word == flag:
            found = argv[i + 1]
    return found


def serves_socket(argv: Sequence[str], master_socket: str) -> bool:
    """Whether ``argv`` is an haproxy command line with ``-S <master_socket>[,options]``."""
    if not argv or "haproxy" not in os.path.basename(argv[0]):
        return False
    value = argv_value(argv, "-S")
    return value is not None and value.split(",", 1)[0] == master_socket


def _stat(pid: int, proc: str) -> Optional[tuple[str, list[str]]]:
    """(command name, the fields after it: state first) of /proc/<pid>/stat, or None."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return None
    head, _, tail = text.rpartition(")")
    rest = tail.split()
    return (head.partition("(")[2], rest) if len(rest) > 19 else None


def start_time(pid: int, proc: str = PROC) -> Optional[int]:
    """When process ``pid`` started (clock ticks since boot); None when it is gone or a zombie."""
    stat = _stat(pid, proc)
    if stat is None or stat[1][0] in ("Z", "X"):
        return None
    return int(stat[1][19])


def _process(pid: int, proc: str) -> Optional[_Process]:
    stat = _stat(pid, proc)
    if stat is None or stat[1][0] in ("Z", "X"):
        return None
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    argv = tuple(w.decode("utf-8", "replace") for w in raw.split(b"\0") if w)
    comm, fields = stat
    return _Process(pid, comm, int(fields[1]), int(fields[19]), argv)


def _processes(proc: str) -> dict[int, _Process]:
    found = {}
    for name in os.listdir(proc):
        if name.isdigit():
            process = _process(int(name), proc)
            if process is not None:
                found[process.pid] = process
    return found


def _link(pid: int, name: str, proc: str) -> str:
    try:
        return os.readlink(f"{proc}/{pid}/{name}")
    except OSError:
        return ""


def _found(process: _Process, argv: tuple[str, ...], proc: str) -> FoundMaster:
    config = argv_value(argv, "-f") or ""
    if config:
        config = os.path.realpath(os.path.join(_link(process.pid, "cwd", proc) or "/", config))
    exe = _link(process.pid, "exe", proc)
    return FoundMaster(process.pid, process.started, exe, config, argv)


def _between_programs(process: _Process) -> bool:
    """An haproxy in the middle of executing itself again (a master reloading): /proc shows
    no command line for a moment."""
    return not process.argv and "haproxy" in process.comm


def _settled_processes(proc: str, settle: float) -> dict[int, _Process]:
    """Every live process, read again (for up to ``settle`` seconds) while an haproxy is
    between two programs."""
    deadline = time.monotonic() + settle
    while True:
        processes = _processes(proc)
        if time.monotonic() >= deadline or not any(map(_between_programs, processes.values())):
            return processes
        time.sleep(0.005)


def masters_of(master_socket: str, proc: str = PROC, settle: float = 1.0) -> list[FoundMaster]:
    """The live HAProxy masters started with ``-S master_socket``, oldest first.

    A process with that command line is a worker when its parent is an haproxy too (workers
    carry their master's command line), else a master. A master reloading executes itself
    again and shows no command line meanwhile: /proc is read again until it has one (or
    ``settle`` seconds passed), and it is also found through its workers.
    """
    processes = _settled_processes(proc, settle)
    argvs: dict[int, tuple[str, ...]] = {}  # master pid -> its command line
    for process in processes.values():
        if not serves_socket(process.argv, master_socket):
            continue
        parent = processes.get(process.ppid)
        if parent is not None and parent.comm == process.comm:
            argvs.setdefault(parent.pid, process.argv)
        else:
            argvs[process.pid] = process.argv
    masters = sorted((processes[pid] for pid in argvs), key=lambda p: (p.started, p.pid))
    return [_found(m, m.argv if m.argv else argvs[m.pid], proc) for m in masters]


def children_of(pid: int, proc: str = PROC) -> set[int]:
    """The live processes whose parent is ``pid`` (a master's workers)."""
    return {p.pid for p in _processes(proc).values() if p.ppid == pid}


def adoption_refusal(
    found: FoundMaster, answer: Optional[ProcStatus], binary: str, config_path: str
) -> str:
    """Why ``found`` may not be adopted ("" when it may).

    It may when it answers ``show proc`` on the master socket as itself with a current worker
    (``answer``), runs ``binary`` and was started on ``config_path`` (both resolved paths;
    an empty ``binary`` is not judged).
    """
    if answer is None or answer.master is None or answer.master.pid != found.pid:
        return "it does not answer on its master socket"
    if not answer.workers:
        return "it has no current worker"
    if binary and found.exe != binary:
        return f"it runs {found.exe or 'an unknown binary'}, not {binary}"
    if found.config_path != config_path:
        return f"it runs the config {found.config_path or '(none)'}, not {config_path}"
    return ""


# ----------------------------------------------------------------------------- watching one


class MasterHandle(Protocol):
    """The master process we drive, however it came to run for us."""

    pid: int

    def alive(self) -> bool: ...

    def exit_code(self) -> Optional[int]: ...

    def signal(self, signum: int) -> None: ...

    def wait(self, timeout: float) -> bool: ...


class ChildMaster:
    """A master we spawned: our child, so ``poll()`` says at once that it exited."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def exit_code(self) -> Optional[int]:
        return self.proc.returncode

    def signal(self, signum: int) -> None:
        if self.alive():
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class AdoptedMaster:
    """A master an earlier sidecar run started: not our child, so its pid is polled (with its
    start time, so that a reused pid does not pass for it)."""

    def __init__(self, pid: int, started: int) -> None:
        self.pid = pid
        self.started = started

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def exit_code(self) -> Optional[int]:
        return None  # its new parent reaps it, not us

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True
