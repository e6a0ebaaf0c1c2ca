"""A master an earlier sidecar run left serving is adopted by the next run (same state dir): no
second master, reloads through its master CLI, supervised and stopped like one we started. One
that cannot be adopted (another config, or silent on its master socket) hands its listening
sockets to the new master and is soft-stopped; the listening socket never changes."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from sidecar.apply import Applier
from sidecar.haproxy.process import HAProxyProcess
from sidecar.haproxy.runtime import RuntimeAPI
from testkit import free_port, wait_until
from testkit.haproxy import haproxy_masters, haproxy_processes

Factory = Callable[..., HAProxyProcess]


@pytest.fixture
def new_process(haproxy_bin: str, hapaths: Any) -> Iterator[Factory]:
    """HAProxyProcess objects on this test's run dir (each stopped in teardown)."""
    made: list[HAProxyProcess] = []

    def make(config: Path = hapaths.config, **options: Any) -> HAProxyProcess:
        proc = HAProxyProcess(
            haproxy_bin,
            str(config),
            str(hapaths.run_dir),
            admin_socket=str(hapaths.admin_socket),
            **options,
        )
        made.append(proc)
        return proc

    yield make
    for proc in reversed(made):
        proc.stop(timeout=10)


def serve_one_app(hapaths: Any, kit: Any, backends: Any) -> int:
    """A config with one HTTP service served by backend "a"; its port."""
    a = backends("a")
    port = free_port()
    hapaths.config.write_text(kit.render(kit.model_of(kit.service("/a", port, {"a": a}))))
    return port


