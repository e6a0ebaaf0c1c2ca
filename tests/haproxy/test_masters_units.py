"""Finding the masters of a master socket in a /proc tree, and the adoption rule (plain data)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from sidecar.haproxy.masters import (
    FoundMaster,
    adoption_refusal,
    argv_value,
    children_of,
    masters_of,
    serves_socket,
    start_time,
)
from sidecar.haproxy.runtime import ProcInfo, ProcStatus

SOCKET = "/state/run/master.sock"
CONFIG = "/state/haproxy.cfg"
BINARY = "/usr/sbin/haproxy"
MASTER_ARGV = ("haproxy", "-W", "-S", f"{SOCKET},mode,600", "-f", CONFIG, "-p", "/state/run/pid")
# a worker after a reload: the master's re-exec command line
WORKER_ARGV = ("haproxy", "-sf", "11", "-x", "sockpair@4", *MASTER_ARGV[1:])


def add_process(
    proc: Path,
    pid: int,
    argv: tuple[str, ...],
    *,
    ppid: int = 1,
    comm: str = "haproxy",
    state: str = "S",
    started: int = 1000,
    exe: str = BINARY,
    cwd: str = "/",
) -> None:
    """One /proc/<pid> entry: cmdline, stat (command name in parentheses), exe and cwd."""
    entry = proc / str(pid)
    entry.mkdir()
    (entry / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    rest = [state, str(ppid)] + ["0"] * 17 + [str(started)] + ["0"] * 5
    (entry / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
    os.symlink(exe, entry / "exe")
    os.symlink(cwd, entry / "cwd")


def status(master: Optional[int], workers: tuple[int, ...] = (7,)) -> ProcStatus:
    def info(pid: int, kind: str) -> ProcInfo:
        return ProcInfo(pid, kind, 0, "0d00h00m01s", "2.6.12")

    return ProcStatus(
        info(master, "master") if master else None,
        tuple(info(w, "worker") for w in workers),
        (),
        0,
        0,
    )


def found(pid: int = 10, exe: str = BINARY, config: str = CONFIG) -> FoundMaster:
    return FoundMaster(pid, 1000, exe, config, MASTER_ARGV)


def test_argv_value_is_the_word_after_the_last_flag() -> None:
    assert argv_value(MASTER_ARGV, "-f") == CONFIG
    assert argv_value(("haproxy", "-f", "a", "-f", "b"), "-f") == "b"
    assert argv_value(("haproxy", "-f"), "-f") is None


def test_serves_socket_matches_the_path_before_the_socket_options() -> None:
    assert serves_socket(MASTER_ARGV, SOCKET)
    assert serves_socket(WORKER_ARGV, SOCKET)
    assert not serves_socket(MASTER_ARGV, "/other/run/master.sock")
    assert not serves_socket(("python", *MASTER_ARGV[1:]), SOCKET)
    assert not serves_socket(("haproxy", "-f", SOCKET), SOCKET)


def test_masters_of_leaves_out_workers_zombies_and_other_sockets(tmp_path: Path) -> None:
    add_process(tmp_path, 5, ("python3", "-m", "sidecar"), comm="python3 (sidecar)")
    add_process(tmp_path, 10, MASTER_ARGV, ppid=5, started=500)
    add_process(tmp_path, 11, WORKER_ARGV, ppid=10)
    add_process(tmp_path, 20, MASTER_ARGV, state="Z")  # dead, not reaped
    add_process(tmp_path, 30, ("haproxy", "-W", "-S", "/other/master.sock", "-f", CONFIG))
    add_process(tmp_path, 40, ("sleep", "60"))
    (tmp_path / "self").mkdir()
    assert masters_of(SOCKET, proc=str(tmp_path)) == [
        FoundMaster(10, 500, BINARY, CONFIG, MASTER_ARGV)
    ]
    assert children_of(10, proc=str(tmp_path)) == {11}


def test_a_master_in_the_middle_of_a_reload_is_found_through_its_workers(tmp_path: Path) -> None:
    # re-executing itself: /proc shows an empty command line; its workers still carry it
    add_process(tmp_path, 10, (), started=500)
    add_process(tmp_path, 11, WORKER_ARGV, ppid=10)
    add_process(tmp_path, 12, MASTER_ARGV, ppid=10)
    found = masters_of(SOCKET, proc=str(tmp_path), settle=0.0)
    assert [(m.pid, m.started, m.exe, m.config_path) for m in found] == [(10, 500, BINARY, CONFIG)]


def test_masters_of_lists_an_orphaned_worker_and_sorts_oldest_first(tmp_path: Path) -> None:
    add_process(tmp_path, 12, WORKER_ARGV, ppid=1, started=900)  # its master is gone
    add_process(tmp_path, 50, MASTER_ARGV, started=300)
    assert [m.pid for m in masters_of(SOCKET, proc=str(tmp_path))] == [50, 12]


def test_a_relative_config_path_is_resolved_against_the_masters_directory(
    tmp_path: Path,
) -> None:
    argv = ("haproxy", "-W", "-S", SOCKET, "-f", "haproxy.cfg")
    add_process(tmp_path, 10, argv, cwd="/state")
    (master,) = masters_of(SOCKET, proc=str(tmp_path))
    assert master.config_path == CONFIG


def test_start_time_is_none_for_a_zombie_or_a_missing_process(tmp_path: Path) -> None:
    add_process(tmp_path, 10, MASTER_ARGV, started=4242)
    add_process(tmp_path, 20, MASTER_ARGV, state="Z")
    assert start_time(10, proc=str(tmp_path)) == 4242
    assert start_time(20, proc=str(tmp_path)) is None
    assert start_time(30, proc=str(tmp_path)) is None


def test_a_master_answering_as_itself_on_our_binary_and_config_may_be_adopted() -> None:
    assert adoption_refusal(found(), status(10), BINARY, CONFIG) == ""
    assert adoption_refusal(found(), status(10), "", CONFIG) == ""  # binary unknown: not judged


def test_a_master_that_does_not_answer_as_itself_is_refused() -> None:
    assert "does not answer" in adoption_refusal(found(), None, BINARY, CONFIG)
    assert "does not answer" in adoption_refusal(found(), status(None), BINARY, CONFIG)
    assert "does not answer" in adoption_refusal(found(), status(99), BINARY, CONFIG)
    assert "no current worker" in adoption_refusal(found(), status(10, ()), BINARY, CONFIG)


def test_a_master_on_another_binary_or_config_is_refused() -> None:
    upgraded = found(exe=f"{BINARY} (deleted)")
    assert adoption_refusal(upgraded, status(10), BINARY, CONFIG) == (
        f"it runs {BINARY} (deleted), not {BINARY}"
    )
    other = found(config="/elsewhere/haproxy.cfg")
    assert adoption_refusal(other, status(10), BINARY, CONFIG) == (
        f"it runs the config /elsewhere/haproxy.cfg, not {CONFIG}"
    )