def listen_inodes(port: int) -> set[int]:
    """Inodes of the sockets listening on 127.0.0.1:``port`` (/proc/net/tcp): one socket, one
    accept queue, however many processes hold it."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":
            inodes.add(int(fields[9]))
    return inodes


def test_a_leftover_that_answers_is_adopted_not_replaced(
    new_process: Factory, hapaths: Any, kit: Any, backends: Any
) -> None:
    port = serve_one_app(hapaths, kit, backends)
    earlier = new_process()
    earlier.ensure_started()
    master = earlier.master_pid
    later = new_process()
    assert later.ensure_started() is False  # not started: adopted, it runs its last config
    assert later.master_pid == master and later.origin == "adopted" and later.starts == 0
    assert later.running() and later.leftover_master_pid() is None
    assert haproxy_masters(str(hapaths.run_dir)) == [master]
    assert kit.get(port) == (200, "a")


def test_a_reload_through_the_adopted_master_confirms_the_worker_the_admin_socket_reaches(
    new_process: Factory, hapaths: Any, kit: Any, backends: Any
) -> None:
    port = serve_one_app(hapaths, kit, backends)
    earlier = new_process()
    earlier.ensure_started()
    later = new_process()
    assert later.adopt(30) is True
    first_worker = RuntimeAPI(str(hapaths.admin_socket)).worker_pid()
    b = backends("b")
    hapaths.config.write_text(kit.render(kit.model_of(kit.service("/a", port, {"b": b}))))
    result = later.reload(30)
    assert result.ok, result.message
    status = later.proc_status()
    assert status is not None and [w.pid for w in status.workers] == [result.new_pid]
    assert RuntimeAPI(str(hapaths.admin_socket)).worker_pid() == result.new_pid
    assert kit.get(port) == (200, "b")
    # the old worker leaves: no pile-up of workers under the adopted master
    wait_until(lambda: not later._known_worker_pids() - {result.new_pid}, 30, "old worker")
    wait_until(lambda: len(haproxy_processes(str(hapaths.run_dir))) == 2, 30, "master + worker")
    assert first_worker not in haproxy_processes(str(hapaths.run_dir))


def test_an_adopted_master_that_dies_is_restarted(
    new_process: Factory, hapaths: Any, kit: Any, backends: Any
) -> None:
    port = serve_one_app(hapaths, kit, backends)
    earlier = new_process()
    earlier.ensure_started()
    later = new_process()
    later.ensure_started()
    adopted = later.master_pid
    assert adopted is not None and later.restart_if_dead() is False  # alive: nothing to do
    os.kill(adopted, signal.SIGKILL)
    wait_until(lambda: not later.running(), 10, "the adopted master seen dead (polled)")
    assert later.restart_if_dead() is True
    assert later.origin == "started" and later.master_pid not in (None, adopted)
    wait_until(lambda: len(haproxy_processes(str(hapaths.run_dir))) == 2, 30, "master + worker")
    assert haproxy_masters(str(hapaths.run_dir)) == [later.master_pid]
    assert kit.get(port) == (200, "a")


def test_stopping_stops_an_adopted_master_and_its_workers(
    new_process: Factory, hapaths: Any, kit: Any, backends: Any
) -> None:
    serve_one_app(hapaths, kit, backends)
    earlier = new_process()
    earlier.ensure_started()
    later = new_process()
    later.ensure_started()
    assert len(haproxy_processes(str(hapaths.run_dir))) == 2
    later.stop(timeout=10)
    assert not later.running() and later.origin is None
    assert haproxy_processes(str(hapaths.run_dir)) == {}


def test_a_leftover_on_another_config_hands_its_listeners_to_a_new_master(
    new_process: Factory, hapaths: Any, kit: Any, backends: Any
) -> None:
    port = serve_one_app(hapaths, kit, backends)
    old_config = hapaths.root / "old.cfg"
    shutil.copy(hapaths.config, old_config)
    earlier = new_process(old_config)
    earlier.ensure_started()
    listening = listen_inodes(port)
    assert len(listening) == 1
    later = new_process()
    assert later.ensure_started() is True
    assert later.origin == "started" and later.master_pid != earlier.master_pid
    assert listen_inodes(port) == listening  # taken over (-x), not bound a second time
    wait_until(lambda: not earlier.running(), 30, "the leftover master soft-stopped")
    assert earlier._master is not None and earlier._master.exit_code() == 0  # SIGUSR1: clean
    assert listen_inodes(port) == listening
    assert haproxy_masters(str(hapaths.run_dir)) == [later.master_pid]
    assert kit.get(port) == (200, "a")


def test_a_leftover_silent_on_its_master_socket_is_replaced(
    new_process: Factory, hapaths: Any, kit: Any, backends: Any
) -> None:
    port = serve_one_app(hapaths, kit, backends)
    earlier = new_process()
    earlier.ensure_started()
    listening = listen_inodes(port)
    assert earlier.master_pid is not None
    os.kill(earlier.master_pid, signal.SIGSTOP)  # hung: its worker still serves
    later = new_process(adopt_timeout=1.0, cli_timeout=1.0)
    assert later.ensure_started() is True and later.origin == "started"
    assert listen_inodes(port) == listening
    wait_until(lambda: not earlier.running(), 30, "the silent master soft-stopped")
    assert haproxy_masters(str(hapaths.run_dir)) == [later.master_pid]
    assert kit.get(port) == (200, "a")


def test_the_applier_adopts_and_reloads_the_leftover_on_its_first_apply(
    new_process: Factory, hapaths: Any, kit: Any, backends: Any
) -> None:
    port = serve_one_app(hapaths, kit, backends)
    earlier = new_process()
    earlier.ensure_started()
    master = earlier.master_pid
    later = new_process()
    applier = Applier(
        later,
        RuntimeAPI(str(hapaths.admin_socket), master_socket=later.master_socket),
        str(hapaths.config),
        kit.render,
        haproxy_bin=later.haproxy_bin,
        config_write_delay=0.0,
    )
    b = backends("b")
    result = applier.apply(kit.model_of(kit.service("/a", port, {"b": b})))
    # its ports count as ours (no "port taken"); the file it runs may lag what the earlier
    # run applied through the runtime API, so the first apply reloads it
    assert result.ok and result.reloaded and not result.started, result.error
    assert result.skipped == () and result.waiting_for_ports == ()
    assert later.master_pid == master and haproxy_masters(str(hapaths.run_dir)) == [master]
    assert RuntimeAPI(str(hapaths.admin_socket)).worker_pid() == result.new_worker_pid
    assert kit.get(port) == (200, "b")
